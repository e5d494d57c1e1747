"""The decision store: the latest batch decisions, written by `commuter score`, read by `/badge`.

A publication is a complete DuckDB file, built beside the live one and moved over it with
`os.replace`, so a crash leaves either the old store or the new one, never half of one. The service
opens the file read-only and, at most once per `recheck_seconds`, looks at the path's inode and
mtime; when a newer publication has replaced it, the store reopens. DuckDB locks a database file per
process, which is why the service never opens the live file read-write and the writer never writes
to it in place: a reader cannot block the writer, and the writer cannot block a reader.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from commuter_badge.atomic import atomic_write
from commuter_badge.errors import CommuterError
from commuter_badge.models.score import SCORE_COLUMNS, SCORE_SCHEMA

logger = logging.getLogger(__name__)

COLUMNS = SCORE_COLUMNS

_SCHEMA = """
CREATE TABLE decisions (
    person_id VARCHAR PRIMARY KEY,
    commuter_probability DOUBLE NOT NULL,
    badge BOOLEAN NOT NULL,
    threshold DOUBLE NOT NULL,
    model_version VARCHAR NOT NULL,
    as_of DATE NOT NULL
);
CREATE TABLE publication (
    published_at TIMESTAMP WITH TIME ZONE NOT NULL,
    rows BIGINT NOT NULL,
    as_of DATE NOT NULL,
    model_version VARCHAR NOT NULL
);
"""


class DecisionStoreError(CommuterError, ValueError):
    """The decisions to publish break the store's schema; the message names the column."""


def _checked(frame: pd.DataFrame) -> pa.Table:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DecisionStoreError(
            f"decisions lack column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}"
        )
    ids = frame["person_id"]
    blank = ids.isna() | (ids.astype("string").str.strip() == "")
    if blank.any():
        raise DecisionStoreError(
            f"decisions row {int(blank.to_numpy().argmax()) + 1}: empty person_id"
        )
    dup = ids.duplicated()
    if dup.any():
        raise DecisionStoreError(f"decisions: person_id {ids[dup].iloc[0]!r} appears twice")
    proba = pd.to_numeric(frame["commuter_probability"], errors="coerce").astype("float64")
    bad = proba.isna() | (proba < 0) | (proba > 1)
    if bad.any():
        raise DecisionStoreError(
            f"decisions row {int(bad.to_numpy().argmax()) + 1}: commuter_probability "
            f"{frame['commuter_probability'].iloc[int(bad.to_numpy().argmax())]!r} is not in [0, 1]"
        )
    return pa.table(
        {
            "person_id": pa.array(ids.astype(str).tolist(), pa.string()),
            "commuter_probability": pa.array(proba.to_numpy(), pa.float64()),
            "badge": pa.array(frame["badge"].astype(bool).to_numpy(), pa.bool_()),
            "threshold": pa.array(frame["threshold"].astype("float64").to_numpy(), pa.float64()),
            "model_version": pa.array(frame["model_version"].astype(str).tolist(), pa.string()),
        }
    )


def publish(frame: pd.DataFrame, as_of: dt.date, path: str | Path) -> int:
    """Replace the store at `path` with these decisions for `as_of`; return the number of rows.

    `frame` holds one row per person: person_id, commuter_probability, badge, threshold,
    model_version. The new file is complete and synced before it replaces the old one.
    """
    if isinstance(as_of, dt.datetime):
        as_of = as_of.date()
    table = _checked(frame)
    versions = sorted(set(table.column("model_version").to_pylist()))

    def write(tmp: Path) -> None:
        con = duckdb.connect(str(tmp), config={"threads": 1})
        try:
            con.execute(_SCHEMA)
            con.register("new_decisions", table)
            con.execute(
                "INSERT INTO decisions SELECT person_id, commuter_probability, badge, threshold, "
                "model_version, CAST(? AS DATE) FROM new_decisions",
                [as_of],
            )
            con.execute(
                "INSERT INTO publication VALUES (?, ?, ?, ?)",
                [dt.datetime.now(dt.UTC), table.num_rows, as_of, ",".join(versions)],
            )
            con.execute("CHECKPOINT")
        finally:
            con.close()

    atomic_write(path, write)
    return table.num_rows


