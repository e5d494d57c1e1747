"""The `commuter` command line (contract §2): the app with every command module registered.

Each module below adds its commands to `app` when imported; a new command group is a new module
and one line here.
"""

from __future__ import annotations

import os

from commuter_badge.cli import (  # noqa: F401  (registers commands)
    audit,
    compare,
    data,
    lifecycle,
    modelling,
    monitoring,
    reviews,
    serve,
)
from commuter_badge.cli.app import app, quiet_libraries


@app.callback()
def _owner_only() -> None:
    # Before every command: each store and output it creates (MLflow's database and artifact
    # folders, DuckDB files, the decision and review stores) is readable by its owner only.
    os.umask(0o077)
    # And stderr holds our own lines only: no MLflow progress bars or INFO chatter.
    quiet_libraries()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
