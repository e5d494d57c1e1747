"""Recall and FPR on worlds the model was not built on: the robustness benchmark of issue 14.

A model is trained through the project's own pure core (models/core/fitting.py `fit_and_evaluate`,
default `TrainConfig`) on a default-settings world, then scored on worlds made with *different*
simulator settings (simulate/variation.py, simulate/months.py):

  next_month      the training population one month later (`simulate_months`: starters, stoppers)
  perturbed_<s>   archetype parameters and mix randomised (`WorldSettings().perturbed(s, SPREAD)`)
  unseen_kinds    kinds the training world lacks (`with_kinds(UNSEEN_KINDS)`)
  holiday_plain   an ordinary next month under holiday settings (`for_holidays()`: festival
                  visitors present, no long holiday in the window, so no leave is taken)
  spring_festival the month to 2022-02-18 under `for_holidays()` (leave around the festival,
                  family visitors over it), scored by a model trained on the month to 2022-01-21
                  (DEV: the 2023 festival, and `spring_festival_2024`, the month to 2024-02-28,
                  where people who stopped commuting stopped just before the holiday)

Per world, against the simulation's truth (`true_commuter`) unless said otherwise, for the model
and for issue 14's plain reference (plain_reference.py, trained on the same labelled world):
  - recall and FPR at the certified operating point (the model's own threshold, `decide`), and
    the same recall against the world's noisy labels;
  - recall at 0.1% FPR: the threshold is chosen on this world's own truth negatives, so it is an
    ORACLE figure (no deployed model can pick it), a measure of how well the scores rank;
  - recall per commuter archetype, badge rate per non-commuter archetype;
  - what `commuter monitor` says of the world without labels (models/core/monitor.py against the
    reference training stores): alarm and reasons, estimated FPR and recall beside the truth's,
    and whether its features were compared (only between windows of the same calendar).
Every person of a world counts: one with no crossing in the window has no features and no badge
(a miss if a commuter). Two sets of worlds: `TEST` (seeds fixed before any result was seen, the
2022 Spring Festival) gives the figures reported; `DEV` (`--dev`: other seeds, the 2023 and 2024
festivals) is the only set choices were made on. Do not tune on TEST. The training worlds have 1% wrong
labels in each class by default (`--label-noise`), as the issue's independent worlds had.

    .venv/bin/python benchmarks/quality_bench.py                 # 20,000 persons a world
    .venv/bin/python benchmarks/quality_bench.py --dev --param label_noise=0.01
    .venv/bin/python benchmarks/quality_bench.py --persons 4000 --out /tmp/quality.json
    .venv/bin/python benchmarks/quality_bench.py --train-kinds 0.1   # labels of new kinds arrived
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from commuter_badge.features.build import build_features
from commuter_badge.features.workdays import LIBRARY_CALENDAR
from commuter_badge.models.core.bundle import CommuterModel
from commuter_badge.models.core.config import TrainConfig
from commuter_badge.models.core.data import labelled_features
from commuter_badge.models.core.fitting import fit_and_evaluate
from commuter_badge.models.core.monitor import CALENDAR_PHASE, monitor
from commuter_badge.models.core.reference import build_reference
from commuter_badge.simulate import (
    SPRING_FESTIVAL_2022_AS_OF,
    UNSEEN_KINDS,
    World,
    WorldSettings,
    simulate_months,
    simulate_world,
    write_world,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_reference import PlainReference, train_reference  # noqa: E402 - beside this file
from plain_reference import counts as reference_counts  # noqa: E402
from results_file import Result  # noqa: E402

ORDINARY_TRAIN = dt.date(2021, 10, 20)
ORDINARY_TEST = dt.date(2021, 11, 20)  # window 10-23 .. 11-19 holds no statutory holiday
TRAIN_SEED = 1  # the October world's seed; the January world's is this + 1


@dataclass(frozen=True)
class Festival:
    """A holiday month: its world's seed, scored as of `test` by a model trained as of `train`."""

    name: str
    seed: int
    train: dt.date
    test: dt.date


@dataclass(frozen=True)
class WorldSet:
    """Seeds and festivals of one set of unseen worlds. `TEST` gives the figures reported;
    `DEV` (other seeds, the 2023 and 2024 Spring Festivals) is the only set choices may be made
    on."""

    train_seed: int
    perturb_seeds: tuple[int, ...]  # world seeds are these + 1000
    unseen_seed: int
    holiday_seed: int
    festivals: tuple[Festival, ...]


