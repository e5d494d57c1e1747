"""MLflow plumbing: tracking set-up, logging and loading a version by URI, and the champion alias.

Every process that writes to the store takes `store_lock()` to open a fresh store, create the
experiment and registered model, and to check-and-move the alias (models/runs/promotion.py): two
trainings started at once neither race MLflow's schema migration nor both become champion. On a
local store (a SQLite file, a directory) it is core/locks.py `file_lock` on `<db>.lock` next to
the SQLite file (never on the database itself); on a shared store (a tracking server, a database
URL) it is a lock held in the store itself (models/mlflow_edge/server_lock.py), so processes on
different machines are serialised too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from commuter_badge.features.workdays import LIBRARY_CALENDAR, WorkingCalendar
from commuter_badge.locks import file_lock
from commuter_badge.models.core.bundle import (
    CommuterModel,
    ModelError,
    digest_tags,
    digests_from_tags,
    file_digests,
)
from commuter_badge.models.core.provenance import code_provenance
from commuter_badge.models.mlflow_edge.example import synthetic_example
from commuter_badge.models.mlflow_edge.packaging import (
    ARTIFACT_KEY,
    ENTRY_FILE,
    PyfuncCommuterModel,
    model_code,
    runtime_requirements,
)
from commuter_badge.models.mlflow_edge.server_lock import server_lock, still_held
from commuter_badge.settings import CHAMPION_ALIAS, EXPERIMENT, MODEL_NAME

MODEL_DESCRIPTION = (
    "Regular cross-city commuters into Beijing, decided from boundary crossings in the window "
    "before as_of, at a certified false-positive rate. The `champion` alias serves /score and "
    "`commuter score`; it moves only through the promotion gates (`commuter train`, `commuter "
    "promote`) or `commuter rollback`. Each version carries its policy, certificate, validation "
    "figures, code version, gate outcomes and a model card (model_card.md in its run)."
)
_opened: set[str] = set()
# The example's window for a model that records no training date (any month the calendar covers).
EXAMPLE_AS_OF = dt.date(2021, 11, 24)


def is_shared(uri: str) -> bool:
    """A store other machines may write to: anything but a SQLite file or a local directory."""
    return "://" in uri and not uri.startswith(("sqlite:", "file:"))


def lock_path(uri: str | None = None) -> Path:
    """`<db>.lock` beside a SQLite store; for other local stores a per-URI file in the temp
    directory."""
    uri = uri or mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///").split("?")[0] + ".lock")
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"commuter-badge-{digest}.lock"


@contextlib.contextmanager
def store_lock(uri: str | None = None) -> Iterator[Callable[[], None]]:
    """An exclusive lock across processes on the store at `uri`; blocks until it is free.

    Yields a check to call right before a move made under the lock: it raises
    server_lock.LockLost when a shared store's lock was broken meanwhile (a no-op for a file
    lock, which the kernel holds until the process ends)."""
    uri = uri or mlflow.get_tracking_uri()
    if is_shared(uri):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        with server_lock(client) as token:
            yield lambda: still_held(client, token)
        return
    with file_lock(lock_path(uri)):
        yield lambda: None


def configure(tracking_uri: str | None = None) -> str:
    """Point MLflow tracking and registry at the store `tracking_uri` (the command's setting,
    MLFLOW_TRACKING_URI, resolved at the edge; None: the store MLflow points at already),
    creating its tables under the store lock if it is new."""
    uri = tracking_uri or mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # Alembic and MLflow chatter on every SQLite open would drown the CLI's own output.
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    if uri not in _opened and not is_shared(uri):
        # A shared store's server (or its operator) migrates it; a local one is opened here.
        with store_lock(uri):
            # Both stores run their migrations on first open; one process at a time.
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
        _opened.add(uri)
    return uri


def resolve_version(uri: str) -> str:
    """The registry version a `models:/` URI points at ('' for run or path URIs)."""
    client = MlflowClient()
    if m := re.fullmatch(r"models:/([^/@]+)@(.+)", uri):
        try:
            return str(client.get_model_version_by_alias(m.group(1), m.group(2)).version)
        except MlflowException:
            # Name the store: a mistyped MLFLOW_TRACKING_URI opens a new, empty one.
            raise ModelError(
                f"no model version has alias '{m.group(2)}' in registered model '{m.group(1)}' "
                f"in the MLflow store {_shown(mlflow.get_registry_uri())} (MLFLOW_TRACKING_URI); "
                "train one first (`commuter train ...`) or point MLFLOW_TRACKING_URI at the store "
                "it used"
            ) from None
    if m := re.fullmatch(r"models:/([^/@]+)/(\d+)", uri):
        return m.group(2)
    return ""


def _shown(uri: str) -> str:
    """A store URI fit for a message: any password replaced."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", uri)


