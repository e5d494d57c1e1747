"""The TreeSHAP summary runs on the training's threads (models/reporting/report.py
`contributions`): every person's contributions are the same numbers whatever the thread count,
so the logged `val_shap_mean_abs.json` and its figure do not depend on it (issue 28, item 6)."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.models.reporting.report import contributions


def test_contributions_are_the_same_on_one_and_two_threads():
    rng = np.random.default_rng(3)
    n = 3_000
    x = pd.DataFrame(rng.random((n, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
    x.iloc[::7, 2] = np.nan  # missing values take the default branch
    y = (x.iloc[:, 0] + 0.3 * x.iloc[:, 1] + rng.normal(0, 0.2, n) > 0.7).astype(int)
    params = {"objective": "binary", "num_leaves": 15, "verbosity": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(x.to_numpy(), y), num_boost_round=40)
    one, x1 = contributions(booster, x, limit=2_000, threads=1)
    two, x2 = contributions(booster, x, limit=2_000, threads=2)
    assert np.array_equal(x1, x2, equal_nan=True)
    assert np.array_equal(one, two)  # bit for bit, not merely close
    assert one.shape == (2_000, len(FEATURE_NAMES))
