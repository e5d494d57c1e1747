"""The one way to take a lock across processes: `file_lock(path)`, an exclusive `fcntl.flock`.

It blocks until the lock is free and is released when the block ends (or the process dies: the
kernel drops a flock with its last descriptor, so a killed holder never leaves a stale lock).
`path` is a lock file, created owner-only (with its folder) when missing, or, with
`directory=True`, an existing directory, locked itself so no file is left in it. Never lock a file another library holds POSIX locks on (a SQLite
database): closing any descriptor of a file drops every such lock the process holds on it, so the
MLflow store is locked through `<db>.lock` beside it (models/mlflow_edge/registry.py) and the
decision store through its directory (stores/decisions.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: str | Path, *, directory: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a lock file, or an existing directory with `directory`)
    for the block; blocks until no other process holds it."""
    path = Path(path)
    if directory:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
