"""Lay the package out as it is installed, for import-linter: `python tools/import_tree.py DIR`.

The editable install maps `commuter_badge.features` to `features/` and so on (pyproject's
package-dir); grimp walks one directory tree from the root package, so it needs the installed
layout. This copies the sources into DIR in that layout, as the wheel has it.
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(out: Path) -> None:
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    shutil.rmtree(out, ignore_errors=True)
    for package, folder in mapping.items():
        target = out.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for source in (ROOT / folder).glob("*.py"):
            shutil.copy2(source, target / source.name)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
