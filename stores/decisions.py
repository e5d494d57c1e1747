"""The decision store: the latest batch decisions, written by `commuter score`, read by `/badge`.

A publication is a complete DuckDB file, built beside the live one and moved over it with
`os.replace`, so a crash leaves either the old store or the new one, never half of one. The service
opens the file read-only, reads the publication's decisions into memory (a query of DuckDB's costs
a fixed fraction of a millisecond, as much as the rest of a `/badge` request, where a search in
memory costs microseconds) and closes it; at most once per `recheck_seconds` it looks at the path's
inode and mtime, and when a newer publication has replaced it, reads that one. DuckDB locks a database file per
process, which is why the service never opens the live file read-write and the writer never writes
to it in place: a reader cannot block the writer, and the writer cannot block a reader.

Publishing is deliberate: `commuter score` publishes only with `--publish` (`deliver` below holds
that rule and the order of the two outputs); scoring for analysis never touches the store.

`publish` is also the one guard against a publication that would silently lose the current one
(both engines of `commuter score` go through it): it refuses an empty result, one that holds more
than `MAX_SHRINK` fewer persons or fewer badges than the publication it replaces, and one whose
as_of is older than the current one's, unless told otherwise (`allow_shrink`, `allow_older`);
`check_window_coverage` refuses a window that runs more than `MAX_DAYS_PAST_DATA` days past the
trips. A refused publication changes nothing: the checks run before anything is written. The
store's directory must exist (COMMUTER_DECISIONS names the file; only the file is ever created).
Publishers take an exclusive lock on the store's directory, so temp files a killed publisher left
(`.<name>.<pid>-<random>.tmp` and its `.wal`) can be removed safely by the next one.

COMMUTER_DECISIONS may instead be a `postgresql://` URL, for replicas on several hosts: the same
guards, one transaction per publication (stores/decisions_pg.py); `open_store` picks the reader.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from commuter_badge.atomic import atomic_write, remove_leftovers
from commuter_badge.errors import CommuterError
from commuter_badge.locks import file_lock
from commuter_badge.models.runs.score import SCORE_COLUMNS, SCORE_SCHEMA, write_scores
from commuter_badge.stores import decisions_pg
from commuter_badge.stores.decisions_pg import PgDecisionStore
from commuter_badge.stores.rechecked import RecheckedStore

if TYPE_CHECKING:
    from commuter_badge.features.coverage import Coverage

logger = logging.getLogger(__name__)

COLUMNS = SCORE_COLUMNS
# A new publication may hold at most this share fewer persons than the one it replaces: a month's
# population moves by a few percent, so losing half of it means a wrong window or a partial input.
MAX_SHRINK = 0.5
# A window may end at most this many days after the last crossing: a feed a day or two late is
# published with a warning; more means a wrong --as-of or a partial input (every person's history
# is cut short, and badges fall).
MAX_DAYS_PAST_DATA = 2
SETTING = "COMMUTER_DECISIONS"

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


class PublicationRefused(DecisionStoreError):
    """Publishing would lose the current decisions for no stated reason; the store is untouched."""


class DecisionStoreLocationError(CommuterError):
    """COMMUTER_DECISIONS names a place where the store cannot be published; nothing is created."""


def is_database(location: str | Path) -> bool:
    """Whether COMMUTER_DECISIONS names a PostgreSQL database rather than a DuckDB file."""
    return str(location).startswith(("postgresql://", "postgresql+", "postgres://"))


def open_store(location: str | Path) -> DecisionStore | PgDecisionStore:
    """The service's reader of the decision store COMMUTER_DECISIONS names (file or database)."""
    return PgDecisionStore(str(location)) if is_database(location) else DecisionStore(location)