def load_model(uri: str | None = None, *, version: str | None = None) -> CommuterModel:
    """Load the model at `uri` (default: the champion) with its registry version.

    `uri` is a `models:/` or run URI, or a local MLflow model directory (a Bento's bundled
    champion), for which `version` names the registry version. An alias is resolved to a version
    first and that version is read, so an alias moving meanwhile cannot mix two versions.

    Every model file is checked before it is parsed (models/core/bundle.py `verify_files`): a registry
    version against the sha256 digests tagged on it at registration (the registry is the trust
    anchor; the manifest beside the files could be edited with them), a local directory or run
    URI against its own manifest.
    """
    uri = uri or f"models:/{MODEL_NAME}@{CHAMPION_ALIAS}"
    if "://" not in uri and Path(uri).is_dir():
        local = Path(uri) / "artifacts" / ARTIFACT_KEY
        return CommuterModel.load(local, version=version or "", where=str(local))
    if version is None:
        version = resolve_version(uri)
    if version and (m := re.fullmatch(r"models:/([^/@]+)@(.+)", uri)):
        uri = f"models:/{m.group(1)}/{version}"
    expected = registered_digests(uri)
    with tempfile.TemporaryDirectory(prefix="commuter-model-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri.rstrip("/") + f"/artifacts/{ARTIFACT_KEY}", dst_path=tmp
            )
        except (MlflowException, OSError) as exc:
            raise ModelError(f"cannot load model {uri}: {str(exc).splitlines()[0]}") from None
        # fully read into memory
        return CommuterModel.load(Path(local), version=version, expected=expected, where=uri)


def registered_digests(uri: str) -> dict[str, str]:
    """The model-file digests tagged on the registry version `uri` (models:/name/N) names; empty
    for other URIs and for versions registered before versions carried them."""
    if not (m := re.fullmatch(r"models:/([^/@]+)/(\d+)", uri)):
        return {}
    try:
        tags = MlflowClient().get_model_version(m.group(1), m.group(2)).tags
    except MlflowException:
        return {}  # no such version: the download below says so
    return digests_from_tags(tags)


def champion_version() -> str | None:
    try:
        return str(MlflowClient().get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS).version)
    except MlflowException:
        return None


def experiment_id() -> str:
    with store_lock():
        exp = mlflow.set_experiment(EXPERIMENT)
    return exp.experiment_id


def log_input(dataset, context: str) -> None:
    """mlflow.log_input under the store lock: MLflow checks for the dataset and then inserts it,
    so two runs logging the same dataset at once fail on the unique key without the lock."""
    with store_lock():
        mlflow.log_input(dataset, context=context)


def dataset(frame: pd.DataFrame, source: str | Path, name: str, targets: str):
    """`frame` as an MLflow dataset read from the local file or directory `source`.

    The source is given as MLflow's local dataset source itself (a bare path or file URI matches
    two registered source types, and MLflow warns), and integer columns are logged as float64, as
    MLflow's schema inference asks for (an integer column cannot hold a missing value)."""
    from mlflow.data.dataset_source_registry import get_registered_sources

    local = [s for s in get_registered_sources() if s._get_source_type() == "local"][-1]
    ints = frame.select_dtypes(include="integer").columns
    frame = frame.astype(dict.fromkeys(ints, "float64"))
    dataset = mlflow.data.from_pandas(
        frame,
        source=local(Path(source).resolve().as_uri()),
        name=name,
        targets=targets,
        digest=pandas_digest(frame),
    )
    # The schema MLflow would infer, set on its cached property (see pandas_schema).
    dataset.__dict__["schema"] = pandas_schema(frame)
    return dataset


def _all_str(frame: pd.DataFrame, name) -> bool:
    """Is every value of column `name` a `str`: MLflow's test (`DataFrame.map(type) == str`),
    on that one column."""
    return bool((frame[[name]].map(type) == str).all().iloc[0])  # noqa: E721 - MLflow's test


def pandas_schema(frame: pd.DataFrame):
    """MLflow's inferred dataset schema (`mlflow.types.utils._infer_schema`), the same value,
    without a Python call per cell: a numeric or boolean column's type comes from its dtype and
    its `required` from one vectorised NaN test, a column of strings is `string` and required;
    any other column is inferred by MLflow itself. None where MLflow's inference fails."""
    from mlflow.types.schema import ColSpec, DataType, Schema
    from mlflow.types.utils import _infer_pandas_column, _infer_required

    def spec(name) -> ColSpec:
        column = frame[name]
        if column.dtype.kind in "biuf":
            return ColSpec(_infer_pandas_column(column), name, not bool(column.isna().any()))
        if column.dtype.kind == "O" and len(column) and _all_str(frame, name):
            return ColSpec(DataType.string, name, True)
        return ColSpec(_infer_pandas_column(column), name, _infer_required(column))

    try:
        return Schema([spec(name) for name in frame.columns])
    except Exception:  # noqa: BLE001 - MLflow's own property gives None on any failure too
        return None


