"""Writing worlds to disk: each file through the project's one atomic write (fsync, rename)."""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from commuter_badge.atomic import atomic_write

if TYPE_CHECKING:  # world.py re-exports write_world, so the import goes one way at runtime
    from commuter_badge.simulate.world import World


def write_world(world: World, out_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Write trips.parquet, labels.csv and persons.parquet into `out_dir`; return their paths."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "trips": out_dir / "trips.parquet",
        "labels": out_dir / "labels.csv",
        "persons": out_dir / "persons.parquet",
    }
    atomic_write(paths["trips"], lambda p: pq.write_table(world.trips, p))
    atomic_write(paths["labels"], lambda p: world.labels.to_csv(p, index=False))
    persons = pa.Table.from_pandas(world.persons, preserve_index=False)
    atomic_write(paths["persons"], lambda p: pq.write_table(persons, p))
    return paths


def write_months(
    worlds: Mapping[dt.date, World], out_dir: pathlib.Path
) -> dict[dt.date, dict[str, pathlib.Path]]:
    """Write each month's world into `out_dir`/<as_of ISO date>/; return the paths per month."""
    out_dir = pathlib.Path(out_dir)
    return {day: write_world(w, out_dir / day.isoformat()) for day, w in worlds.items()}
