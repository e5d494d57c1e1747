"""The monitor bench's worlds, cached: per seed and month pair, a model trained on the first month
(the pure core, as `commuter train` fits it), its validation persons, and the next month's features
and scores, unchanged and moved, with the simulation's truth beside them (no person id kept).

Caching separates the slow part (simulate, build features, train) from the judging, so the
thresholds can be chosen on DEV seeds and checked on TEST seeds without training again.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from commuter_badge.features.build import build_features
from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.features.workdays import LIBRARY_CALENDAR
from commuter_badge.models.core.config import TrainConfig
from commuter_badge.models.core.data import labelled_features
from commuter_badge.models.core.fitting import fit_and_evaluate
from commuter_badge.simulate import UNSEEN_KINDS, DriftSettings, simulate_months, write_months

# Month pairs (training as_of, next as_of). The first two windows hold no public holiday; the
# October window holds National Day (17 working days, 5 weekdays off, 2 make-up Saturdays), the
# February one the 2022 Spring Festival and its make-up weekend.
PAIRS = {
    "nov_dec": (dt.date(2021, 11, 20), dt.date(2021, 12, 20)),
    "oct_nov": (dt.date(2021, 10, 20), dt.date(2021, 11, 20)),
    "jan_feb": (dt.date(2022, 1, 18), dt.date(2022, 2, 18)),
}
ESCORT = next(k for k in UNSEEN_KINDS if k.name == "treatment_escort")
# The next month: unchanged (the default sequence, ~8% of persons change truth), or moved.
CASES = {
    "unchanged": None,
    # towards daily hospital visitors, carers and drivers, with one kind the model never saw
    "carers_drivers": DriftSettings(
        mix={"hospital_carer": 2.5, "ride_hail": 2.0, "shuttle_driver": 2.0}, new_kinds=(ESCORT,)
    ),
    "mix": DriftSettings(mix={"stopped_commuting": 2.5, "ride_hail": 2.0, "hospital_carer": 2.0}),
    "new_kinds": DriftSettings(new_kinds=UNSEEN_KINDS),
}
KEEP = [*FEATURE_NAMES, "proba", "is_commuter", "true_commuter"]


def collect(seed: int, pair: str, persons: int, cache: Path) -> Path:
    """Simulate, train and score one seed's pair into `cache/<pair>-s<seed>/` (skipped if there)."""
    out = cache / f"{pair}-s{seed}"
    if (out / "meta.json").exists():
        return out
    first, after = PAIRS[pair]
    tmp = Path(tempfile.mkdtemp(prefix="monitor-bench-"))
    try:
        part = out.with_suffix(".partial")
        part.mkdir(parents=True, exist_ok=True)
        config = TrainConfig(seed=seed)
        model = None
        for case, drift in CASES.items():
            worlds = simulate_months(persons, [first, after], seed, drift=drift)
            files = write_months(worlds, tmp / case)
            if model is None:  # month one is the same world whatever the drift
                month = files[first]
                fitted = fit_and_evaluate(
                    labelled_features(month["trips"], month["labels"], first), config
                )
                model = fitted.model
                fitted.val[KEEP].to_parquet(part / "val.parquet", index=False)
            month = files[after]
            features = build_features(month["trips"], after, config.window_days)
            frame = features[["person_id", *FEATURE_NAMES]].assign(
                proba=model.predict_proba(features)
            )
            truth = pd.read_parquet(month["persons"])[["person_id", "true_commuter"]]
            labels = pd.read_csv(month["labels"], dtype={"person_id": str})
            frame = frame.merge(truth, on="person_id").merge(labels, on="person_id")
            frame[KEEP].to_parquet(part / f"{case}.parquet", index=False)
        meta = {
            "seed": seed,
            "pair": pair,
            "persons": persons,
            "first": first.isoformat(),
            "next": after.isoformat(),
            "threshold": model.threshold,
            "target_fpr": config.target_fpr,
            "window_days": config.window_days,
            "calendar_first": LIBRARY_CALENDAR.window_calendar(first, config.window_days),
            "calendar_next": LIBRARY_CALENDAR.window_calendar(after, config.window_days),
        }
        (part / "meta.json").write_text(json.dumps(meta, indent=1))
        part.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
