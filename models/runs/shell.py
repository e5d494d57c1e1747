"""The run shell every job shares: open the store, one MLflow run with the common tags, and the
register -> figures -> reference -> judge -> card sequence a new model version goes through.

A job is a pure core call (models/core) wrapped in this shell, under the `RunContext` (settings
and calendar) its command built (features/context.py): `open_store` before any data is read, `logged_run(kind, ...)` around what it logs (tags `kind`, `as_of`, `input_digest`, the
working-day calendar; params; the datasets it read), `tag_version` for its outcome on the judged
version, and, for jobs that make a version (train, recertify), `log_validation` then
`register_and_judge`. The months a run reads are its `inputs`, one dataset each.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from commuter_badge.features.context import RunContext
from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.features.workdays import WorkingCalendar
from commuter_badge.models.core import provenance
from commuter_badge.models.core.bundle import CommuterModel, ModelMeta
from commuter_badge.models.core.data import Labelled
from commuter_badge.models.core.fitting import Fitted
from commuter_badge.models.core.months import certificate_tags
from commuter_badge.models.mlflow_edge import pseudonym, registry
from commuter_badge.models.mlflow_edge.calendar_check import warn_calendar_mismatch
from commuter_badge.models.mlflow_edge.reference_log import log_reference
from commuter_badge.models.reporting import card
from commuter_badge.models.reporting.figures import Caption
from commuter_badge.models.reporting.report import log_drivers, log_figures, log_review
from commuter_badge.models.runs import promotion
from commuter_badge.settings import MODEL_NAME
from commuter_badge.stages import stage


def open_store(context: RunContext, *, registered_model: bool = False) -> None:
    """Point MLflow at the context's store and its experiment (and the registered model, for
    jobs that register a version), before any data is read."""
    registry.configure(context.tracking_uri)
    registry.experiment_id()
    if registered_model:
        registry.ensure_registered_model()


@dataclasses.dataclass(frozen=True)
class RunInput:
    """One dataset a run read (a month's features and labels), logged as an MLflow input."""

    frame: pd.DataFrame
    source: str | Path
    name: str
    context: str
    targets: str = "is_commuter"


@contextlib.contextmanager
def logged_run(
    kind: str,
    name: str,
    *,
    calendar: WorkingCalendar,
    as_of: dt.date | str | None = None,
    digest: str | None = None,
    tags: dict[str, str] | None = None,
    params: dict | None = None,
    inputs: Sequence[RunInput] = (),
    model: ModelMeta | None = None,
) -> Iterator[Run]:
    """One MLflow run of `kind`: the common tags (kind, as_of, input_digest, the `calendar` the
    features used), `params`, one dataset per input, and a calendar check against `model`'s."""
    common: dict[str, str] = {"kind": kind}
    if as_of is not None:
        common["as_of"] = as_of if isinstance(as_of, str) else as_of.isoformat()
    if digest is not None:
        common["input_digest"] = digest
    with mlflow.start_run(run_name=name) as run:
        mlflow.set_tags({**common, **calendar.params(), **(tags or {})})
        if model is not None:
            warn_calendar_mismatch(model, calendar)  # stderr line and a calendar_mismatch tag
        if params:
            mlflow.log_params(params)
        for item in inputs:
            with stage(f"MLflow dataset ({item.context})"):
                dataset = registry.dataset(item.frame, item.source, item.name, item.targets)
                registry.log_input(dataset, context=item.context)
        yield run


def tag_version(version: str, tags: dict[str, str]) -> None:
    """A job's outcome as tags on the version it judged; a model given by run or path URI has no
    version to tag (the run holds the outcome)."""
    client = MlflowClient()
    try:
        for key, value in tags.items():
            client.set_model_version_tag(MODEL_NAME, version, key, value)
    except MlflowException:
        pass


def log_validation_persons(
    val: pd.DataFrame,
    key_file: str | Path,
    artifact: str = promotion.VALIDATION_ARTIFACT,
    extra: tuple[str, ...] = (),
) -> pd.DataFrame:
    """The persons the gates compare champion and candidate on (with the `extra` columns, such
    as an audit's design), keyed by `person_key` (a keyed hash of the id whose secret, in
    `key_file`, stays outside MLflow, models/mlflow_edge/pseudonym.py), never by the id."""
    keys = pseudonym.person_keys(val["person_id"], pseudonym.person_secret(key_file))
    persons = val[["is_commuter", "badge", "proba", *extra, *FEATURE_NAMES]].copy()
    persons.insert(0, "person_key", keys)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact).name
        persons.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), str(Path(artifact).parent))
    return persons


