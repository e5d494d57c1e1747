"""Training one month at 200,000 persons: this commit against a reference commit, same data, same
machine, alternating rounds (which goes first alternates too), so a shared machine's load falls on
both alike.

The reference's code is checked out with `git worktree add` into a temporary directory and laid
out as installed (the package-dir map of its pyproject.toml, as tools/gen_docs.py lays out the API
tree), put first on PYTHONPATH so the same virtualenv runs it; this commit runs as installed.
Each run is `commuter train` in a fresh directory (its own MLflow SQLite store, so both register a
first version and promote it). Wall time, CPU time (user + system) and peak RSS from the child's
own rusage (os.wait4).

    .venv/bin/python benchmarks/train_time_bench.py --rounds 3

Writes benchmarks/results/train_time.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from results_file import ROOT, Result

BEFORE = "5b740fd"  # the commit before issue 30's recovery work (weighted labels, --month)


def lay_out(commit: str, tmp: Path) -> Path:
    """The reference commit's package tree under tmp/pkg, importable as commuter_badge."""
    tree = tmp / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit],
        check=True,
        capture_output=True,
    )
    pkg = tmp / "pkg"
    dirs = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, folder in dirs["package-dir"].items():
        shutil.copytree(
            tree / folder,
            pkg.joinpath(*package.split(".")),
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"),
            dirs_exist_ok=True,
        )
    return pkg


def run_train(world: Path, as_of: str, pythonpath: Path | None, workdir: Path) -> dict:
    """One `commuter train` in a fresh directory; the child's wall, CPU and peak RSS."""
    workdir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMMUTER_", "MLFLOW_"))}
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    command = [
        str(Path(sys.executable).with_name("commuter")),
        "train",
        "--trips",
        str(world / "trips.parquet"),
        "--labels",
        str(world / "labels.csv"),
        "--as-of",
        as_of,
    ]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    child = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"train failed: {child.stderr.read().decode()[-2000:]}")
    child.stderr.close()
    return {
        "wall_seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
        "load_1min_at_start": load,
    }


def summarise(rounds: list[dict]) -> dict:
    def median(side: str, key: str) -> float:
        return statistics.median(r[side][key] for r in rounds)

    out = {}
    for key in ("wall_seconds", "cpu_seconds", "peak_rss_mb"):
        out[key] = {
            "before_median": median("before", key),
            "after_median": median("after", key),
            "ratio_of_medians": median("after", key) / median("before", key),
            "median_round_ratio": statistics.median(
                r["after"][key] / r["before"][key] for r in rounds
            ),
        }
    out["within_10_percent"] = all(v["median_round_ratio"] <= 1.10 for v in out.values())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--as-of", default="2021-10-20")  # `commuter simulate`'s default
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--world", type=Path, help="A simulated month to reuse (else simulated).")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/train_time.json")
    args = parser.parse_args()
    result = Result("train_time")
    with tempfile.TemporaryDirectory(prefix="train-time-") as name:
        tmp = Path(name)
        world = args.world or simulate(args, tmp / "world")
        pkg = lay_out(args.before, tmp / "before")
        rounds: list[dict] = []
        try:
            for i in range(args.rounds):
                row: dict = {"round": i + 1}
                order = ("before", "after") if i % 2 == 0 else ("after", "before")
                for side in order:
                    path = pkg if side == "before" else None
                    row[side] = run_train(world, args.as_of, path, tmp / f"run-{i}-{side}")
                    print(side, row[side], flush=True)
                rounds.append(row)
                payload = {
                    "persons": args.persons,
                    "seed": args.seed,
                    "before_commit": args.before,
                    "rounds": rounds,
                    "summary": summarise(rounds),
                }
                result.write(payload, args.out)  # kept if a later round fails
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "before/tree")],
                check=False,
            )


def simulate(args, out: Path) -> Path:
    command = [str(Path(sys.executable).with_name("commuter")), "simulate"]
    command += ["--persons", str(args.persons), "--seed", str(args.seed), "--out", str(out)]
    command += ["--as-of", args.as_of]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return out


if __name__ == "__main__":
    main()
