"""What the feed and the reviews do to clean crossings: lost legs, double reads, empty regions,
random row order, and noisy labels. Kept apart from behaviour so each can be varied alone.

``messy_trips`` turns clean integer-coded crossings into the contract's trips table (contract
section 1); ``flip_labels`` draws which persons' labels are wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from commuter_badge.features.schema import DIRECTIONS, MODES, TRIP_COLUMNS
from commuter_badge.simulate.generate import DAY
from commuter_badge.simulate.sites import REGIONS, SITE_IDS, SITE_REGION

MISSING_LEG_RATE = 0.03  # each crossing independently unobserved (scanner down, ticket not linked)
DOUBLE_READ_RATE = 0.02  # crossings read twice, 1-30 s apart, identical otherwise
EMPTY_REGION_RATE = 0.05  # rows whose region field the feed left empty
# Probability a label is wrong, separately in each class. The certified FPR is measured against
# labels, so commuters labelled 0 put a floor under it: about share * LABEL_NOISE / (1 - share),
# 0.36% here. At 1% noise that floor is 0.72% and a 1% target leaves almost no room for the model.
LABEL_NOISE = 0.005


@dataclass(frozen=True, kw_only=True)
class Messiness:
    """Rates of the feed's faults; label noise is an argument of ``simulate_world`` itself."""

    missing_leg: float = MISSING_LEG_RATE
    double_read: float = DOUBLE_READ_RATE
    empty_region: float = EMPTY_REGION_RATE

    def __post_init__(self) -> None:
        for name in ("missing_leg", "double_read", "empty_region"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Messiness.{name} must be in [0, 1], not {getattr(self, name)}")


def flip_labels(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Which of n labels are wrong: each independently with probability `rate`."""
    return rng.random(n) < rate


def messy_trips(
    columns: dict[str, np.ndarray],
    n_days: int,
    utc_start: int,
    ids: pa.StringArray,
    rng: np.random.Generator,
    messiness: Messiness = Messiness(),
) -> pa.Table:
    """Apply the feed's messiness to clean crossings and build the contract table.

    Consumes `columns` (person, t, direction, site, mode): each array is dropped as soon as its
    column is built, which keeps a 1M-person world (~28M rows) near 3 GB peak.
    """
    t = columns["t"]
    # Drop what falls outside the simulated days (overnight outs, multi-day stays) and lost legs.
    keep = (t >= 0) & (t < n_days * DAY) & (rng.random(len(t)) >= messiness.missing_leg)
    del t
    for name in list(columns):
        columns[name] = columns[name][keep]
    n = int(keep.sum())
    del keep
    empty = rng.random(n) < messiness.empty_region
    region = np.where(empty, len(REGIONS) - 1, SITE_REGION[columns["site"]])
    columns["region"] = region.astype(np.int8)
    del empty, region
    # Double reads copy a row (region included) 1-30 s later; then shuffle the whole table.
    doubled = np.flatnonzero(rng.random(n) < messiness.double_read).astype(np.int32)
    rows = np.concatenate([np.arange(n, dtype=np.int32), doubled])
    delay = np.zeros(len(rows), dtype=np.int8)
    delay[n:] = rng.integers(1, 31, len(doubled))
    order = rng.permutation(len(rows))
    rows, delay = rows[order], delay[order]
    del order, doubled

    ts = columns.pop("t")[rows]  # in-place arithmetic: no extra 8-byte-per-row temporaries
    ts += delay
    ts += utc_start
    ts *= 1_000_000
    del delay
    table = {"ts": pa.array(ts, pa.timestamp("us", tz="UTC"))}
    del ts
    table["person_id"] = pc.take(ids, pa.array(columns.pop("person")[rows]))
    for name, source, values in (
        ("direction", "direction", DIRECTIONS),
        ("mode", "mode", MODES),
        ("site_id", "site", SITE_IDS),
        ("region", "region", REGIONS),
    ):
        codes = pa.array(columns.pop(source)[rows])
        table[name] = pc.take(pa.array(values, pa.string()), codes)
    return pa.table({name: table[name] for name in TRIP_COLUMNS})