@dataclasses.dataclass(frozen=True)
class Validated:
    """What `log_validation` logged: the val_* metrics, the validation persons (by key) and an
    audited month's certifying persons with their design (None without an audit)."""

    metrics: dict[str, float]
    persons: pd.DataFrame
    certifying: pd.DataFrame | None = None


def log_validation(fitted: Fitted, context: RunContext) -> Validated:
    """The certificate, the val_* metrics and slices (figures wait for the version, so their
    titles can name it), the FPR against simulated truth, the validation persons and, for an
    audited newest month, its certifying persons (the gates judge the champion on them too)."""
    mlflow.log_metrics({k: float(v) for k, v in fitted.certificate.items()})
    metrics = log_review(
        "val_",
        fitted.val,
        fitted.model.threshold,
        fitted.config.target_fpr,
        figures_too=False,
        certificate=fitted.certificate,
    )
    if fitted.truth_metrics:
        mlflow.log_metrics(fitted.truth_metrics)
    key_file = context.settings.person_key_file
    persons = log_validation_persons(fitted.val, key_file)
    certifying = None
    if fitted.certifying is not None:
        certifying = log_validation_persons(
            fitted.certifying, key_file, promotion.CERTIFYING_ARTIFACT, promotion.CERTIFYING_DESIGN
        )
    return Validated(metrics, persons, certifying)


@dataclasses.dataclass(frozen=True)
class Judged:
    """A registered version and the promotion decision on it."""

    model: CommuterModel
    version: str
    tags: dict[str, str]
    move: promotion.Move


def register_and_judge(
    fitted: Fitted,
    labelled: Labelled,
    validated: Validated,
    run: Run,
    *,
    how: str,
    promote: bool,
    lineage: dict[str, str] | None = None,
    drivers: bool = False,
    decision_prefix: str = "",
) -> Judged:
    """Register `fitted`'s model as a new version of the active run, log its figures (and with
    `drivers`, importance and SHAP), the monitor's reference, the gates' decision and the card."""
    run_id = run.info.run_id
    model = CommuterModel(
        fitted.model.booster, dataclasses.replace(fitted.model.meta, run_id=run_id)
    )
    with stage("register version"):
        version, tags = register_version(model, fitted, labelled, run_id, lineage)
    with stage("figures"):
        caption = log_version_figures(
            version, fitted.as_of, model, fitted, fitted.config.target_fpr
        )
    if drivers:
        with stage("TreeSHAP summary and importance"):
            threads = fitted.config.num_threads  # the training's threads; same values
            log_drivers(model.booster, fitted.val, caption, threads=threads)
    with stage("monitor reference"):
        # What `commuter monitor` judges later months against (models/core/reference.py).
        window = labelled.calendar.window_calendar(fitted.as_of, fitted.config.window_days)
        log_reference(fitted.val, model.threshold, window)
    with stage("promotion gates"):
        move = promotion.judge(
            version, validated.persons, promote=promote, how=how, certifying=validated.certifying
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
    text = decision_prefix + move.summary()
    with stage("model card"):
        log_model_card(version, fitted, validated.metrics, labelled.digest, tags, text)
    return Judged(model, version, tags, move)


def register_version(
    model: CommuterModel,
    fitted: Fitted,
    labelled: Labelled,
    run_id: str,
    extra_tags: dict[str, str] | None = None,
) -> tuple[str, dict[str, str]]:
    """Log `model` in the active run as a new registered version, tagged (contract §4); return
    the version and its tags."""
    version = str(registry.log_model(model, calendar=labelled.calendar).registered_model_version)
    client = mlflow.MlflowClient()
    tags = {
        **_version_tags(fitted, labelled, run_id),
        **(extra_tags or {}),
        **labelled.calendar.params(),
    }
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
