"""How often `commuter monitor` alarms on months that did and did not shift, and how far its
label-free FPR estimate is from the truth.

For each seed: a model is trained (the pure core, models/core/fitting.py) on the first month of a
simulated sequence, its reference built as training stores it, and the monitor run on
  - unshifted next months (the default sequence: ~8% of persons change truth, mix unchanged);
  - shifted next months: new kinds of behaviour (UNSEEN_KINDS), and a mix shift (more people who
    stopped commuting, drive for hire or carry patients).
Printed: per month the figures the alarm looks at, the real FPR (against the simulation's truth
and against the noisy labels) beside the CBPE estimate, then the false-alarm rate (unshifted) and
the detection rate (shifted) under models/core/monitor.py's `Thresholds`.

With `--timing N`: monitor time on one N-person month against the feature build alone.

    .venv/bin/python benchmarks/monitor_bench.py --persons 20000 --seeds 4
    .venv/bin/python benchmarks/monitor_bench.py --timing 200000 --seeds 0
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from commuter_badge.features.build import build_features
from commuter_badge.features.workdays import window_calendar
from commuter_badge.models.core.config import TrainConfig
from commuter_badge.models.core.data import labelled_features
from commuter_badge.models.core.fitting import fit_and_evaluate
from commuter_badge.models.core.monitor import Thresholds, monitor
from commuter_badge.models.core.reference import build_reference
from commuter_badge.models.runs.monitor_run import month_scores
from commuter_badge.simulate import (
    UNSEEN_KINDS,
    DriftSettings,
    monthly_as_ofs,
    simulate_months,
    simulate_world,
    write_months,
    write_world,
)

# Windows of 2021-11-20 and 2021-12-20 hold no public holiday: "unshifted" then means the same
# calendar too (a holiday month shifts the working-day features by itself).
FIRST = dt.date(2021, 11, 20)
SHIFTS = {
    "new_kinds": DriftSettings(new_kinds=UNSEEN_KINDS),
    "mix": DriftSettings(mix={"stopped_commuting": 2.5, "ride_hail": 2.0, "hospital_carer": 2.0}),
}


def judge(model, reference, month: dict[str, Path], as_of: dt.date, target: float) -> dict:
    window = model.meta.window_days
    features = build_features(month["trips"], as_of, window)
    proba = model.predict_proba(features)
    result = monitor(
        reference,
        features,
        proba,
        threshold=model.threshold,
        target_fpr=target,
        as_of=str(as_of),
        calendar=window_calendar(as_of, window),
    )
    truth = pd.read_parquet(month["persons"])[["person_id", "true_commuter"]]
    labels = pd.read_csv(month["labels"], dtype={"person_id": str})
    frame = features[["person_id"]].assign(badge=proba >= model.threshold)
    frame = frame.merge(truth, on="person_id").merge(labels, on="person_id")
    neg_true, neg_label = frame["true_commuter"] == 0, frame["is_commuter"] == 0
    return {
        "estimated_fpr": result.estimated_fpr,
        "true_fpr": float(frame.loc[neg_true, "badge"].mean()),
        "label_fpr": float(frame.loc[neg_label, "badge"].mean()),
        "estimated_recall": result.estimated_recall,
        "true_recall": float(frame.loc[~neg_true, "badge"].mean()),
        "max_feature_psi": max(f["psi"] for f in result.features if f["alarms"]),
        "top_feature": max((f for f in result.features if f["alarms"]), key=lambda f: f["psi"])[
            "name"
        ],
        "phase_psi": max(f["psi"] for f in result.features if not f["alarms"]),
        "score_psi": result.score_psi,
        "badge_ratio": result.badge_share / result.reference_badge_share,
        "target_fpr": target,
        "alarm": result.alarm,
    }


def alarmed(row: dict, t: Thresholds) -> bool:
    r = t.badge_share_ratio
    return (
        row["estimated_fpr"] > t.estimated_fpr_over_target * row["target_fpr"]
        or row["score_psi"] > t.score_psi
        or row["max_feature_psi"] > t.feature_psi
        or not 1 / r <= row["badge_ratio"] <= r
    )


def run_seed(seed: int, persons: int, root: Path) -> list[dict]:
    days = monthly_as_ofs(FIRST, 2)
    base = write_months(simulate_months(persons, days, seed), root / f"s{seed}" / "base")
    first = base[days[0]]
    config = TrainConfig(seed=seed)
    fitted = fit_and_evaluate(labelled_features(first["trips"], first["labels"], days[0]), config)
    model = fitted.model
    reference = build_reference(
        fitted.val, model.threshold, window_calendar(days[0], config.window_days)
    )
    rows = []
    for day in days[1:]:
        row = judge(model, reference, base[day], day, config.target_fpr)
        rows.append({"seed": seed, "month": str(day), "case": "unshifted", **row})
    for name, drift in SHIFTS.items():
        worlds = simulate_months(persons, days[:2], seed, drift=drift)
        shifted = write_months(worlds, root / f"s{seed}" / name)[days[1]]
        row = judge(model, reference, shifted, days[1], config.target_fpr)
        rows.append({"seed": seed, "month": str(days[1]), "case": name, **row})
    for row in rows:
        print(
            f"seed {seed} {row['month']} {row['case']:<10} est FPR {row['estimated_fpr']:.3%} "
            f"true {row['true_fpr']:.3%} label {row['label_fpr']:.3%} | est recall "
            f"{row['estimated_recall']:.3f} true {row['true_recall']:.3f} | max PSI "
            f"{row['max_feature_psi']:.3f} ({row['top_feature']}) score PSI {row['score_psi']:.3f}"
            f" badge x{row['badge_ratio']:.2f} calendar-phase PSI {row['phase_psi']:.2f}"
            f" | alarm {row['alarm']}",
            flush=True,
        )
    return rows


def summarise(rows: list[dict], t: Thresholds) -> None:
    frame = pd.DataFrame(rows)
    frame["alarm"] = [alarmed(r, t) for r in rows]
    frame["gap"] = frame["true_fpr"] - frame["estimated_fpr"]
    frame["gap_label"] = frame["label_fpr"] - frame["estimated_fpr"]
    print(f"\nthresholds {dataclasses.asdict(t)}")
    for case, part in frame.groupby("case"):
        print(
            f"{case:<10} months {len(part):>2}  alarm rate {part['alarm'].mean():.0%}  "
            f"est FPR {part['estimated_fpr'].mean():.3%}  true FPR {part['true_fpr'].mean():.3%} "
            f"(true - est: mean {part['gap'].mean():+.3%}, max |.| {part['gap'].abs().max():.3%})"
            f"  label FPR {part['label_fpr'].mean():.3%} (label - est {part['gap_label'].mean():+.3%})"
            f"  max PSI {part['max_feature_psi'].max():.3f}  score PSI max "
            f"{part['score_psi'].max():.3f}"
        )
    quiet = frame[frame["case"] == "unshifted"]
    moved = frame[frame["case"] != "unshifted"]
    print(
        f"false-alarm rate {quiet['alarm'].mean():.0%} ({int(quiet['alarm'].sum())}/{len(quiet)} "
        f"unshifted months); detection rate {moved['alarm'].mean():.0%} "
        f"({int(moved['alarm'].sum())}/{len(moved)} shifted months)"
    )


def timing(persons: int, root: Path) -> None:
    days = monthly_as_ofs(FIRST, 2)
    paths = write_world(simulate_world(persons, days[1], 7), root / "timing")
    small = write_world(simulate_world(20_000, days[0], 7), root / "timing-train")
    fitted = fit_and_evaluate(
        labelled_features(small["trips"], small["labels"], days[0]), TrainConfig()
    )
    reference = build_reference(fitted.val, fitted.model.threshold)
    build_features(paths["trips"], days[1])  # warm the file cache for both
    start = time.perf_counter()
    build_features(paths["trips"], days[1])
    build = time.perf_counter() - start
    start = time.perf_counter()
    features = build_features(paths["trips"], days[1])
    built = time.perf_counter()
    proba = month_scores(fitted.model, features)
    scored = time.perf_counter()
    monitor(reference, features, proba, threshold=fitted.model.threshold, target_fpr=0.01)
    end = time.perf_counter()
    total = end - start
    print(
        f"{persons:,} persons: feature build alone {build:.1f} s; monitor {total:.1f} s (build "
        f"{built - start:.1f}, score {scored - built:.1f}, drift and estimates {end - scored:.1f}),"
        f" ratio {total / build:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="held-out check: seeds the thresholds never saw"
    )
    parser.add_argument("--timing", type=int, default=0, help="persons for the timing run")
    parser.add_argument("--out", type=Path, help="write the per-month rows as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="monitor-bench-") as tmp:
        rows = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            rows += run_seed(seed, args.persons, Path(tmp))
        if rows:
            summarise(rows, Thresholds())
            if args.out:
                args.out.write_text(json.dumps(rows, indent=1, default=float))
        if args.timing:
            timing(args.timing, Path(tmp))


if __name__ == "__main__":
    main()
