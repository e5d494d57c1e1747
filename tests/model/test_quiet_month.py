"""Quiet when piped (issue 27, newcomer item 2): a month's commands write only our own lines to
stderr.

One small world of two months, every command as a real `commuter` process with stderr on a pipe,
as a nightly job or a newcomer's `2>log` sees it. Our own lines are the ones the commands print
themselves: `error: ...`, `warning: ...`, `ALARM`, `FPR BREACH` and the like (rich may wrap them).
Foreign lines are anything a library writes on its own: tqdm bars ("Downloading artifacts"),
Python warnings (`UserWarning: ...` with their source line), MLflow's log lines (`2021/10/20
09:14:33 INFO mlflow.pyfunc: ...`) and its registry prints ("Registered model ... already
exists", "Created version ..."), tracebacks, LightGBM's and Optuna's own output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
FOREIGN = re.compile(
    "|".join(
        (
            r"it/s\]|s/it\]|\d+%\|",  # tqdm
            r"Downloading artifacts|Uploading artifacts",
            r"\b[A-Z]\w*Warning: ",  # warnings.warn: UserWarning, FutureWarning, ...
            r"^\s*warnings\.warn\(",
            r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) ",  # MLflow's loggers
            r"\bINFO\b",
            r"Registered model '|Successfully registered model|Created version '",
            r"Traceback \(most recent call last\)",
            r"^\[LightGBM\]|^\[[IWE] \d{4}-",  # LightGBM, Optuna
        )
    )
)
FIRST, SECOND = "2021-11-20", "2021-12-20"


def foreign_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if FOREIGN.search(line)]


def test_a_month_of_commands_is_quiet_on_a_pipe(tmp_path):
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",  # brand-new store
        "COMMUTER_DECISIONS": str(tmp_path / "decisions.duckdb"),
        "COMMUTER_REVIEWS": f"sqlite:///{tmp_path / 'reviews.db'}",
    }
    for name in ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "MLFLOW_LOGGING_LEVEL", "COMMUTER_DEBUG"):
        env.pop(name, None)  # the commands' own defaults, not the test process's

    def commuter(*args: str, ok: tuple[int, ...] = (0,)) -> int:
        done = subprocess.run(
            [str(BIN / "commuter"), *args],
            capture_output=True,  # stderr on a pipe, as in a nightly job
            text=True,
            env=env,
            cwd=tmp_path,
            check=False,
        )
        where = f"commuter {' '.join(args)} (exit {done.returncode})"
        assert done.returncode in ok, f"{where}: {done.stderr[-3000:]}"
        assert not foreign_lines(done.stderr), f"{where} wrote to stderr:\n{done.stderr[-3000:]}"
        return done.returncode

    one, two = tmp_path / "world" / FIRST, tmp_path / "world" / SECOND
    commuter("simulate", "--persons", "2000", "--as-of", FIRST, "--months", "2", "--seed", "5",
             "--out", "world")  # fmt: skip
    commuter("features", "--trips", str(one / "trips.parquet"), "--as-of", FIRST,
             "--out", "features.parquet")  # fmt: skip
    commuter("train", "--trips", str(one / "trips.parquet"), "--labels", str(one / "labels.csv"),
             "--as-of", FIRST, "--target-fpr", "0.05")  # fmt: skip
    month = ["--trips", str(two / "trips.parquet"), "--as-of", SECOND]
    commuter("evaluate", *month, "--labels", str(two / "labels.csv"))
    commuter("score", *month, "--out", "scores.parquet", "--publish")
    commuter("monitor", *month)
    commuter("recertify", *month, "--labels", str(two / "labels.csv"), "--no-promote")
    commuter("audit", "draw", "--scores", "scores.parquet", "--n", "40", "--seed", "1",
             "--out", "sample.csv")  # fmt: skip
    sample = pd.read_csv(tmp_path / "sample.csv", dtype={"person_id": str})
    truth = pd.read_parquet(two / "persons.parquet")[["person_id", "true_commuter"]]
    verdicts = sample[["person_id"]].merge(truth, on="person_id")
    verdicts.rename(columns={"true_commuter": "is_commuter"}).astype({"is_commuter": int}).to_csv(
        tmp_path / "verdicts.csv", index=False
    )
    commuter("audit", "certify", "--sample", "sample.csv", "--verdicts", "verdicts.csv",
             "--as-of", SECOND)  # fmt: skip
    promoted = commuter("promote", "2", ok=(0, 2)) == 0  # the gates decide; either is quiet
    commuter("rollback", ok=(0,) if promoted else (0, 2))
    commuter("compare", "1", "2")
    commuter("reviews", "list")
