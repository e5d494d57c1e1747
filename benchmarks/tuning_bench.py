"""Time per Optuna trial (`commuter train --tune N`) on a simulated world.

Builds the labelled features once, then runs N trials of models/core/tuning.py exactly as training
does (fit on the fit persons, early stopping and objective on the early-stopping persons) and
prints wall-clock and CPU seconds per trial. CPU seconds are the steadier figure on a shared
machine. Run:
    commuter simulate --persons 200000 --out /tmp/w200k
    python benchmarks/tuning_bench.py --world /tmp/w200k --trials 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from pathlib import Path

from commuter_badge.models.core.config import TrainConfig
from commuter_badge.models.core.data import labelled_features
from commuter_badge.models.core.fitting import fit_booster, split
from commuter_badge.models.core.tuning import tune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--as-of", default="2021-10-20")
    parser.add_argument("--trials", type=int, default=2)
    args = parser.parse_args()
    as_of = dt.date.fromisoformat(args.as_of)
    start = time.perf_counter()
    labelled = labelled_features(args.world / "trips.parquet", args.world / "labels.csv", as_of)
    config = TrainConfig()
    frame = split(labelled, config)
    print(f"{len(frame):,} labelled persons; features in {time.perf_counter() - start:.1f} s")
    sizes = frame["part"].value_counts().to_dict()
    print(f"fit {sizes['fit']:,}, early_stop {sizes['early_stop']:,} persons")
    clock = {"cpu": os.times()}

    def report(number: int, params: dict, value: float, seconds: float, rounds: int) -> None:
        now = os.times()
        cpu = (now.user + now.system) - (clock["cpu"].user + clock["cpu"].system)
        clock["cpu"] = now
        print(
            f"trial {number}: {seconds:7.1f} s wall, {cpu:7.1f} s CPU, best round {rounds}, "
            f"recall at target on early_stop {value:.4f}, learning_rate {params['learning_rate']:.3f}"
        )

    tune(frame, config, args.trials, fit_booster, on_trial=report)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
