"""How fast the command line answers `--help` (issue 27, newcomer item 3): budget 1 s each.

    python benchmarks/cli_bench.py [--rounds 7] [--out benchmarks/results/cli_help.json]

Times `commuter --help` and `commuter <command> --help` for every command and subcommand the app
registers (found from the app itself, so a new command is measured without editing this file),
each as its own process, `--rounds` times in turn. Reports per command the median wall time and
the median CPU time (user + system of the child): on a shared machine the wall time also holds
the wait for a core, the CPU time does not. Writes the figures as JSON with the date, the commit
and the machine (its load average before and after included) to `--out`; the docs are generated
from such result files. Exits 1 when a median wall time is over the budget.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results_file import Result  # benchmarks/: the script's own folder

ROOT = Path(__file__).resolve().parents[1]
BUDGET_SECONDS = 1.0
COMMUTER = Path(sys.executable).parent / "commuter"


def command_paths() -> list[list[str]]:
    """[] for the app, then every command and every subcommand of a group, as argv prefixes."""
    import typer.main

    from commuter_badge.cli.main import app

    paths: list[list[str]] = [[]]

    def walk(group, prefix: list[str]) -> None:
        for name, command in sorted(group.commands.items()):
            paths.append([*prefix, name])
            if hasattr(command, "commands"):
                walk(command, [*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of `argv`, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="runs of each command (median)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cli_help.json")
    args = parser.parse_args()
    if not COMMUTER.exists():
        raise SystemExit(f"{COMMUTER} not found: run with the project's .venv/bin/python")

    paths = command_paths()
    result = Result("cli_help")
    runs: dict[str, list[tuple[float, float]]] = {" ".join(p): [] for p in paths}
    timed([str(COMMUTER), "--help"])  # warm the file cache once, not counted
    for _ in range(args.rounds):  # in turn, so a burst of load spreads over all commands
        for path in paths:
            runs[" ".join(path)].append(timed([str(COMMUTER), *path, "--help"]))

    results = []
    for name, samples in runs.items():
        wall = statistics.median(w for w, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        results.append(
            {
                "command": f"commuter {name} --help".replace("  ", " "),
                "median_wall_s": round(wall, 4),
                "median_cpu_s": round(cpu, 4),
                "max_wall_s": round(max(w for w, _ in samples), 4),
                "within_budget": wall <= BUDGET_SECONDS,
            }
        )
        print(f"{results[-1]['command']:<40} wall {wall:6.3f} s  cpu {cpu:6.3f} s")
    report = {
        "rounds": args.rounds,
        "budget_s": BUDGET_SECONDS,
        "all_within_budget": all(r["within_budget"] for r in results),
        "slowest_median_wall_s": max(r["median_wall_s"] for r in results),
        "results": results,
    }
    result.write(report, args.out)
    print(f"slowest median {report['slowest_median_wall_s']:.3f} s (budget {BUDGET_SECONDS} s)")
    return 0 if report["all_within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
