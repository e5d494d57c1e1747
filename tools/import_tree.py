"""Lay the package out as it is installed, for import-linter: `python tools/import_tree.py DIR`.

The editable install maps `commuter_badge.features` to `features/` and so on (pyproject's
package-dir); grimp walks one directory tree from the root package, so it needs the installed
layout. `commuter_badge.models.mlflow_edge.packaging.lay_out` copies the sources into DIR in that layout, as
the wheel has it (the same function builds the code logged with each model version).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from commuter_badge.models.mlflow_edge.packaging import lay_out

ROOT = Path(__file__).resolve().parents[1]


def main(out: Path) -> None:
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    lay_out(out, {package: ROOT / folder for package, folder in mapping.items()})


if __name__ == "__main__":
    main(Path(sys.argv[1]))
