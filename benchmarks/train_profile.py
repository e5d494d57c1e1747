"""Where a training's time and memory go, against what it cannot beat, measured in one run.

One simulated month (by default 1,000,000 persons, seed 9, as of 2021-11-26, issue 28 item 6),
cached in `--keep`, then in alternating rounds (the order rotates, so a shared machine's load falls
on all alike), each in its own process, its wall time and peak RSS from its own rusage (os.wait4):
  - features: `build_features` alone (the library call `commuter train` makes);
  - plain fit: LightGBM with the project's default parameters (models/core/config.py), 400 trees
    and no early stopping, on half the persons (a fixed random half), the matrix already built;
  - train: `commuter train` itself (the console script's app, in a fresh directory with its own
    MLflow SQLite store), with the `commuter_badge.stages` logger at DEBUG: each stage's wall
    seconds and the process's RSS and peak RSS at its end (core/stages.py).
The reference is features + plain fit (each timed inside its process, imports left out); the goal
is `commuter train` (whole process) <= 2x the reference and a peak <= 2.5 GB.

    .venv/bin/python benchmarks/train_profile.py --keep /tmp/train-profile --rounds 3

Writes benchmarks/results/train_profile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from results_file import ROOT, Result, git_commit

GOAL_RATIO = 2.0
GOAL_PEAK_MB = 2500.0
PLAIN_TREES = 400

FEATURES_CHILD = """
import datetime as dt, json, sys, time
from commuter_badge.features.build import build_features
trips, as_of, out = sys.argv[1], dt.date.fromisoformat(sys.argv[2]), sys.argv[3]
started = time.perf_counter()
frame = build_features(trips, as_of, 28)
seconds = time.perf_counter() - started
frame.to_parquet(out, index=False)
print(json.dumps({"inner_seconds": seconds, "persons": len(frame)}))
"""

FIT_CHILD = """
import json, sys, time
import lightgbm as lgb, numpy as np, pandas as pd
from commuter_badge.features.build import model_matrix
from commuter_badge.features.read import read_labels
from commuter_badge.models.core.config import TrainConfig
features, labels, trees = sys.argv[1], sys.argv[2], int(sys.argv[3])
frame = pd.read_parquet(features).merge(read_labels(labels), on="person_id")
half = frame.sample(frac=0.5, random_state=0)
x, y = model_matrix(half), half["is_commuter"].to_numpy()
started = time.perf_counter()
booster = lgb.train(TrainConfig().lgb_params(), lgb.Dataset(x, y), num_boost_round=trees)
seconds = time.perf_counter() - started
print(json.dumps({"inner_seconds": seconds, "persons": len(half), "trees": booster.num_trees()}))
"""

TRAIN_CHILD = """
import json, logging, sys
PATH = sys.argv[1]
class Stages(logging.Handler):
    def emit(self, record):
        keys = ("stage", "seconds", "rss_mb", "peak_rss_mb")
        with open(PATH, "a") as f:
            f.write(json.dumps({k: getattr(record, k) for k in keys}) + "\\n")
log = logging.getLogger("commuter_badge.stages")
log.setLevel(logging.DEBUG)
log.addHandler(Stages())
from commuter_badge.cli.main import app
sys.argv = ["commuter", *sys.argv[2:]]
app()
"""


def rusage_child(code: str, args: list[str], cwd: Path, env: dict | None = None) -> dict:
    """`python -c code args` in `cwd`: its wall and CPU seconds, peak RSS (its own rusage,
    os.wait4) and the JSON it printed last."""
    load = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args], cwd=cwd, env=env, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        out.seek(0), err.seek(0)
        if os.waitstatus_to_exitcode(status):
            raise RuntimeError(f"child failed: {err.read()[-2000:]}")
        lines = [line for line in out.read().splitlines() if line.startswith("{")]
    return {
        "wall_seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
        "load_1min_at_start": load,
        **(json.loads(lines[-1]) if lines else {}),
    }


CODE: Path | None = None  # --code: a laid-out package tree the children import instead


def clean_env() -> dict:
    """The environment without our settings or MLflow's: each child uses its directory's store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMMUTER_", "MLFLOW_"))}
    env.pop("PYTHONPATH", None)
    if CODE is not None:
        env["PYTHONPATH"] = str(CODE)
    return env


def lay_out(commit: str, tmp: Path) -> Path:
    """`commit`'s package tree under tmp/pkg, importable as commuter_badge (pyproject's
    package-dir map), from `git archive`: no worktree is registered in the repository."""
    tree = tmp / "tree"
    tree.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    dirs = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, folder in dirs["package-dir"].items():
        shutil.copytree(tree / folder, tmp.joinpath("pkg", *package.split(".")), dirs_exist_ok=True)
    return tmp / "pkg"


