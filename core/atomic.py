"""The one way to write an output: a temp file in the target's directory, fsync, rename, fsync dir.

A crash at any point leaves either the old file or the new one, never half of one. Every writer of
the project (features, scores, simulated worlds, the decision store) goes through `atomic_write`.
Files are created readable by their owner only.

A writer killed mid-write leaves its temp file behind. Temp names carry the writer's process id
(`.<name>.<pid>-<random>.tmp`), so the next write of the same target removes the temp files of
writers that no longer run (and never those of a live one, which may still be writing).
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from commuter_badge.errors import UserError

if TYPE_CHECKING:  # the command line imports this module; pandas loads only for a frame
    import pandas as pd

# Leftovers of a writer killed mid-write: `.<name>.<pid>-<random>.tmp` (and DuckDB's `.tmp.wal`).
TMP_SUFFIX = ".tmp"


def fsync_path(path: Path) -> None:
    """Flush a file or a directory entry to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(target: Path) -> Path:
    """A fresh, empty-name temp path beside `target` (the file itself does not exist yet)."""
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}-", suffix=TMP_SUFFIX, dir=target.parent
    )
    os.close(fd)
    os.unlink(tmp)
    return Path(tmp)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)`, then move `tmp` onto `path` only if it succeeded; readers never see half a file.

    `write` gets a path that does not exist yet (DuckDB refuses to open an empty file as a database).
    """
    target = Path(path).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_leftovers(target)
    tmp = temp_path(target)
    try:
        write(tmp)
        if tmp.is_file():
            os.chmod(tmp, 0o600)
            fsync_path(tmp)
        os.replace(tmp, target)
        fsync_path(target.parent)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                leftover.unlink()
    return target


def remove_leftovers(target: str | Path) -> list[Path]:
    """Delete temp files a killed writer of `target` left behind; return what was removed."""
    target = Path(target).absolute()
    removed = []
    for leftover in target.parent.glob(f"{glob.escape('.' + target.name)}.*{TMP_SUFFIX}*"):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            leftover.unlink()
            removed.append(leftover)
    return removed


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_leftovers(target: str | Path) -> list[Path]:
    """Delete temp files of `target` whose writer (named by the pid in the name) no longer runs.

    Safe without a lock: a live writer's temp file is kept. Temp files of other hosts sharing the
    directory are not told apart (the pid is this host's); names without a pid are kept too.
    """
    target = Path(target).absolute()
    prefix = f".{target.name}."
    removed = []
    for leftover in target.parent.glob(f"{glob.escape(prefix)}*{TMP_SUFFIX}*"):
        pid, dash, _ = leftover.name[len(prefix) :].partition("-")
        if not dash or not pid.isdigit() or _writer_alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            leftover.unlink()
            removed.append(leftover)
    return removed


def write_frame(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write `frame` as CSV or Parquet, chosen by the extension of `path`, atomically."""
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    if suffix == ".csv":
        return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
    raise UserError(f"{path}: unsupported output type {suffix!r}; use .csv or .parquet")