TEST = WorldSet(
    1,
    (101, 202, 303),
    404,
    505,
    (Festival("spring_festival", 606, dt.date(2022, 1, 21), SPRING_FESTIVAL_2022_AS_OF),),
)
DEV = WorldSet(
    7,
    (11, 22, 33),
    44,
    55,
    (
        # 2023: days off 01-21 .. 01-27, make-up working days 01-28/29; window 01-13 .. 02-09.
        Festival("spring_festival", 66, dt.date(2022, 12, 16), dt.date(2023, 2, 10)),
        # 2024: days off 02-10 .. 02-17, make-up working days 02-04/18; window 01-31 .. 02-27,
        # so people who stopped commuting 21-30 days before stopped just before the holiday.
        Festival("spring_festival_2024", 77, dt.date(2024, 1, 26), dt.date(2024, 2, 28)),
    ),
)
SPREAD = 1.0  # variation.py: "1 is a plausible other world"
ORACLE_FPR = 0.001
# The training worlds' label noise: issue 14's independent worlds had 1%, twice the simulator's
# default; labels of commuters marked 0 eat into a certificate measured against labels.
LABEL_NOISE = 0.01
# Issue 14's targets.
TARGET_RECALL = {"ordinary": 0.995, "holiday": 0.985}
TARGET_ORACLE_RECALL = 0.96


@dataclass(frozen=True)
class UnseenWorld:
    name: str
    kind: str  # "ordinary" or "holiday": which recall target applies
    trained_on: str  # "october", or the festival whose training month it uses
    as_of: dt.date
    make: Callable[[int], World]  # persons -> world


def unseen_worlds(next_month: Callable[[int], World], ws: WorldSet = TEST) -> list[UnseenWorld]:
    """The worlds scored, in order; `next_month` gives the training population a month later."""
    base = WorldSettings()
    worlds = [UnseenWorld("next_month", "ordinary", "october", ORDINARY_TEST, next_month)]
    for s in ws.perturb_seeds:
        settings = base.perturbed(s, SPREAD)
        worlds.append(
            UnseenWorld(
                f"perturbed_{s}",
                "ordinary",
                "october",
                ORDINARY_TEST,
                lambda n, st=settings, s=s: simulate_world(n, ORDINARY_TEST, s + 1000, settings=st),
            )
        )
    worlds += [
        UnseenWorld(
            "unseen_kinds",
            "ordinary",
            "october",
            ORDINARY_TEST,
            lambda n: simulate_world(
                n, ORDINARY_TEST, ws.unseen_seed, settings=base.with_kinds(UNSEEN_KINDS)
            ),
        ),
        UnseenWorld(
            "holiday_plain",
            "ordinary",
            "october",
            ORDINARY_TEST,
            lambda n: simulate_world(
                n, ORDINARY_TEST, ws.holiday_seed, settings=base.for_holidays()
            ),
        ),
    ]
    worlds += [
        UnseenWorld(
            f.name,
            "holiday",
            f.name,
            f.test,
            lambda n, f=f: simulate_world(n, f.test, f.seed, settings=base.for_holidays()),
        )
        for f in ws.festivals
    ]
    return worlds


@dataclass(frozen=True)
class Trained:
    """The champion's training path and issue 14's plain reference, on the same labelled world."""

    model: CommuterModel
    reference: PlainReference
    drift_reference: dict  # what `commuter train` stores for `commuter monitor` (its val persons)
    label_noise: float  # the policy's, which the monitor's estimate is restated under


def train(world: World, as_of: dt.date, root: Path, config: TrainConfig) -> Trained:
    """The project's training path on written files: labelled_features -> fit_and_evaluate."""
    paths = write_world(world, root)
    labelled = labelled_features(
        paths["trips"], paths["labels"], as_of, copies=config.copy_weight > 0
    )
    fitted = fit_and_evaluate(labelled, config)
    return Trained(
        fitted.model,
        train_reference(world.trips, world.labels, as_of, config),
        build_reference(
            fitted.val,
            fitted.model.threshold,
            LIBRARY_CALENDAR.window_calendar(as_of, config.window_days),
        ),
        config.label_noise,
    )


