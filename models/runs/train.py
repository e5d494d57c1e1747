"""Training's logging shell: build the labelled data, run the pure core, log, register, promote.

The work itself is pure and lives in models/core/fitting.py (`fit_and_evaluate(data, config)`:
model, metrics, gate outcomes and baseline, no MLflow). This module only records it:
  1. one MLflow run of kind `model`: every config value as params (and config.toml), the data
     digest, metrics, slices, figures, the validation persons the gates compare on, the card;
  2. with `--tune N`, N nested runs of kind `trial` before the fit (models/core/tuning.py);
  3. a registered version with a description and tags (models/reporting/card.py, contract §4);
  4. the promotion decision, serialised with any other training (models/runs/promotion.py);
  5. a separate run of kind `baseline` for the rule the model must beat.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd

from commuter_badge.features.build import memory_cap
from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.features.workdays import calendar_params, window_calendar
from commuter_badge.models.core import provenance, tuning
from commuter_badge.models.core.bundle import CommuterModel
from commuter_badge.models.core.config import TrainConfig, to_toml
from commuter_badge.models.core.data import Labelled
from commuter_badge.models.core.fitting import (  # noqa: F401  (the names callers import from here)
    BASELINE_FEATURE,
    COPY_PART,
    Fitted,
    baseline_score,
    baseline_threshold,
    fit_and_evaluate,
    fit_booster,
    fit_model,
    noise_floor_warning,
    split,
)
from commuter_badge.models.core.gates import Outcome, validation_above_target
from commuter_badge.models.core.months import (
    Month,
    certificate_tags,
    check_months,
    labelled_months,
    months_params,
    single_month,
    uncertified_warning,
)
from commuter_badge.models.mlflow_edge import pseudonym, registry
from commuter_badge.models.mlflow_edge.reference_log import log_reference
from commuter_badge.models.reporting import card
from commuter_badge.models.reporting.figures import Caption
from commuter_badge.models.reporting.report import log_drivers, log_figures, log_review
from commuter_badge.models.runs import promotion
from commuter_badge.settings import MODEL_NAME

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_id: str
    baseline_run_id: str
    version: str
    threshold: float
    certified_fpr_upper: float
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    promoted: bool
    gates: dict[str, Outcome] = field(default_factory=dict)
    decision: str = ""  # promoted, or why not, in words
    labels_without_trips: int = 0
    labels_without_trips_share: float = 0.0
    warnings: tuple[str, ...] = ()
    tuned: dict = field(default_factory=dict)
    labels_from_reviews: int = 0
    labels_by_file: tuple[tuple[str, int], ...] = ()
    certificate: str = ""  # in words: the bound, which month and how many persons certify it


def _log_trial(number: int, params: dict, value: float, seconds: float, rounds: int) -> None:
    with mlflow.start_run(run_name=f"trial {number}", nested=True):
        mlflow.set_tag("kind", "trial")
        mlflow.log_params(params)
        mlflow.log_metrics(
            {"early_stop_recall_at_target": value, "trial_seconds": seconds, "rounds": rounds}
        )


def register_version(
    model: CommuterModel,
    fitted: Fitted,
    labelled: Labelled,
    run_id: str,
    extra_tags: dict[str, str] | None = None,
) -> tuple[str, dict[str, str]]:
    """Log `model` in the active run as a new registered version, tagged (contract §4); return
    the version and its tags."""
    version = str(registry.log_model(model).registered_model_version)
    client = mlflow.MlflowClient()
    tags = {**_version_tags(fitted, labelled, run_id), **(extra_tags or {}), **calendar_params()}
    for key, value in tags.items():
        client.set_model_version_tag(MODEL_NAME, version, key, value)
    return version, tags


def log_version_figures(
    version: str, as_of: dt.date, model: CommuterModel, fitted: Fitted, target_fpr: float
) -> Caption:
    """The validation figures, titled with the version they describe; returns their caption."""
    val = fitted.val
    caption = Caption(f"v{version}", as_of.isoformat(), len(val), "validation persons")
    log_figures(
        "val_",
        val,
        model.threshold,
        target_fpr,
        caption=caption,
        raw_proba=fitted.raw_proba,
        certificate=fitted.certificate,
    )
    return caption


def log_model_card(
    version: str, fitted: Fitted, metrics: dict, digest: str, tags: dict, decision: str
) -> None:
    """`model_card.md` in the active run, for a trained or a recertified version."""
    gains = fitted.model.booster.feature_importance("gain")
    mlflow.log_text(
        card.model_card(
            version=version,
            as_of=fitted.as_of,
            config=fitted.config.model_dump(),
            metrics=metrics,
            certificate=fitted.certificate,
            slices=fitted.slices,
            val=fitted.val,
            importance=dict(zip(FEATURE_NAMES, map(float, gains), strict=True)),
            digest=digest,
            code=tags,
            decision=decision,
        ),
        "model_card.md",
    )


def _version_tags(fitted: Fitted, labelled: Labelled, run_id: str) -> dict[str, str]:
    """Contract §4: as_of, policy, certificate, validation recall and FPR, data and code version."""
    m, c = fitted.metrics, fitted.certificate
    return {
        "as_of": fitted.as_of.isoformat(),
        "target_fpr": repr(fitted.config.target_fpr),
        "confidence": repr(fitted.config.confidence),
        "window_days": str(fitted.config.window_days),
        "label_noise": repr(fitted.config.label_noise),
        "cal_fpr_upper95": repr(float(c["cal_fpr_upper95"])),
        **certificate_tags(c, fitted.as_of, fitted.config.confidence),
        "val_recall": f"{m['val_recall']:.6g}",
        "val_fpr": f"{m['val_fpr']:.6g}",
        "val_fpr_upper95": f"{m['val_fpr_upper95']:.6g}",
        "data_digest": labelled.digest,
        "git_commit": provenance.git_commit() or "unknown",
        "package_version": provenance.code_provenance(fitted.config.window_days)["package_version"],
        "run_id": run_id,
        "seed": str(fitted.config.seed),
    }


def _log_validation_persons(
    val: pd.DataFrame, artifact: str = promotion.VALIDATION_ARTIFACT, extra: tuple = ()
) -> pd.DataFrame:
    """The persons the gates compare champion and candidate on, keyed by `person_key` (a keyed
    hash of the id whose secret stays outside MLflow, models/mlflow_edge/pseudonym.py), never by the id."""
    keys = pseudonym.person_keys(val["person_id"], pseudonym.person_secret())
    persons = val[["is_commuter", "badge", "proba", *extra, *FEATURE_NAMES]].copy()
    persons.insert(0, "person_key", keys)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact).name
        persons.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), str(Path(artifact).parent))
    return persons


def log_certifying_persons(fitted: Fitted) -> pd.DataFrame | None:
    """An audited month's certifying persons and their design, for the gates (champion breach)."""
    if fitted.certifying is None:
        return None
    return _log_validation_persons(
        fitted.certifying, promotion.CERTIFYING_ARTIFACT, promotion.CERTIFYING_DESIGN
    )