def pandas_digest(frame: pd.DataFrame) -> str:
    """MLflow's dataset digest (`mlflow.data.digest_utils.compute_pandas_digest`), the same value,
    without its type test of every cell of the whole frame (a Python call per cell: about a
    minute for a million persons): a numeric or boolean column never holds a `str`, so only the
    other columns are tested, column by column."""
    from mlflow.data.digest_utils import MAX_ROWS, compute_pandas_digest, get_normalized_md5_digest

    if frame.empty:  # every column passes MLflow's test vacuously
        return compute_pandas_digest(frame)

    def all_str(name) -> bool:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
            return False
        return _all_str(frame, name)

    trimmed = frame.head(MAX_ROWS)
    strings = trimmed.columns[[all_str(c) for c in frame.columns]]
    numeric = trimmed.select_dtypes(include=[np.number]).columns
    trimmed = trimmed[strings.union(numeric)]
    return get_normalized_md5_digest(
        [pd.util.hash_pandas_object(trimmed).values, np.int64(len(frame))]
        + [str(x).encode() for x in frame.columns]
    )


def ensure_registered_model() -> None:
    """Create the registered model with its description (under the lock), or add a missing one."""
    client = MlflowClient()
    with store_lock():
        try:
            model = client.get_registered_model(MODEL_NAME)
        except MlflowException:
            client.create_registered_model(MODEL_NAME, description=MODEL_DESCRIPTION)
            return
        if not model.description:
            client.update_registered_model(MODEL_NAME, description=MODEL_DESCRIPTION)


def log_model(
    model: CommuterModel,
    example: pd.DataFrame | None = None,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> mlflow.models.model.ModelInfo:
    """Log `model` in the active run with signature and input example, registered as MODEL_NAME.

    The version is self-contained (models/mlflow_edge/packaging.py): it carries its package code, its pinned
    runtime requirements and the code it was trained with (feature names, feature SQL digest,
    package version, git commit; in `model.json` and in the MLmodel metadata). The sha256 of each
    model file is in its `manifest.json` and, from the moment the version exists, in its tags
    (`sha256.booster.txt`, `sha256.model.json`), which `load_model` checks. The input example
    (and the signature) come from invented persons (models/mlflow_edge/example.py), never from `example`'s
    real rows; `example` is accepted for older callers and unused.
    """
    from mlflow.models import infer_signature

    from commuter_badge.features.definitions import FEATURE_NAMES

    recorded = code_provenance(model.meta.window_days)
    meta = dataclasses.replace(model.meta, extra={**model.meta.extra, "code": recorded})
    stamped = CommuterModel(model.booster, meta, version=model.version)
    del example  # real persons' rows must not ship inside the model
    as_of = dt.date.fromisoformat(meta.trained_as_of) if meta.trained_as_of else EXAMPLE_AS_OF
    inputs = synthetic_example(as_of, meta.window_days, calendar)[list(FEATURE_NAMES)]
    outputs = PyfuncCommuterModel()
    outputs.model = stamped
    signature = infer_signature(inputs, outputs.predict(None, inputs))
    mlflow.set_tag("mlflow.source.git.commit", recorded["git_commit"])
    search_path = list(sys.path)  # MLflow puts the logged code first on it to check the example
    try:
        with tempfile.TemporaryDirectory() as tmp:
            digests = file_digests(stamped.save(Path(tmp) / ARTIFACT_KEY))
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(ENTRY_FILE),
                artifacts={ARTIFACT_KEY: str(Path(tmp) / ARTIFACT_KEY)},
                code_paths=[str(model_code(Path(tmp) / "code"))],
                pip_requirements=runtime_requirements(),
                metadata={"code": recorded},
                signature=signature,
                input_example=inputs,
            )
    finally:
        sys.path[:] = search_path
    # Registered here rather than by log_model's registered_model_name, which prints "Registered
    # model ... already exists" and "Created version ..." to stderr on every training (the
    # registered model is created with its description beforehand, ensure_registered_model).
    created = MlflowClient().create_model_version(
        MODEL_NAME,
        source=info.model_uri,
        run_id=info.run_id,
        model_id=info.model_id,
        tags=digest_tags(digests),  # on the version as it is created
    )
    # The link from the logged model to its version, which the UI's runs list shows ("commuter-badge
    # v1") and `register_model` would have set: the logged model is new, so it has no other.
    link = [{"name": created.name, "version": created.version}]
    MlflowClient().set_logged_model_tags(info.model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(link)})
    info.registered_model_version = created.version
    return info


def set_champion(version: str) -> None:
    MlflowClient().set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, str(version))
