"""Fast feedback from the command line (issue 27, newcomer item 3).

`--help` loads no heavy library (benchmarks/cli_bench.py times it; no timing here), and an option
or setting error is refused before any data is read and before MLflow or LightGBM load: the error
is the option's even when the trips path would fail too. Each case runs the real app in a fresh
interpreter and reports which heavy modules were loaded when it exited.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

# What a command may load for its work but neither `--help` nor a refused option may.
HEAVY = (
    "mlflow",
    "lightgbm",
    "duckdb",
    "bentoml",
    "pandas",
    "numpy",
    "scipy",
    "sklearn",
    "pyarrow",
    "sqlalchemy",
    "optuna",
    "matplotlib",
)
NO_TRIPS = "/nonexistent/huge-month/trips.parquet"  # would fail if it were ever read

RUN = """
import json, sys
from commuter_badge.cli.main import app
report = []
for argv in json.loads(sys.argv[1]):
    try:
        app(argv, prog_name="commuter")
        code = 0
    except SystemExit as exc:
        code = exc.code
    report.append({"argv": argv, "code": code,
                   "heavy": sorted(m for m in json.loads(sys.argv[3]) if m in sys.modules)})
open(sys.argv[2], "w").write(json.dumps(report))
"""


def run_app(tmp_path: Path, *argvs: list[str]) -> tuple[list[dict], str]:
    """Run the app on each argv in turn in one fresh interpreter; (per-argv report, stderr)."""
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-c", RUN, json.dumps(argvs), str(report), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert report.exists(), done.stderr[-3000:]
    return json.loads(report.read_text()), done.stderr


def help_argvs() -> list[list[str]]:
    import typer.main

    from commuter_badge.cli.main import app

    argvs: list[list[str]] = [["--help"]]

    def walk(group, prefix: list[str]) -> None:
        for name, command in group.commands.items():
            argvs.append([*prefix, name, "--help"])
            if hasattr(command, "commands"):
                walk(command, [*prefix, name])

    walk(typer.main.get_command(app), [])
    return argvs


def test_importing_the_app_loads_no_heavy_library():
    code = "import sys, commuter_badge.cli.main; print([m for m in {!r} if m in sys.modules])"
    done = subprocess.run(
        [sys.executable, "-c", code.format(HEAVY)], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", f"the CLI imports {done.stdout.strip()} at import time"


def test_every_help_loads_no_heavy_library(tmp_path):
    argvs = help_argvs()
    assert len(argvs) > 15  # the app, every command, every subcommand of audit and reviews
    report, stderr = run_app(tmp_path, *argvs)
    for entry in report:
        assert entry["code"] == 0, (entry, stderr[-2000:])
        assert entry["heavy"] == [], f"commuter {' '.join(entry['argv'])} loaded {entry['heavy']}"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["train", "--labels", "/nonexistent/labels.csv", "--param", "num_leafs=63"],
            "num_leafs: Extra inputs are not permitted",
        ),
        (
            ["train", "--labels", "/nonexistent/labels.csv", "--param", "num_leaves=1"],
            "num_leaves: Input should be greater than or equal to 2",
        ),
        (
            ["train", "--labels", "/nonexistent/labels.csv", "--target-fpr", "0.9"],
            "allowed range 0.0001 to 0.5",
        ),
        (["score", "--out", "scores.txt"], "--out scores.txt: unsupported output type"),
        (["score", "--out", "s.csv", "--engine", "sparc"], "--engine 'sparc' is not one of"),
        (["features", "--out", "features.txt"], "--out features.txt: unsupported output type"),
        (["features", "--out", "f.csv", "--engine", "sparc"], "--engine 'sparc' is not one of"),
        (["evaluate", "--labels", "x.csv", "--as-of", "2021-13-01"], "is not a date"),
        (["monitor", "--as-of", "2021-10-20x"], "is not a date"),
        (["recertify", "--labels", "x.csv", "--as-of", "10/20/2021"], "is not a date"),
    ],
)
def test_option_errors_come_before_any_data_or_model(tmp_path, argv, expected):
    args = [*argv, "--trips", NO_TRIPS]
    if "--as-of" not in args:
        args += ["--as-of", "2021-10-20"]
    [entry], stderr = run_app(tmp_path, args)
    assert entry["code"] == 2, stderr[-2000:]
    assert expected in stderr, stderr[-2000:]
    assert "nonexistent" not in stderr, "the trips were read before the option was checked"
    # Refused before MLflow, LightGBM or DuckDB loaded, and no store was opened or created.
    assert not set(entry["heavy"]) & {"mlflow", "lightgbm", "duckdb"}, entry
    assert not (tmp_path / "mlflow.db").exists()


def test_labels_are_read_before_the_trips(tmp_path):
    """A wrong --labels path is named before the (possibly huge) trips are read."""
    from commuter_badge.errors import CommuterError
    from commuter_badge.models.core.data import labelled_features

    with pytest.raises(CommuterError, match="no such labels file"):
        labelled_features(NO_TRIPS, tmp_path / "labels.csv", dt.date(2021, 10, 20))