def train(
    trips: str | Path,
    labels: str | Path | list,
    as_of: dt.date,
    config: TrainConfig | None = None,
    progress: Callable[[str], None] = lambda _: None,
    *,
    promote: bool = True,
    tune: int = 0,
    config_source: str = "",
) -> TrainResult:
    """Train, log, register and (through the gates, unless promote=False) promote."""
    return train_months(
        [single_month(trips, labels, as_of)],
        config,
        progress,
        promote=promote,
        tune=tune,
        config_source=config_source,
    )


def train_months(
    months: list[Month],
    config: TrainConfig | None = None,
    progress: Callable[[str], None] = lambda _: None,
    *,
    promote: bool = True,
    tune: int = 0,
    config_source: str = "",
) -> TrainResult:
    """`train` on several labelled months (models/core/months.py), the newest certifying."""
    config = config or TrainConfig()
    months = check_months(months, "train")  # before MLflow, LightGBM or any feature
    registry.configure()
    registry.experiment_id()
    registry.ensure_registered_model()
    copies = config.copy_weight > 0
    progress("checking coverage and building features" + (" and weekday copies" if copies else ""))
    labelled = labelled_months(months, config.window_days, copies)
    trips = months[-1].trips if len(months) == 1 else "; ".join(str(m.trips) for m in months)
    labels = [p for m in months for p in m.labels]
    return _train_logged(trips, labels, labelled, config, progress, promote, tune, config_source)