def _with_truth(world: World, frame: pd.DataFrame) -> pd.DataFrame:
    """Every person of `world` with truth and noisy label, and `frame`'s proba and badge."""
    persons = world.persons[["person_id", "archetype", "true_commuter"]].astype({"person_id": str})
    labels = world.labels.astype({"person_id": str})
    out = persons.merge(labels, on="person_id", how="left").merge(frame, on="person_id", how="left")
    out["crossed"] = out["proba"].notna()
    out["proba"] = out["proba"].fillna(0.0)  # no crossing in the window: no features, no badge
    out["badge"] = out["badge"].astype("boolean").fillna(False).astype(bool)
    return out


def scored(
    trained: Trained, world: World, as_of: dt.date, root: Path, target_fpr: float
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Every person of `world` scored by the champion and by the plain reference, and what
    `commuter monitor` (no labels) says of the month."""
    paths = write_world(world, root)
    window = trained.model.meta.window_days
    features = build_features(paths["trips"], as_of, window)
    proba = trained.model.predict_proba(features)
    frame = features[["person_id"]].assign(proba=proba, badge=trained.model.decide(proba))
    counted = reference_counts(world.trips, as_of)
    ref_scores = trained.reference.score(counted)
    ref = counted[["person_id"]].assign(
        proba=ref_scores, badge=trained.reference.decide(ref_scores)
    )
    watch = monitor(
        trained.drift_reference,
        features,
        proba,
        threshold=trained.model.threshold,
        target_fpr=target_fpr,
        as_of=str(as_of),
        calendar=LIBRARY_CALENDAR.window_calendar(as_of, window),
        label_noise=trained.label_noise,
    )
    watched = {
        "features_compared": watch.calendar["compare_features"],
        "alarm": watch.alarm,
        "alarm_reasons": watch.alarm_reasons,
        "estimated_fpr": watch.estimated_fpr,
        "estimated_fpr_labels": watch.estimates["estimated_fpr_labels"],
        "estimated_recall": watch.estimated_recall,
        "score_psi": watch.score_psi,
        # the largest drift of a feature that alarms between windows of one calendar
        "max_feature_psi": max(f["psi"] for f in watch.features if f["name"] not in CALENDAR_PHASE),
        "badge_share_ratio": watch.badge_share / watch.reference_badge_share,
    }
    return _with_truth(world, frame), _with_truth(world, ref), watched


def oracle_recall(truth: np.ndarray, proba: np.ndarray, fpr: float) -> tuple[float, float]:
    """Recall at the loosest threshold keeping FPR <= `fpr` on these very negatives (an oracle)."""
    neg = np.sort(proba[truth == 0])[::-1]
    k = int(np.floor(fpr * len(neg)))  # at most k negatives may pass
    cut = neg[k] if k < len(neg) else -np.inf
    passed = proba > cut
    return float(passed[truth == 1].mean()), float(passed[truth == 0].mean())


def measure(frame: pd.DataFrame) -> dict:
    truth, badge = frame["true_commuter"].to_numpy(), frame["badge"].to_numpy()
    label = frame["is_commuter"].to_numpy()
    recall_oracle, fpr_oracle = oracle_recall(truth, frame["proba"].to_numpy(), ORACLE_FPR)
    per = frame.groupby("archetype").agg(
        n=("badge", "size"),
        commuter_share=("true_commuter", "mean"),
        badge_rate=("badge", "mean"),
        crossed=("crossed", "mean"),
    )
    return {
        "persons": len(frame),
        "true_commuters": int(truth.sum()),
        "true_commuters_not_crossing": int(((truth == 1) & ~frame["crossed"]).sum()),
        "recall_truth": float(badge[truth == 1].mean()),
        "fpr_truth": float(badge[truth == 0].mean()),
        "recall_labels": float(badge[label == 1].mean()),
        "fpr_labels": float(badge[label == 0].mean()),
        "oracle_recall_at_0.1pct_fpr": recall_oracle,
        "oracle_fpr": fpr_oracle,
        "archetypes": {name: {k: float(v) for k, v in row.items()} for name, row in per.iterrows()},
    }


def verdict(row: dict, target_fpr: float) -> dict[str, bool]:
    return {
        "recall": row["recall_truth"] >= TARGET_RECALL[row["kind"]],
        "oracle": row["oracle_recall_at_0.1pct_fpr"] >= TARGET_ORACLE_RECALL,
        "fpr": row["fpr_truth"] <= target_fpr,
    }


def print_table(rows: list[dict], target_fpr: float) -> None:
    head = (
        f"{'world':<16} {'kind':<8} {'recall':>7} {'(lab)':>7} {'FPR':>6} {'(lab)':>6} "
        f"{'rec@0.1%':>8} {'thresh':>6}  met (recall/oracle/FPR)"
    )
    print(head + "\n" + "-" * len(head))
    for r in rows:
        ok = verdict(r, target_fpr)
        marks = "/".join("yes" if ok[k] else "NO" for k in ("recall", "oracle", "fpr"))
        print(
            f"{r['world']:<16} {r['kind']:<8} {r['recall_truth']:>7.2%} {r['recall_labels']:>7.2%}"
            f" {r['fpr_truth']:>6.2%} {r['fpr_labels']:>6.2%}"
            f" {r['oracle_recall_at_0.1pct_fpr']:>8.2%} {r['threshold']:>6.3f}  {marks}"
        )
    print(
        f"targets: recall (truth, certified point) >= {TARGET_RECALL['ordinary']:.1%} ordinary, "
        f">= {TARGET_RECALL['holiday']:.1%} holiday; oracle recall at {ORACLE_FPR:.1%} FPR >= "
        f"{TARGET_ORACLE_RECALL:.0%}; FPR against truth <= {target_fpr:.0%}"
    )
    print(
        "\nagainst issue 14's plain reference (21 counts, 400 trees, same certificate rule), "
        "truth: commuters missed / FPR / oracle recall"
    )
    head = f"{'world':<20} {'champion':>24} {'plain reference':>24}  misses ratio"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        ref = r["reference"]
        cells = [
            f"{1 - x['recall_truth']:.2%} / {x['fpr_truth']:.2%} / "
            f"{x['oracle_recall_at_0.1pct_fpr']:.1%}"
            for x in (r, ref)
        ]
        ratio = (1 - r["recall_truth"]) / max(1 - ref["recall_truth"], 1e-9)
        print(f"{r['world']:<20} {cells[0]:>24} {cells[1]:>24}  {ratio:>5.2f}x")
    print_watch(rows, target_fpr)
    print("\ncommuter archetypes recalled below 99% (truth; n, recall, share crossing):")
    for r in rows:
        low = [
            f"{name} {a['n']:.0f} {a['badge_rate']:.1%} ({a['crossed']:.0%})"
            for name, a in r["archetypes"].items()
            if a["commuter_share"] > 0.5 and a["badge_rate"] < 0.99
        ]
        print(f"  {r['world']:<16} " + ("; ".join(low) or "none"))
    print("\nnon-commuter archetypes badged above 1% (truth; n, badge rate):")
    for r in rows:
        high = [
            f"{name} {a['n']:.0f} {a['badge_rate']:.1%}"
            for name, a in r["archetypes"].items()
            if a["commuter_share"] <= 0.5 and a["badge_rate"] > 0.01
        ]
        print(f"  {r['world']:<16} " + ("; ".join(high) or "none"))


def print_watch(rows: list[dict], target_fpr: float) -> None:
    """Does `commuter monitor`, without labels, flag the worlds where the certificate fails?"""
    print(
        "\nwhat `commuter monitor` says of each world (no labels): features compared (same "
        "calendar as training), alarm, estimated FPR and recall against truth, first reason"
    )
    head = (
        f"{'world':<20} {'FPR > target':>12} {'feats':>5} {'alarm':>6} {'est FPR':>8} {'truth':>7} "
    )
    head += f"{'est rec':>8} {'truth':>7}  first reason"
    print(head + "\n" + "-" * len(head))
    failed = caught = quiet = loud = 0
    for r in rows:
        m = r["monitor"]
        over = r["fpr_truth"] > target_fpr
        failed, caught = failed + over, caught + (over and m["alarm"])
        quiet, loud = quiet + (not over), loud + (not over and m["alarm"])
        reason = m["alarm_reasons"][0] if m["alarm_reasons"] else "-"
        print(
            f"{r['world']:<20} {'yes' if over else 'no':>12}"
            f" {'yes' if m['features_compared'] else 'no':>5} {'yes' if m['alarm'] else 'no':>6}"
            f" {m['estimated_fpr']:>8.2%} {r['fpr_truth']:>7.2%} {m['estimated_recall']:>8.2%}"
            f" {r['recall_truth']:>7.2%}  {reason[:70]}"
        )
    print(
        f"certificate broken (truth FPR > {target_fpr:.0%}) in {failed} worlds, alarmed in "
        f"{caught}; held in {quiet}, alarmed in {loud} of those (a shifted population alarms "
        "whether or not the certificate survives it)"
    )


def run(
    persons: int,
    root: Path,
    train_seed: int | None = None,
    ws: WorldSet = TEST,
    config: TrainConfig | None = None,
    label_noise: float = LABEL_NOISE,
    train_kinds: float = 0.0,
) -> list[dict]:
    start = time.perf_counter()
    config = config or TrainConfig()
    train_seed = ws.train_seed if train_seed is None else train_seed
    settings = WorldSettings()
    if train_kinds > 0:  # the loop closed: the October month holds labelled persons of them
        kinds = [dataclasses.replace(k, share=k.share * train_kinds) for k in UNSEEN_KINDS]
        settings = settings.with_kinds(kinds)
    months = simulate_months(
        persons,
        [ORDINARY_TRAIN, ORDINARY_TEST],
        train_seed,
        settings=settings,
        label_noise=label_noise,
    )
    models = {
        "october": train(months[ORDINARY_TRAIN], ORDINARY_TRAIN, root / "train-october", config)
    }
    for f in ws.festivals:  # the month before each festival's, same population seed
        models[f.name] = train(
            simulate_world(persons, f.train, train_seed + 1, label_noise=label_noise),
            f.train,
            root / f"train-{f.name}",
            config,
        )
    print(f"trained {len(models)} models in {time.perf_counter() - start:.0f} s", flush=True)
    rows = []
    for w in unseen_worlds(lambda n: months[ORDINARY_TEST], ws):
        t0 = time.perf_counter()
        frame, ref, watched = scored(
            models[w.trained_on], w.make(persons), w.as_of, root / w.name, config.target_fpr
        )
        row = {"world": w.name, "kind": w.kind, "as_of": str(w.as_of), **measure(frame)}
        row["threshold"] = models[w.trained_on].model.threshold
        row["reference"] = measure(ref)
        row["monitor"] = watched
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(f"  {w.name}: {row['seconds']:.0f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=20_000, help="persons in every world")
    parser.add_argument(
        "--out",
        type=Path,
        help="result file (default benchmarks/results/quality.json; quality_dev.json with --dev)",
    )
    parser.add_argument(
        "--train-seed",
        type=int,
        help="seed of the October training world (January's: +1); the test worlds stay fixed",
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        help="score the development worlds (other seeds, the 2023 festival), the set choices "
        "are made on, instead of the test worlds whose figures are reported",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a TrainConfig field for both trainings, as for `commuter train --param`",
    )
    parser.add_argument(
        "--label-noise",
        type=float,
        default=LABEL_NOISE,
        help="share of wrong labels in each class of the training worlds",
    )
    parser.add_argument(
        "--train-kinds",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="the October training month holds UNSEEN_KINDS at FRACTION of their shares (0: "
        "none, the benchmark proper); how many labels of a new kind the next training needs",
    )
    args = parser.parse_args()
    ws = DEV if args.dev else TEST
    result = Result("quality_dev" if args.dev else "quality")
    config = TrainConfig.model_validate(dict(p.split("=", 1) for p in args.param))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="quality-bench-") as tmp:
        rows = run(
            args.persons,
            Path(tmp),
            args.train_seed,
            ws,
            config,
            args.label_noise,
            args.train_kinds,
        )
    target_fpr = TrainConfig().target_fpr
    print()
    print_table(rows, target_fpr)
    print(
        f"\n{args.persons:,} persons a world, {'DEV' if args.dev else 'TEST'} worlds, "
        f"label noise {args.label_noise:.1%}, "
        f"unseen kinds in October's training at {args.train_kinds:g} of their shares, "
        f"training seed {ws.train_seed if args.train_seed is None else args.train_seed}; "
        f"{time.perf_counter() - start:.0f} s in all"
    )
    settings = {
        "persons_per_world": args.persons,
        "worlds": "DEV" if args.dev else "TEST",
        "label_noise": args.label_noise,
        "train_kinds": args.train_kinds,
        "train_seed": ws.train_seed if args.train_seed is None else args.train_seed,
        "params": dict(p.split("=", 1) for p in args.param),
        "target_fpr": target_fpr,
        "seconds": round(time.perf_counter() - start),
    }
    result.write({"settings": settings, "worlds": rows}, args.out)


if __name__ == "__main__":
    main()
