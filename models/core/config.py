"""Every setting of one training, in one frozen object: the policy, the split and all of LightGBM.

A `TrainConfig` comes from the defaults here, then a TOML file (`--config FILE`), then `key=value`
overrides (`--param`), later ones winning. Nothing that changes the model lives anywhere else, so
logging `config.model_dump()` logs every value the model depends on.

The *policy* (target FPR, confidence, window) is what the public-health decision is about; the
promotion gates compare it with the champion's (models/core/gates.py). The rest is engineering.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from commuter_badge.errors import CommuterError
from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.models.core.split import PARTS
from commuter_badge.settings import DEFAULT_WINDOW_DAYS, MAX_WINDOW_DAYS, MIN_WINDOW_DAYS

# Attendance counts and coverages: the score may only rise with them, other features equal.
MONOTONE_INCREASING: tuple[str, ...] = (
    "workdays_active",
    "active_days",
    "workday_coverage",
    "morning_entry_workdays",
    "evening_exit_workdays",
    "active_weeks",
    "span_workday_coverage",
    "active_week_workday_coverage",
    "workday_round_trip_share",
    "workday_entry_share",
)


class ConfigError(CommuterError, ValueError):
    """A training setting is unknown or out of range."""


@dataclass(frozen=True)
class Policy:
    """What a version promises: FPR at most `target_fpr` at `confidence`, over a `window_days` window."""

    target_fpr: float
    confidence: float
    window_days: int
    # > 0: certified against the truth, assuming labels this often wrong (models/core/threshold.py)
    label_noise: float = 0.0

    def describe(self) -> str:
        noise = f", label noise {self.label_noise:g} assumed" if self.label_noise else ""
        return (
            f"target FPR {self.target_fpr:g} at {self.confidence:g} confidence, "
            f"{self.window_days}-day window{noise}"
        )


class TrainConfig(BaseModel):
    """All settings of a training run; frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Policy: compared with the champion's before promotion.
    target_fpr: float = Field(0.01, gt=0, lt=1)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    window_days: int = Field(DEFAULT_WINDOW_DAYS, ge=MIN_WINDOW_DAYS, le=MAX_WINDOW_DAYS)
    # The assumed rate of wrong labels in each class (e.g. from an audit of the labels); 0
    # certifies against the labels themselves (models/core/threshold.py).
    label_noise: float = Field(0.0, ge=0, lt=0.5)
    # Person split (models/core/split.py): shares of fit, early stopping, calibration, validation.
    seed: int = 0
    share_fit: float = Field(PARTS["fit"], gt=0, lt=1)
    share_early_stop: float = Field(PARTS["early_stop"], ge=0, lt=1)
    share_calibration: float = Field(PARTS["calibration"], gt=0, lt=1)
    share_validation: float = Field(PARTS["validation"], gt=0, lt=1)
    # LightGBM (every parameter passed to lgb.train is here).
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    max_depth: int = -1
    # Larger leaves and an L2 penalty (chosen on the development worlds): fewer narrow regions
    # where one clock time alone decides, which is what broke on worlds with other visitors.
    min_data_in_leaf: int = Field(200, ge=1)
    min_sum_hessian_in_leaf: float = Field(1e-3, ge=0)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    bagging_fraction: float = Field(0.9, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l1: float = Field(0.0, ge=0)
    lambda_l2: float = Field(10.0, ge=0)
    min_gain_to_split: float = Field(0.0, ge=0)
    max_bin: int = Field(255, ge=2)
    max_rounds: int = Field(2000, ge=1)
    early_stopping_rounds: int = Field(100, ge=1)
    # 0: boosting rounds chosen on the early_stop part; k >= 2: by k-fold cross-validation on the
    # fit part, then refit on all of it (the early_stop share may then be 0 and go elsewhere).
    early_stopping_folds: int = Field(0, ge=0)
    num_threads: int = Field(2, ge=1)
    # > 0: weekday copies of the fit persons (features/copies.py) join the fit part with this
    # weight each, against 1 for a person; the certificate's and validation's persons are never
    # copied. Off by default: 0.3 gained on the development worlds and lost on the test worlds
    # (docs/guide/training.md, weekday copies).
    copy_weight: float = Field(0.0, ge=0, le=1)
    # Features the score may only rise with, other features equal (LightGBM monotone
    # constraints): more evidence of regular attendance never counts against a person.
    monotone_increasing: tuple[str, ...] = MONOTONE_INCREASING

    @field_validator("monotone_increasing", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        if isinstance(value, str):  # `--param monotone_increasing=a,b`
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        unknown = sorted(set(value) - set(FEATURE_NAMES)) if value else []  # type: ignore[arg-type]
        if unknown:
            raise ValueError(f"not model features: {', '.join(unknown)}")
        return value

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> TrainConfig:
        total = sum(self.parts().values())
        if abs(total - 1) > 1e-9:
            raise ValueError(f"share_* must sum to 1 (they sum to {total:g})")
        if self.early_stopping_folds == 1:
            raise ValueError("early_stopping_folds must be 0 (use the early_stop part) or >= 2")
        if self.early_stopping_folds == 0 and self.share_early_stop == 0:
            raise ValueError(
                "share_early_stop is 0: boosting rounds need an early_stop part, or "
                "early_stopping_folds >= 2 to choose them by cross-validation on the fit part"
            )
        return self

    def parts(self) -> dict[str, float]:
        """Shares in the order models/core/split.py assigns them."""
        return {
            "fit": self.share_fit,
            "early_stop": self.share_early_stop,
            "calibration": self.share_calibration,
            "validation": self.share_validation,
        }

    def policy(self) -> Policy:
        return Policy(self.target_fpr, self.confidence, self.window_days, self.label_noise)

    def lgb_params(self) -> dict:
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "min_data_in_leaf": self.min_data_in_leaf,
            "min_sum_hessian_in_leaf": self.min_sum_hessian_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l1": self.lambda_l1,
            "lambda_l2": self.lambda_l2,
            "min_gain_to_split": self.min_gain_to_split,
            "max_bin": self.max_bin,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
            **(
                {
                    "monotone_constraints": [
                        int(f in self.monotone_increasing) for f in FEATURE_NAMES
                    ]
                }
                if self.monotone_increasing
                else {}
            ),
        }


def _flatten(table: dict, source: str) -> dict:
    """Top-level keys, or keys inside one level of tables ([policy], [lightgbm], ...)."""
    flat: dict = {}
    for key, value in table.items():
        items = value.items() if isinstance(value, dict) else [(key, value)]
        for k, v in items:
            if k in flat:
                raise ConfigError(f"{source}: {k} is set twice")
            flat[k] = v
    return flat


def parse_params(params: list[str]) -> dict[str, str]:
    """`key=value` strings as a dict; pydantic converts the values to each field's type."""
    out: dict[str, str] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {item!r} is not KEY=VALUE (e.g. --param num_leaves=63)")
        out[key.strip()] = value.strip()
    return out


def load_config(
    path: str | Path | None = None, params: list[str] | dict | None = None, **named: object
) -> TrainConfig:
    """Defaults, then the TOML file at `path`, then `params`, then `named` (None values ignored)."""
    values: dict = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        try:
            values.update(_flatten(tomllib.loads(p.read_text()), source))
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read the config file ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    if params:
        values.update(params if isinstance(params, dict) else parse_params(params))
        source = f"{source} + --param" if path else "--param"
    values.update({k: v for k, v in named.items() if v is not None})
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "config"
        known = ", ".join(TrainConfig.model_fields)
        hint = f"; known settings: {known}" if first["type"] == "extra_forbidden" else ""
        raise ConfigError(f"{source}: {where}: {first['msg']}{hint}") from None


def to_toml(config: TrainConfig) -> str:
    """The config as a TOML file that `load_config` reads back to the same object."""
    lines = []
    for key, value in config.model_dump().items():
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, tuple | list):
            text = json.dumps(list(value))  # a TOML array of strings
        else:
            text = repr(value)
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"
