"""How often `commuter monitor` alarms on months that moved and on months that did not, across
calendars, and how far its label-free FPR estimate is from the truth.

For each seed and month pair (benchmarks/monitor_collect.py: November -> December, the same
calendar; October -> November, National Day in the reference's window; January -> February, the
Spring Festival in the month's), a model is trained on the first month as `commuter train` fits it,
its reference built as training stores it, and the monitor judges the next month:
  - unchanged (the default sequence: ~8% of persons change truth, the mix kept);
  - moved: towards daily hospital visitors, carers and drivers with one kind the model never saw
    (`carers_drivers`: treatment escorts), the older mix shift (`mix`), and every unseen kind.
The limits (models/core/monitor.py `Thresholds`) are chosen on DEV seeds: each one the largest
value the check's deciding figure reached on an unchanged DEV month, times `HEADROOM`, rounded up;
the figures are then reported on TEST seeds the limits never saw. Writes
benchmarks/results/monitor.json (the docs' Measurements page is generated from it).

    .venv/bin/python benchmarks/monitor_bench.py --cache /tmp/monitor-cache
    .venv/bin/python benchmarks/monitor_bench.py --timing 200000 --dev 0 --test 0
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from cli_bench import git_commit, machine  # beside this file
from monitor_collect import CASES, PAIRS, collect  # beside this file

from commuter_badge.atomic import atomic_write
from commuter_badge.features.build import build_features
from commuter_badge.models.core.config import TrainConfig
from commuter_badge.models.core.data import labelled_features
from commuter_badge.models.core.fitting import fit_and_evaluate
from commuter_badge.models.core.monitor import Thresholds, monitor, reference_estimate
from commuter_badge.models.core.reference import build_reference
from commuter_badge.models.runs.monitor_run import month_scores
from commuter_badge.simulate import monthly_as_ofs, simulate_world, write_world

RESULT = Path(__file__).parent / "results" / "monitor.json"
HEADROOM = 1.2  # a limit sits this far above the largest unchanged DEV value
RATIOS = ("badge_share_ratio", "estimated_fpr_ratio")
RATIO_FLOOR = 1.05  # a banded ratio alarms only beyond a 5% move, whatever DEV says
DEV, TEST = [0, 1, 2, 3], [4, 5, 6, 7]  # TEST: `--test-seeds` may name fewer


def judge(folder: Path, t: Thresholds) -> list[dict]:
    """Every next month of one cached seed and pair, judged as `commuter monitor` would."""
    meta = json.loads((folder / "meta.json").read_text())
    val = pd.read_parquet(folder / "val.parquet")
    reference = build_reference(val, meta["threshold"], meta["calendar_first"])
    own = reference_estimate(reference)
    rows = []
    for case in CASES:
        month = pd.read_parquet(folder / f"{case}.parquet")
        proba = month["proba"].to_numpy()
        result = monitor(
            reference, month, proba, threshold=meta["threshold"], target_fpr=meta["target_fpr"],
            calendar=meta["calendar_next"], thresholds=t,
        )  # fmt: skip
        badge = proba >= meta["threshold"]
        checks = {c["check"]: c for c in result.checks}
        compared = [f for f in result.features if f["alarms"]]
        per_day = [f for f in compared if f["compared_as"] == "per_day"]
        as_is = [f for f in compared if f["compared_as"] != "per_day"]
        top = max(compared, key=lambda f: f["psi_compared"])
        rows.append(
            {
                "seed": meta["seed"],
                "pair": meta["pair"],
                "calendars_differ": meta["calendar_first"] != meta["calendar_next"],
                "case": case,
                "target_fpr": meta["target_fpr"],
                "true_fpr": float(badge[month["true_commuter"].to_numpy() == 0].mean()),
                "label_fpr": float(badge[month["is_commuter"].to_numpy() == 0].mean()),
                "estimated_fpr": result.estimated_fpr,
                "estimated_fpr_band": checks["estimated_fpr"]["band"],
                "reference_estimated_fpr": own["estimated_fpr_labels"],
                "fpr_ratio": checks["estimated_fpr_ratio"]["value"],
                "fpr_ratio_band": checks["estimated_fpr_ratio"]["band"],
                "badge_ratio": checks["badge_share_ratio"]["value"],
                "badge_ratio_band": checks["badge_share_ratio"]["band"],
                "score_psi": result.score_psi,
                "feature_psi": max((f["psi_compared"] for f in as_is), default=0.0),
                "feature_psi_per_day": max((f["psi_compared"] for f in per_day), default=0.0),
                "top_feature": top["name"],
                "alarm": result.alarm,
                "reasons": sorted(
                    {c for c, v in checks.items() if v["alarm"]}
                    | {f"feature:{f['name']}" for f in compared if f["margin"] < 0}
                ),
                # each check's margin as a share of its limit (a ratio's: of the limit's distance
                # from x1), negative when past it by that share
                "margin": {
                    **{c: v["band_margin"] / _scale(c, v["limit"]) for c, v in checks.items()},
                    **{f"feature:{f['name']}": f["margin"] / f["limit"] for f in compared},
                },
            }
        )
    return rows


def _scale(check: str, limit: float) -> float:
    return limit - 1 if check in RATIOS else limit


def deciding(row: dict) -> dict[str, float]:
    """What each limit is compared with: the band's nearer edge for the banded checks; the score
    PSI and the per-day feature PSI have limits of their own across calendars."""
    low, high = row["badge_ratio_band"]
    score = "score_psi_across_calendars" if row["calendars_differ"] else "score_psi"
    out = {
        score: row["score_psi"],
        "badge_share_ratio": max(low, 1 / high),
        "estimated_fpr_ratio": row["fpr_ratio_band"][0],
        "estimated_fpr_over_target": row["estimated_fpr_band"][0] / row["target_fpr"],
        "feature_psi": row["feature_psi"],
    }
    if row["calendars_differ"]:
        out["feature_psi_per_day"] = row["feature_psi_per_day"]
    return out


def choose(rows: list[dict]) -> dict[str, float]:
    """Each limit from the unchanged DEV months: the largest value of its deciding figure times
    HEADROOM, rounded up (two significant digits; three for the ratios). For the ratios, HEADROOM
    scales the distance from 1 on the log scale, and no limit is under RATIO_FLOOR (their bands
    mostly hold 1)."""
    quiet = [deciding(r) for r in rows if r["case"] == "unchanged" and r["seed"] in DEV]
    out = {}
    for name in sorted({k for q in quiet for k in q}):
        top = max(q[name] for q in quiet if name in q)
        if name in RATIOS:
            top = max(float(np.exp(HEADROOM * np.log(max(top, 1.0)))), RATIO_FLOOR)
        else:
            top *= HEADROOM
        digits = (2 if name in RATIOS else 1) - int(math.floor(math.log10(top)))
        out[name] = math.ceil(round(top * 10**digits, 9)) / 10**digits
    return out


def summary(rows: list[dict]) -> list[dict]:
    out = []
    for split, seeds in (("DEV", DEV), ("TEST", TEST)):
        for case in CASES:
            for differ in (False, True):
                part = [
                    r
                    for r in rows
                    if r["seed"] in seeds and r["case"] == case and r["calendars_differ"] == differ
                ]
                if not part:
                    continue
                out.append(
                    {
                        "seeds": split,
                        "case": case,
                        "calendars": "differ" if differ else "same",
                        "months": len(part),
                        "alarms": sum(r["alarm"] for r in part),
                        "true_fpr_mean": round(float(np.mean([r["true_fpr"] for r in part])), 5),
                        "estimated_fpr_mean": round(
                            float(np.mean([r["estimated_fpr"] for r in part])), 5
                        ),
                        "closest_margin_min": round(min(_margin(r) for r in part), 3),
                        "closest_margin_max": round(max(_margin(r) for r in part), 3),
                    }
                )
    return out


def _margin(row: dict) -> float:
    """The month's closest call: the smallest margin of any check or compared feature, as a share
    of its limit (negative: past the limit by that share)."""
    return min(row["margin"].values())


def estimate_error(rows: list[dict]) -> list[dict]:
    out = []
    for case in CASES:
        part = pd.DataFrame([r for r in rows if r["case"] == case and r["seed"] in TEST])
        gap = part["true_fpr"] - part["estimated_fpr"]
        inside = [
            lo <= t <= hi
            for (lo, hi), t in zip(part["estimated_fpr_band"], part["label_fpr"], strict=True)
        ]
        out.append(
            {
                "case": case,
                "months": len(part),
                "estimated_fpr_mean": round(float(part["estimated_fpr"].mean()), 5),
                "true_fpr_mean": round(float(part["true_fpr"].mean()), 5),
                "label_fpr_mean": round(float(part["label_fpr"].mean()), 5),
                "true_minus_estimated_mean": round(float(gap.mean()), 5),
                "true_minus_estimated_max_abs": round(float(gap.abs().max()), 5),
                "label_fpr_inside_band": f"{sum(inside)} of {len(inside)}",
            }
        )
    return out


def timing(persons: int, root: Path) -> dict:
    days = monthly_as_ofs(dt.date(2021, 11, 20), 2)
    paths = write_world(simulate_world(persons, days[1], 7), root / "timing")
    small = write_world(simulate_world(20_000, days[0], 7), root / "timing-train")
    fitted = fit_and_evaluate(
        labelled_features(small["trips"], small["labels"], days[0]), TrainConfig()
    )
    reference = build_reference(fitted.val, fitted.model.threshold)
    build_features(paths["trips"], days[1])  # warm the file cache
    start = time.perf_counter()
    build_features(paths["trips"], days[1])
    build = time.perf_counter() - start
    start = time.perf_counter()
    features = build_features(paths["trips"], days[1])
    proba = month_scores(fitted.model, features)
    monitor(reference, features, proba, threshold=fitted.model.threshold, target_fpr=0.01)
    total = time.perf_counter() - start
    return {"persons": persons, "build_s": round(build, 2), "monitor_s": round(total, 2),
            "ratio": round(total / build, 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--cache", type=Path, help="keep the trained worlds here (reused)")
    parser.add_argument("--timing", type=int, default=0, help="persons for the timing run")
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--test-seeds", type=int, nargs="+", default=TEST)
    parser.add_argument("--cached-only", action="store_true", help="judge only cached worlds")
    args = parser.parse_args()
    TEST[:] = args.test_seeds
    with tempfile.TemporaryDirectory(prefix="monitor-bench-") as tmp:
        cache = args.cache or Path(tmp)
        wanted = [(seed, pair) for seed in [*DEV, *TEST] for pair in PAIRS]
        if args.cached_only:  # what the cache holds complete; the JSON lists which months
            wanted = [(s, p) for s, p in wanted if (cache / f"{p}-s{s}" / "meta.json").exists()]
        folders = [collect(seed, pair, args.persons, cache) for seed, pair in wanted]
        t = Thresholds()
        rows = [row for folder in folders for row in judge(folder, t)]
        chosen = choose(rows)
        for row in rows:
            print(
                f"s{row['seed']} {row['pair']} {row['case']:<15} true FPR {row['true_fpr']:.3%} "
                f"est {row['estimated_fpr']:.3%} x{row['fpr_ratio']:.2f} | badge "
                f"x{row['badge_ratio']:.3f} | score PSI {row['score_psi']:.3f} | feature PSI "
                f"{row['feature_psi']:.3f} per day {row['feature_psi_per_day']:.3f} | "
                f"{', '.join(row['reasons']) or '-'}",
                flush=True,
            )
        result = {
            "benchmark": "monitor",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "machine": machine(),
            "persons": args.persons,
            "dev_seeds": ", ".join(map(str, DEV)),
            "test_seeds": ", ".join(map(str, TEST)),
            "pairs": {k: f"{a} -> {b}" for k, (a, b) in PAIRS.items()},
            "thresholds_in_code": dataclasses.asdict(t),
            "chosen_on_dev": chosen,
            "alarms": summary(rows),
            "estimate_error_test": estimate_error(rows),
            "months": [
                {
                    **{k: v for k, v in r.items() if k != "margin"},
                    "closest": min(r["margin"], key=r["margin"].get),
                    "closest_margin": round(_margin(r), 4),
                }
                for r in rows
            ],
        }
        if args.timing:
            result["timing"] = timing(args.timing, Path(tmp))
        text = json.dumps(result, indent=1, default=float)
        atomic_write(args.out, lambda p: Path(p).write_text(text))
        print(json.dumps({k: result[k] for k in ("chosen_on_dev", "alarms")}, indent=1))


if __name__ == "__main__":
    main()