def read_scores(path: str | Path) -> pd.DataFrame:
    """A score table as `commuter score` wrote it: one CSV/Parquet file, or Spark's directory of part
    files (hidden and `_SUCCESS` files skipped)."""
    import pyarrow.dataset as ds

    path = Path(path)
    csv = path.suffix.lower() == ".csv"
    fmt = "parquet"
    if csv:  # read back with the declared types, not inferred ones (ids like "0012" stay text)
        from pyarrow import csv as pacsv

        types = {f.name: f.type for f in SCORE_SCHEMA}
        fmt = ds.CsvFileFormat(convert_options=pacsv.ConvertOptions(column_types=types))
    if path.is_dir():
        suffix = ".csv" if csv else ".parquet"
        files = sorted(
            str(p) for p in path.rglob(f"*{suffix}") if not p.name.startswith((".", "_"))
        )
        table = ds.dataset(files, format=fmt).to_table() if files else SCORE_SCHEMA.empty_table()
    else:
        table = ds.dataset(str(path), format=fmt).to_table()
    return table.select(list(SCORE_COLUMNS)).to_pandas()


def _signature(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class DecisionStore:
    """Read-only view of the latest publication at `path`, reopened when a newer one replaces it."""

    def __init__(self, path: str | Path, *, recheck_seconds: float = 1.0) -> None:
        self.path = Path(path).absolute()
        self.recheck_seconds = recheck_seconds
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._signature: tuple[int, int, int, int] | None | str = "unopened"
        self._checked_at = float("-inf")
        self._publication: dict[str, Any] | None = None
        self.problem = "not opened yet"

    @property
    def ready(self) -> bool:
        with self._lock:
            self._refresh()
            return self._con is not None

    @property
    def publication(self) -> dict[str, Any] | None:
        """published_at, rows, as_of and model_version of the publication being served."""
        with self._lock:
            self._refresh()
            return dict(self._publication) if self._publication else None

    def lookup(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Decisions of the ids that the latest publication holds (absent ids are left out)."""
        with self._lock:
            self._refresh()
            if self._con is None:
                raise DecisionStoreError(self.problem)
            if not ids:
                return {}
            wanted = sorted(set(ids))
            rows = self._con.execute(
                "SELECT person_id, commuter_probability, badge, threshold, model_version, as_of "
                "FROM decisions WHERE person_id IN (SELECT unnest(CAST(? AS VARCHAR[])))",
                [wanted],
            ).fetchall()
        return {
            r[0]: {
                "commuter_probability": r[1],
                "badge": r[2],
                "threshold": r[3],
                "model_version": r[4],
                "as_of": r[5],
            }
            for r in rows
        }

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._con is not None:
            self._con.close()
        self._con = None

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self.recheck_seconds:
            return
        self._checked_at = now
        signature = _signature(self.path)
        if signature == self._signature:
            return
        # DuckDB shares one database instance per path inside a process: the old connection must
        # be closed before the path is opened again, or the new connection sees the old file.
        self._close()
        self._signature = signature
        self._publication = None
        if signature is None:
            self.problem = (
                f"no decision store at {self.path}; publish one with `commuter score` "
                "(COMMUTER_DECISIONS sets the path)"
            )
            return
        try:
            con = duckdb.connect(str(self.path), read_only=True, config={"threads": 1})
            row = con.execute(
                "SELECT published_at, rows, as_of, model_version FROM publication "
                "ORDER BY published_at DESC LIMIT 1"
            ).fetchone()
        except duckdb.Error as exc:
            self.problem = f"decision store {self.path} cannot be read: {str(exc).splitlines()[0]}"
            logger.warning("%s", self.problem)
            return
        self._con = con
        self.problem = ""
        if row:
            self._publication = {
                "published_at": row[0],
                "rows": row[1],
                "as_of": row[2],
                "model_version": row[3],
            }
        logger.info(
            "decision store opened: %s (%s rows, as_of %s)",
            self.path,
            row[1] if row else 0,
            row[2] if row else "?",
        )