def simulate(args, keep: Path) -> Path:
    """The month, simulated once into `keep` (reused when it is there)."""
    world = keep / f"world-{args.persons}-{args.seed}-{args.as_of}"
    if (world / "labels.csv").is_file():
        return world
    command = [str(Path(sys.executable).with_name("commuter")), "simulate"]
    command += ["--persons", str(args.persons), "--seed", str(args.seed)]
    command += ["--as-of", args.as_of, "--out", str(world)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return world


def run_features(world: Path, as_of: str, work: Path) -> dict:
    out = work / "features.parquet"
    args = [str(world / "trips.parquet"), as_of, str(out)]
    return rusage_child(FEATURES_CHILD, args, work, clean_env())


def run_fit(world: Path, work: Path) -> dict:
    args = [str(work / "features.parquet"), str(world / "labels.csv"), str(PLAIN_TREES)]
    return rusage_child(FIT_CHILD, args, work, clean_env())


def run_train(world: Path, as_of: str, work: Path, name: str) -> dict:
    """`commuter train` in a fresh directory; the process's figures and its stages."""
    workdir = work / name
    workdir.mkdir()
    stages = workdir / "stages.jsonl"
    command = ["train", "--trips", str(world / "trips.parquet")]
    command += ["--labels", str(world / "labels.csv"), "--as-of", as_of]
    result = rusage_child(TRAIN_CHILD, [str(stages), *command], workdir, clean_env())
    result["stages"] = [json.loads(line) for line in stages.read_text().splitlines()]
    return result


def stage_table(rounds: list[dict]) -> list[dict]:
    """Per stage, in the order they ran: median seconds, share of the median wall, and the median
    RSS and peak RSS at its end; the rest (imports, the command line, MLflow's start) last."""
    trains = [r["train"] for r in rounds]
    wall = statistics.median(t["wall_seconds"] for t in trains)
    names = list(dict.fromkeys(s["stage"] for s in trains[0]["stages"]))
    table = []
    for name in names:
        rows = [s for t in trains for s in t["stages"] if s["stage"] == name]
        seconds = statistics.median(
            sum(s["seconds"] for s in t["stages"] if s["stage"] == name) for t in trains
        )
        table.append(
            {
                "stage": name,
                "seconds": round(seconds, 2),
                "share_of_train": round(seconds / wall, 3),
                "rss_mb_at_end": round(statistics.median(s["rss_mb"] for s in rows)),
                "peak_rss_mb_so_far": round(statistics.median(s["peak_rss_mb"] for s in rows)),
            }
        )
    staged = sum(row["seconds"] for row in table)
    table.append(
        {
            "stage": "rest (imports, command line, MLflow start-up)",
            "seconds": round(wall - staged, 2),
            "share_of_train": round((wall - staged) / wall, 3),
            "rss_mb_at_end": None,
            "peak_rss_mb_so_far": round(statistics.median(t["peak_rss_mb"] for t in trains)),
        }
    )
    return table


def summarise(rounds: list[dict]) -> dict:
    def median(side: str, key: str) -> float:
        return statistics.median(r[side][key] for r in rounds)

    reference = median("features", "inner_seconds") + median("fit", "inner_seconds")
    train = median("train", "wall_seconds")
    peak = median("train", "peak_rss_mb")
    return {
        "train_wall_seconds": round(train, 1),
        "train_cpu_seconds": round(median("train", "cpu_seconds"), 1),
        "train_peak_rss_mb": round(peak),
        "features_seconds": round(median("features", "inner_seconds"), 1),
        "features_peak_rss_mb": round(median("features", "peak_rss_mb")),
        "plain_fit_seconds": round(median("fit", "inner_seconds"), 1),
        "plain_fit_persons": rounds[0]["fit"]["persons"],
        "reference_seconds": round(reference, 1),
        "ratio": round(train / reference, 2),
        "round_ratios": [
            round(
                r["train"]["wall_seconds"]
                / (r["features"]["inner_seconds"] + r["fit"]["inner_seconds"]),
                2,
            )
            for r in rounds
        ],
        "goal_ratio": GOAL_RATIO,
        "goal_peak_rss_mb": GOAL_PEAK_MB,
        "meets_goal": train / reference <= GOAL_RATIO and peak <= GOAL_PEAK_MB,
    }


def profiled(commit: str | None) -> str:
    """The commit whose code ran: --commit's, else this tree's (results_file's `commit`)."""
    if not commit:
        return git_commit()
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", commit], capture_output=True)
    return done.stdout.decode().strip()


def before(path: Path) -> dict:
    """An earlier run's commit, date, load and summary (`before`) and its stage table
    (`stages_before`, top level, for a docs page's results table), to read beside this one."""
    earlier = json.loads(path.read_text())
    keep = ("profiled_commit", "date", "machine", "summary")
    return {"before": {k: earlier[k] for k in keep}, "stages_before": earlier["stages"]}


def one_round(i: int, world: Path, as_of: str, work: Path) -> dict:
    """Features (which the plain fit reads), plain fit and train, the train's turn rotating."""
    row: dict = {"round": i + 1}
    steps = ["reference", "train"] if i % 2 == 0 else ["train", "reference"]
    for step in steps:
        if step == "train":
            row["train"] = run_train(world, as_of, work, f"train-{i}")
        else:
            row["features"] = run_features(world, as_of, work)
            row["fit"] = run_fit(world, work)
        print(step, {k: v for k, v in row.get(step, row).items() if k != "stages"}, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--as-of", default="2021-11-26")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=Path, required=True, help="Directory caching the month.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/train_profile.json")
    parser.add_argument(
        "--before",
        type=Path,
        help="An earlier result file (another commit's run) kept beside this one as `before`.",
    )
    parser.add_argument(
        "--commit", help="Profile this commit's code (laid out as installed) instead of the tree's."
    )
    args = parser.parse_args()
    if args.commit:
        global CODE
        CODE = lay_out(args.commit, Path(tempfile.mkdtemp(prefix="train-profile-code-")))
    args.keep.mkdir(parents=True, exist_ok=True)
    result = Result("train_profile")
    world = simulate(args, args.keep)
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="train-profile-", dir=args.keep) as name:
        for i in range(args.rounds):
            rounds.append(one_round(i, world, args.as_of, Path(name)))
            payload = {
                "profiled_commit": profiled(args.commit),
                "persons": args.persons,
                "seed": args.seed,
                "as_of": args.as_of,
                "plain_fit_trees": PLAIN_TREES,
                "rounds_done": len(rounds),
                "summary": summarise(rounds),
                "stages": stage_table(rounds),
                "rounds": rounds,
                **(before(args.before) if args.before else {}),
            }
            result.write(payload, args.out)  # kept if a later round fails


if __name__ == "__main__":
    main()