def check_store_location(path: str | Path) -> Path | str:
    """The store's absolute path, once its directory is known to exist and be writable.

    Nothing is created here or by `publish` but the store's own file: a mistyped setting must not
    grow directories (a publication there would never be read by the service).
    """
    if is_database(path):
        return str(path)  # the server says what is wrong when publishing
    target = Path(path).expanduser().absolute()
    parent = target.parent
    where = f"{SETTING}={path}"
    if target.is_dir():
        raise DecisionStoreLocationError(
            f"{where} is a directory; name the store's file, e.g. {target / 'decisions.duckdb'}"
        )
    existing = next(p for p in [parent, *parent.parents] if p.exists())
    if not existing.is_dir():
        raise DecisionStoreLocationError(
            f"{where}: {existing} is a file, not a directory; correct {SETTING}"
        )
    if existing != parent:
        raise DecisionStoreLocationError(
            f"{where}: directory {parent} does not exist; correct {SETTING} or create the "
            "directory (only the store's file is ever created)"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DecisionStoreLocationError(
            f"{where}: cannot write in {parent} (permission denied); set {SETTING} to a file in "
            "a directory this user may write, or fix the directory's permissions"
        )
    return target


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


@contextlib.contextmanager
def _publisher_lock(target: Path) -> Iterator[None]:
    """One publisher at a time per directory of stores (blocks until the other one is done).

    The lock is on the directory itself, so no lock file is left beside the store.
    """
    with file_lock(target.parent, directory=True):
        yield


def current_publication(path: str | Path) -> dict[str, Any] | None:
    """rows, badges, as_of and model_version of the publication at `path`; None without one.

    Read in a process of its own (as `commuter score` is): DuckDB keeps one database instance per
    path per process, so a process that also holds a DecisionStore open could be shown the file
    that store opened rather than the one now at the path.
    """
    if is_database(path):
        return decisions_pg.current_publication(str(path))
    path = Path(path).absolute()
    if not path.is_file():
        return None
    try:
        # Same config as DecisionStore: DuckDB refuses a second in-process connection to one file
        # with a different configuration.
        with duckdb.connect(str(path), read_only=True, config={"threads": 1}) as con:
            row = con.execute(
                "SELECT rows, as_of, model_version FROM publication "
                "ORDER BY published_at DESC LIMIT 1"
            ).fetchone()
            badges = con.execute("SELECT count(*) FILTER (WHERE badge) FROM decisions").fetchone()
    except duckdb.Error as exc:
        logger.warning(
            "current decision store %s cannot be read (%s); it will be replaced",
            path,
            str(exc).splitlines()[0],
        )
        return None
    if row is None:
        return None
    return {"rows": int(row[0]), "badges": int(badges[0]), "as_of": row[1], "model_version": row[2]}


# What every refusal ends with: analysis needs no flag at all; the overrides are for an operator
# who means to replace the live decisions with these.
_ANALYSIS = "to score for analysis only, leave out --publish (the store stays as it is)"


def check_replacement(
    rows: int,
    as_of: dt.date,
    current: dict[str, Any] | None,
    *,
    path: Path | str,
    badges: int | None = None,
    allow_shrink: bool = False,
    allow_older: bool = False,
) -> None:
    """Raise PublicationRefused when `rows` decisions (`badges` of them badges) for `as_of` should
    not replace `current`."""
    where = (
        decisions_pg.shown(str(path)) if is_database(path) else f"{path.name} (in {path.parent})"
    )
    now = (
        f"the live publication holds {current['rows']:,} persons"
        + (f" ({current['badges']:,} badges)" if current.get("badges") is not None else "")
        + f" as of {current['as_of']}"
        if current
        else "there is no live publication"
    )
    if rows == 0 and not allow_shrink:
        raise PublicationRefused(
            f"refusing to publish 0 decisions to {where}: {now}, and an empty store would answer "
            f"found: false for everyone. The window probably holds no crossings: check --trips "
            f"and --as-of; {_ANALYSIS}; --allow-shrink publishes it anyway"
        )
    if current is None:
        return
    if as_of < current["as_of"] and not allow_older:
        raise PublicationRefused(
            f"refusing to publish decisions as of {as_of} to {where}: {now}, which is newer. "
            f"{_ANALYSIS[0].upper()}{_ANALYSIS[1:]}; --allow-older replaces the live decisions "
            "with this older month, for a deliberate rollback of the decisions only"
        )
    floor = current["rows"] * (1 - MAX_SHRINK)
    if rows < floor and not allow_shrink:
        drop = 1 - rows / current["rows"]
        raise PublicationRefused(
            f"refusing to publish {rows:,} decisions to {where}: {now}, a drop of {drop:.0%} "
            f"(more than {MAX_SHRINK:.0%}). Check that --trips holds the whole population; "
            f"{_ANALYSIS}; --allow-shrink publishes it anyway"
        )
    live = current.get("badges")
    if badges is not None and live and badges < live * (1 - MAX_SHRINK) and not allow_shrink:
        raise PublicationRefused(
            f"refusing to publish {rows:,} decisions with {badges:,} badges to {where}: {now}, "
            f"a drop in badges of {1 - badges / live:.0%} (more than {MAX_SHRINK:.0%}). Check "
            f"that --trips covers the whole window of --as-of; {_ANALYSIS}; --allow-shrink "
            "publishes it anyway"
        )


def check_window_coverage(coverage: Coverage, *, allow_shrink: bool = False) -> None:
    """Refuse to publish decisions whose window runs more than MAX_DAYS_PAST_DATA days past the
    trips: every person's history is cut short, so the decisions lose badges for no reason."""
    past = coverage.days_past_data
    if past <= MAX_DAYS_PAST_DATA or allow_shrink:
        return
    last_day = coverage.window.as_of - dt.timedelta(days=1)
    raise PublicationRefused(
        f"refusing to publish: the window of --as-of {coverage.window.as_of} ends {last_day}, "
        f"{past} days after the last crossing ({coverage.last:%Y-%m-%d}), more than "
        f"{MAX_DAYS_PAST_DATA}: every history would be cut short. Check --trips and --as-of; "
        f"{_ANALYSIS}; --allow-shrink publishes it anyway"
    )


def publish(
    frame: pd.DataFrame,
    as_of: dt.date,
    path: str | Path,
    *,
    allow_shrink: bool = False,
    allow_older: bool = False,
) -> int:
    """Replace the store at `path` with these decisions for `as_of`; return the number of rows.

    `frame` holds one row per person: person_id, commuter_probability, badge, threshold,
    model_version. The new file is complete and synced before it replaces the old one. Refused
    (PublicationRefused, nothing written) when it is empty or holds more than MAX_SHRINK fewer
    persons or badges than the current publication (unless `allow_shrink`), or is older than it
    (unless `allow_older`); DecisionStoreLocationError when the store's directory is missing or
    not writable (nothing is created).
    """
    if isinstance(as_of, dt.datetime):
        as_of = as_of.date()
    table = _checked(frame)
    versions = sorted(set(table.column("model_version").to_pylist()))
    badges = int(table.column("badge").to_numpy().sum())
    if is_database(path):
        url = str(path)

        def check(current: dict[str, Any] | None) -> None:
            check_replacement(
                table.num_rows, as_of, current, path=url, badges=badges,
                allow_shrink=allow_shrink, allow_older=allow_older,
            )  # fmt: skip

        return decisions_pg.publish_table(
            table.to_pandas(), as_of, url, check=check, badges=badges, versions=versions
        )
    target = check_store_location(path)

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

    try:
        with _publisher_lock(target):
            # Holding the lock, no live publisher owns a temp file: whatever is there was left by
            # a killed one.
            for leftover in remove_leftovers(target):
                logger.info("removed %s, left by an interrupted publication", leftover.name)
            check_replacement(
                table.num_rows,
                as_of,
                current_publication(target),
                path=target,
                badges=badges,
                allow_shrink=allow_shrink,
                allow_older=allow_older,
            )
            atomic_write(target, write)
    except PermissionError as exc:  # the directory changed after the check, or a read-only mount
        raise DecisionStoreLocationError(
            f"{SETTING}={path}: cannot write in {target.parent} ({exc.strerror}); set {SETTING} "
            "to a file in a directory this user may write"
        ) from None
    return table.num_rows


def deliver(
    scored: pd.DataFrame,
    as_of: dt.date,
    *,
    out: str | Path | None,
    store: str | Path | None,
    allow_shrink: bool = False,
    allow_older: bool = False,
) -> Path | None:
    """A scored batch's two outputs: the decisions published to `store`, then the scores to `out`.

    Publishing is deliberate: only a `store` given on purpose (`commuter score --publish`) is
    replaced; analysis passes None and never touches the live decisions. Published first, so a
    refused publication writes no file and after a kill the store is never older than the file.
    `out` None: already written (Spark's directory). Returns the store's path when published.
    """
    published = None
    if store is not None:
        publish(scored, as_of, store, allow_shrink=allow_shrink, allow_older=allow_older)
        published = (
            decisions_pg.shown(str(store))
            if is_database(store)
            else Path(store).expanduser().absolute()
        )
    if out is not None:
        write_scores(scored, out)
    return published


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


class _Index:
    """One publication's decisions in memory: ids as sorted UTF-8 bytes, found by binary search.

    A DuckDB query costs a fixed ~0.6 ms of CPU however few rows it returns, as much as the rest
    of a `/badge` request; a search in these arrays costs microseconds. Per row: the id's bytes
    (the publication's longest id sets the width), the probability, the badge, and the number of
    its (threshold, model_version, as_of), which hold few distinct values.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        keys = "threshold, model_version, as_of"
        self.kinds = con.execute(
            f"SELECT DISTINCT {keys} FROM decisions ORDER BY {keys}"
        ).fetchall()
        cols = con.execute(
            "SELECT person_id, commuter_probability, badge, "
            f"CAST(dense_rank() OVER (ORDER BY {keys}) - 1 AS INTEGER) AS kind FROM decisions"
        ).fetchnumpy()
        ids = np.array([i.encode("utf-8") for i in cols["person_id"].tolist()], dtype=bytes)
        order = np.argsort(ids, kind="stable")
        self.ids = ids[order]
        self.proba = np.asarray(cols["commuter_probability"], dtype=np.float64)[order]
        self.badge = np.asarray(cols["badge"], dtype=bool)[order]
        self.kind = np.asarray(cols["kind"], dtype=np.int32)[order]

    def lookup(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids or not len(self.ids):
            return {}
        wanted = sorted(set(ids))
        keys = [i.encode("utf-8") for i in wanted]
        fits = [len(k) <= self.ids.dtype.itemsize for k in keys]  # longer ids cannot be there
        probe = np.array(
            [k if f else b"" for k, f in zip(keys, fits, strict=True)], dtype=self.ids.dtype
        )
        pos = np.minimum(np.searchsorted(self.ids, probe), len(self.ids) - 1)
        out = {}
        for pid, key, ok, i in zip(wanted, keys, fits, pos.tolist(), strict=True):
            # bytes compare exactly: numpy drops trailing NULs, so b"a" must not match b"a\x00"
            if ok and self.ids[i] == key:
                threshold, model_version, as_of = self.kinds[self.kind[i]]
                out[pid] = {
                    "commuter_probability": float(self.proba[i]),
                    "badge": bool(self.badge[i]),
                    "threshold": threshold,
                    "model_version": model_version,
                    "as_of": as_of,
                }
        return out


class DecisionStore(RecheckedStore):
    """Read-only view of the latest publication at `path`, reloaded when a newer one replaces it;
    its publication holds published_at, rows, as_of and model_version.

    The decisions are read into memory (`_Index`) when a publication is opened, and the file is
    closed again: lookups touch no database, and a republication is seen at the next recheck.
    """

    def __init__(self, path: str | Path, *, recheck_seconds: float = 1.0) -> None:
        super().__init__(recheck_seconds)
        self.path = Path(path).absolute()
        self._index: _Index | None = None
        self._signature: tuple[int, int, int, int] | None | str = "unopened"

    def _serving(self) -> bool:
        return self._index is not None

    def lookup(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Decisions of the ids that the latest publication holds (absent ids are left out)."""
        with self._lock:
            self._refresh()
            index = self._index
            if index is None:
                raise DecisionStoreError(self.problem)
        return index.lookup(ids)

    def close(self) -> None:
        with self._lock:
            self._index = None

    def _refresh(self) -> None:
        if not self._due():
            return
        signature = _signature(self.path)
        if signature == self._signature:
            return
        self._index = None
        self._signature = signature
        self._publication = None
        if signature is None:
            self.problem = (
                f"no decision store at {self.path}; publish one with `commuter score --publish` "
                "(COMMUTER_DECISIONS sets the path)"
            )
            return
        try:
            # Closed before the path is opened again: DuckDB shares one database instance per
            # path inside a process, so a connection left open would show the old file.
            with duckdb.connect(str(self.path), read_only=True, config={"threads": 1}) as con:
                row = con.execute(
                    "SELECT published_at, rows, as_of, model_version FROM publication "
                    "ORDER BY published_at DESC LIMIT 1"
                ).fetchone()
                index = _Index(con)
        except duckdb.Error as exc:
            self.problem = (
                f"decision store {self.path} (COMMUTER_DECISIONS) cannot be read: "
                f"{str(exc).splitlines()[0]}"
            )
            logger.warning("%s", self.problem)
            return
        self._index = index
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
