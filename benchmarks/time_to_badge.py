"""Time to badge: a new commuter's badge share against working days since their first commute.

A champion model (`--tracking`, else one trained here on a simulated month) scores invented new
starters: a daily round trip by car through one checkpoint (entry about 07:00, exit about 18:30,
95% of working days), begun n = 1..20 working days before as_of, several person seeds; and, on the
other side, short visitors who are not commuters: 1-5 consecutive days of one round trip each,
ending at a random day of the window (not necessarily the last). Two scoring dates: one whose
window holds no long holiday and one whose window holds the Spring Festival.

Writes benchmarks/results/time_to_badge.json: per as_of and n, the badge share over persons and
seeds; the first n at which half and 90% of starters hold the badge (median and p90); the
visitors' badge share by length. Goal (issue 31): median <= 3, p90 <= 5, visitors of <= 3 days
under the target FPR.

    .venv/bin/python benchmarks/time_to_badge.py [--tracking sqlite:///mlflow.db] [--persons 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from commuter_badge.features.build import features_from_rows
from commuter_badge.features.workdays import LIBRARY_CALENDAR, SHANGHAI_OFFSET_SECONDS, day_number

RESULTS = Path(__file__).parent / "results" / "time_to_badge.json"
PLAIN, FESTIVAL = dt.date(2021, 11, 24), dt.date(2022, 2, 16)  # Spring Festival 2022: 01-31..02-06
TRAIN_AS_OF = dt.date(2021, 10, 20)
SITE = ("car", "CK-G1-XIJI", "langfang-xianghe")


def _at(day: dt.date, hour: float) -> int:
    return day_number(day) * 86400 - SHANGHAI_OFFSET_SECONDS + round(hour * 3600)


def round_trip(day: dt.date, rng, entry=7.0, exit_=18.5) -> list[tuple]:
    return [
        (_at(day, entry + rng.normal(0, 0.3)), "in", *SITE),
        (_at(day, exit_ + rng.normal(0, 0.5)), "out", *SITE),
    ]


def starter(as_of: dt.date, n: int, rng) -> list[tuple]:
    """A commuter whose first commute was the n-th working day before as_of."""
    days = [as_of - dt.timedelta(k) for k in range(1, 60)]
    work = [d for d in days if LIBRARY_CALENDAR.is_workday(d)][:n]
    kept = [d for i, d in enumerate(work) if i == n - 1 or rng.random() < 0.95]
    return [r for d in kept for r in round_trip(d, rng)]


def visitor(as_of: dt.date, k: int, rng) -> list[tuple]:
    """k consecutive days of a round trip, ending on a random day of the window."""
    end = as_of - dt.timedelta(int(rng.integers(1, 28 - k + 2)))
    days = [end - dt.timedelta(j) for j in range(k)]
    return [r for d in days for r in round_trip(d, rng, rng.uniform(8, 12), rng.uniform(14, 20))]


def badges(model, persons: dict[str, list[tuple]], as_of: dt.date) -> dict[str, bool]:
    rows = [(p, *r) for p, trips in persons.items() for r in trips]
    frame = features_from_rows(rows, as_of, model.meta.window_days)
    held = model.decide(model.predict_proba(frame))
    return dict(zip(frame["person_id"], map(bool, held), strict=True))


def measure(model, as_of: dt.date, persons: int, seeds: list[int]) -> dict:
    share = {n: [] for n in range(1, 21)}
    visitors = {k: [] for k in range(1, 6)}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        people = {f"s{n}-{i}": starter(as_of, n, rng) for n in share for i in range(persons)}
        got = badges(model, people, as_of)
        for n in share:
            share[n].append(float(np.mean([got.get(f"s{n}-{i}", False) for i in range(persons)])))
        people = {f"v{k}-{i}": visitor(as_of, k, rng) for k in visitors for i in range(persons)}
        got = badges(model, people, as_of)
        for k in visitors:
            visitors[k].append(
                float(np.mean([got.get(f"v{k}-{i}", False) for i in range(persons)]))
            )
    curve = {n: float(np.mean(v)) for n, v in share.items()}
    return {
        "starter_badge_share": curve,
        # the badge share read as a time-to-badge distribution: the first n reaching 50% and 90%
        "median_working_days": next((n for n, v in curve.items() if v >= 0.5), None),
        "p90_working_days": next((n for n, v in curve.items() if v >= 0.9), None),
        "visitor_badge_share": {k: float(np.mean(v)) for k, v in visitors.items()},
    }


def trained_model(tracking: str | None):
    from commuter_badge.models.mlflow_edge import registry

    if tracking is None:
        from commuter_badge.models.runs.train import TrainConfig, train
        from commuter_badge.simulate.world import simulate_world, write_world

        root = Path(tempfile.mkdtemp(prefix="time-to-badge-"))
        tracking = f"sqlite:///{root}/mlflow.db"
        registry.configure(tracking)
        write_world(simulate_world(8_000, TRAIN_AS_OF, seed=7), root)
        train(root / "trips.parquet", root / "labels.csv", TRAIN_AS_OF, TrainConfig(seed=0))
    registry.configure(tracking)
    return registry.load_model(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking", default=None)
    parser.add_argument("--persons", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    args = parser.parse_args()
    model = trained_model(args.tracking)
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "machine": platform.platform(),
        "model_version": str(model.version),
        "target_fpr": model.target_fpr,
        "persons_per_seed": args.persons,
        "seeds": args.seeds,
        "goal": "median <= 3 and p90 <= 5 working days; visitors of <= 3 days under the target FPR",
        "windows": {
            "plain": {
                "as_of": PLAIN.isoformat(),
                **measure(model, PLAIN, args.persons, args.seeds),
            },
            "spring_festival": {
                "as_of": FESTIVAL.isoformat(),
                **measure(model, FESTIVAL, args.persons, args.seeds),
            },
        },
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["windows"], indent=1))


if __name__ == "__main__":
    main()