def _train_logged(trips, labels, labelled, config, progress, promote, tune, config_source):
    as_of = labelled.as_of
    frame = split(labelled, config)
    sizes = frame["part"].value_counts().to_dict()
    label_paths = labels if isinstance(labels, (list, tuple)) else [labels]
    with mlflow.start_run(run_name=f"lightgbm as_of={as_of}") as run:
        # The working-day calendar the features used: calendar_library_version, _file_digest,
        # _years, as params and tags of the run (and tags of the version, below).
        mlflow.log_params(calendar_params())
        mlflow.set_tags(calendar_params())
        mlflow.set_tags(
            {"kind": "model", "as_of": as_of.isoformat(), "input_digest": labelled.digest}
        )
        mlflow.log_params(
            {
                "as_of": as_of.isoformat(),
                "trips": str(trips),
                "labels": ",".join(map(str, label_paths)),
                "config_source": config_source or "defaults",
                "n_features": len(FEATURE_NAMES),
                "input_digest_sha256": labelled.digest,
                **{f"n_{k}": int(v) for k, v in sizes.items()},
                "labels_without_trips": labelled.labels_without_trips,
                "labels_without_trips_share": round(labelled.labels_without_trips_share, 6),
                "persons_without_label": labelled.persons_without_label,
                "labels_from_reviews": labelled.labels_from_reviews,  # reviews exported as labels
                "labels_by_file": ", ".join(
                    f"{Path(f).name}={n}" for f, n in labelled.labels_by_file
                )[:500],
                "tune_trials": tune,
                "duckdb_memory_cap": memory_cap(),  # features were built under this cap
                **months_params(labelled.months),
            }
        )
        mlflow.log_dict(list(labelled.months), "months.json")
        registry.log_input(
            registry.dataset(
                frame.loc[
                    frame["part"] != COPY_PART, ["person_id", *FEATURE_NAMES, "is_commuter"]
                ].astype({"person_id": "object", **dict.fromkeys(FEATURE_NAMES, "float64")}),
                source=labelled.months[-1]["trips"] if labelled.months else trips,
                name=f"trips-features-{as_of}",
                targets="is_commuter",
            ),
            context="training",
        )
        tuned: dict = {}
        if tune:
            progress(f"tuning ({tune} trials on fit + early-stopping persons)")
            tuned, best = tuning.tune(frame, config, tune, fit_booster, on_trial=_log_trial)
            config = config.model_copy(update=tuned)
            mlflow.log_metric("tune_best_early_stop_recall", best)
            mlflow.log_dict(tuned, "tuned_params.json")
        mlflow.log_params(config.model_dump())  # every value the model depends on
        mlflow.log_text(to_toml(config), "config.toml")

        progress("fitting LightGBM")
        fitted = fit_and_evaluate(labelled, config, frame)
        model, info, val = fitted.model, fitted.certificate, fitted.val
        mlflow.log_metrics({k: float(v) for k, v in info.items()})
        progress("evaluating on validation")
        # Figures wait for the registered version, so their titles can name it.
        metrics = log_review(
            "val_", val, model.threshold, config.target_fpr, figures_too=False, certificate=info
        )
        if fitted.truth_metrics:
            mlflow.log_metrics(fitted.truth_metrics)
        gains = model.booster.feature_importance("gain")
        importance = dict(zip(FEATURE_NAMES, map(float, gains), strict=True))
        mlflow.log_dict(importance, "feature_importance.json")
        persons = _log_validation_persons(val)
        certifying = log_certifying_persons(fitted)

        progress("registering")
        model = CommuterModel(
            model.booster, dataclasses.replace(model.meta, run_id=run.info.run_id)
        )
        version, tags = register_version(model, fitted, labelled, run.info.run_id)
        caption = log_version_figures(version, as_of, model, fitted, config.target_fpr)
        log_drivers(model.booster, val, caption)
        # What `commuter monitor` judges later months against (models/core/reference.py).
        log_reference(val, model.threshold, window_calendar(as_of, config.window_days))

        progress("promotion gates")
        move = promotion.judge(
            version, persons, promote=promote, how="train", certifying=certifying
        )
        decision = move.decision
        mlflow.set_tags({f"gate.{k}": str(v) for k, v in decision.gates.items()})
        mlflow.set_tags(
            {
                "promoted": str(move.moved),
                "gates_passed": str(decision.passed),
                "promotion_decision": move.summary()[: promotion.MAX_TAG],
                "registered_version": version,
                "previous_champion": move.previous or "none",
            }
        )
        mlflow.log_metrics({k: float(v) for k, v in decision.figures.items()})
        log_model_card(version, fitted, metrics, labelled.digest, tags, move.summary())

    progress("rule baseline")
    baseline_run = _log_baseline(fitted, labelled.digest)
    baseline_metrics = fitted.baseline.metrics
    with mlflow.start_run(run_id=run.info.run_id):
        mlflow.log_metrics(
            {
                f"baseline_{k}": v
                for k, v in baseline_metrics.items()
                if k in ("val_recall", "val_fpr", "val_fpr_upper95")
            }
        )
    return TrainResult(
        run_id=run.info.run_id,
        baseline_run_id=baseline_run,
        version=version,
        threshold=model.threshold,
        certified_fpr_upper=info["cal_fpr_upper95"],
        metrics=metrics,
        baseline_metrics=baseline_metrics,
        promoted=move.moved,
        gates=dict(decision.gates),
        decision=move.summary(),
        labels_without_trips=labelled.labels_without_trips,
        labels_without_trips_share=labelled.labels_without_trips_share,
        warnings=tuple(
            w
            for w in (
                *labelled.warnings,
                uncertified_warning(info, as_of, config, version),
                noise_floor_warning(fitted.data, config, info),
                validation_above_target(
                    metrics, config.target_fpr, config.label_noise, info["cal_fpr_upper95"]
                ),
            )
            if w
        ),
        tuned=tuned,
        labels_from_reviews=labelled.labels_from_reviews,
        labels_by_file=labelled.labels_by_file,
        certificate=tags["certificate"],
    )


def _log_baseline(fitted: Fitted, digest: str) -> str:
    b, config = fitted.baseline, fitted.config
    with mlflow.start_run(run_name=f"rule baseline as_of={fitted.as_of}") as run:
        mlflow.set_tags(
            {
                "kind": "baseline",
                "as_of": fitted.as_of.isoformat(),
                "input_digest": digest,
                "rule": f"{BASELINE_FEATURE} >= {b.k}",
            }
        )
        mlflow.log_params(
            {
                "rule": "entered in the morning on at least K working days",
                "K": b.k,
                "target_fpr": config.target_fpr,
                "seed": config.seed,
            }
        )
        mlflow.log_metric("cal_fpr_upper95", b.certificate["cal_fpr_upper95"])
        log_review("val_", b.val, b.threshold, config.target_fpr, certificate=b.certificate)
    return run.info.run_id
