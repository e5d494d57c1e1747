"""Platt calibration of the booster's raw margin: p = 1 / (1 + exp(-(a * margin + b))).

Two numbers, strictly monotone, so a probability threshold is a margin threshold, and the same
formula runs in batch, in the service and on Spark without a pickled estimator.
"""

from __future__ import annotations

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression


class PlattCalibrator:
    """Maps raw scores to probabilities; fit on data the booster was not fit on."""

    def __init__(self, *, regularization: float = 1e6) -> None:
        self.regularization = regularization

    def fit(self, margin: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        margin = np.asarray(margin, dtype="float64").reshape(-1, 1)
        y = np.asarray(y).astype(int)
        if len(np.unique(y)) < 2:
            raise ValueError("calibration needs both classes in its labels")
        lr = LogisticRegression(C=self.regularization).fit(margin, y)
        self.a_ = float(lr.coef_[0, 0])
        self.b_ = float(lr.intercept_[0])
        if self.a_ <= 0:
            raise ValueError(
                f"calibration slope {self.a_:.3g} is not positive: the model ranks backwards"
            )
        return self

    @classmethod
    def from_params(cls, a: float, b: float) -> PlattCalibrator:
        cal = cls()
        cal.a_, cal.b_ = float(a), float(b)
        return cal

    def predict(self, margin: np.ndarray) -> np.ndarray:
        if not hasattr(self, "a_"):
            raise NotFittedError("PlattCalibrator is not fitted; call fit(margin, y) first")
        z = self.a_ * np.asarray(margin, dtype="float64") + self.b_
        return 1.0 / (1.0 + np.exp(-z))
