"""One way to take a file lock across processes (issue 28, item 3): `core/locks.py` `file_lock`."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "features", "simulate", "models", "stores", "serving", "cli")
LOCKING = {"fcntl", "filelock", "portalocker", "msvcrt"}


def test_only_core_locks_takes_file_locks():
    # given every library module / when the modules that import a locking library are listed
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                if any(n.split(".")[0] in LOCKING for n in names):
                    found[path.relative_to(ROOT).as_posix()] = names
    # then it is core/locks.py alone; everyone else calls its `file_lock`
    assert list(found) == ["core/locks.py"], found
