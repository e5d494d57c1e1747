"""Moving the `champion` alias: judge a version by the gates, promote it, or roll back.

The rules are pure (models/core/gates.py); this module gathers their inputs from the registry and
records their outcome. Reading the champion, scoring it on the candidate's validation persons,
deciding and moving the alias all happen under one store lock (registry.store_lock), so two
trainings finishing at once are judged one after the other: the second against the first if the
first won, and every tag says what was really compared. Against a shared tracking server the lock
is held in the server itself (models/mlflow_edge/server_lock.py), so this holds for processes on
different machines too; the lock is checked to be still ours right before anything is written.

What each move leaves behind, on the versions themselves (so the Models page tells the story):
- judged version: `gate.<rule>` (True/False/skipped), `gates_passed`, `promotion_decision`,
  `judged_against`, comparison figures, `policy_change_reason` when one was stated, a description;
- new champion: `champion_since`, `previous_champion`, `promoted_by`;
- old champion: `replaced_by`, `replaced_at`;
- rollback: `rolled_back_to`/`rolled_back_at` on the version left, `rollback_from`/
  `rolled_back_to_at` on the version restored;
- registered model: `champion_history`, e.g. `1:promote,3:promote,1:rollback`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from commuter_badge.errors import CommuterError
from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.models.core.bundle import ModelError
from commuter_badge.models.core.config import Policy
from commuter_badge.models.core.gates import GATES, Candidate, Champion, Decision, decide
from commuter_badge.models.core.stratified import fpr_lower
from commuter_badge.models.mlflow_edge import registry
from commuter_badge.models.reporting import card
from commuter_badge.settings import CHAMPION_ALIAS, MODEL_NAME

VALIDATION_ARTIFACT = "validation/persons.parquet"
# An audited month's persons that certified the threshold, with their design (models/core/months.py)
CERTIFYING_ARTIFACT = "validation/certifying.parquet"
CERTIFYING_DESIGN = ("stratum", "stratum_size", "stratum_audited", "stratum_negatives")
HISTORY_TAG = "champion_history"
MAX_TAG = 4900  # MLflow keeps tag values up to 5000 characters


class PromotionError(CommuterError, ValueError):
    """A promote or rollback that cannot be done as asked."""


@dataclass(frozen=True)
class Move:
    """What `judge` did: the decision, and the alias before and after."""

    decision: Decision
    version: str
    previous: str | None
    moved: bool
    requested: bool  # False for --no-promote

    def summary(self) -> str:
        if self.moved:
            return f"promoted to champion (was {self.previous and 'v' + self.previous or 'none'})"
        if not self.requested:
            gates = "gates pass" if self.decision.passed else "gates fail"
            return f"registered only (--no-promote; {gates}: {self.decision.summary()})"
        return f"NOT promoted: {self.decision.summary()}"


def canonical_version(text: str) -> str:
    """A model version as the registry writes it: `01`, `v1` and ` 1 ` are all `1` (MLflow
    accepts `01` too, so an unnormalised one would be echoed and tagged as given); anything but a
    number is refused in one line."""
    m = re.fullmatch(r"[vV]?0*(\d+)", text.strip())
    if m is None:
        raise PromotionError(
            f"{text!r} is not a model version; pass its number as `commuter train` printed it "
            "(e.g. 3 or v3)"
        )
    return m.group(1)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _client() -> MlflowClient:
    return MlflowClient()


def version_policy(tags: dict) -> Policy | None:
    try:
        return Policy(
            float(tags["target_fpr"]),
            float(tags["confidence"]),
            int(tags["window_days"]),
            float(tags.get("label_noise", 0.0)),  # versions from before the option: 0
        )
    except (KeyError, ValueError):
        return None


def version_label_noise(version: str) -> float:
    """The label-noise rate `version` was certified under (0: no version, or none recorded)."""
    if not version:
        return 0.0
    try:
        policy = version_policy(_tags(version))
    except PromotionError:
        return 0.0
    return policy.label_noise if policy else 0.0


def version_as_of(tags: dict) -> dt.date | None:
    try:
        return dt.date.fromisoformat(tags["as_of"])
    except (KeyError, ValueError):
        return None


def _tags(version: str) -> dict:
    try:
        return dict(_client().get_model_version(MODEL_NAME, version).tags)
    except MlflowException:
        raise PromotionError(
            f"model version {version} does not exist in registered model '{MODEL_NAME}'; "
            "`commuter train` registers versions"
        ) from None


def candidate_from_frame(version: str, tags: dict, val: pd.DataFrame) -> Candidate:
    policy = version_policy(tags)
    as_of = version_as_of(tags)
    if policy is None or as_of is None or "cal_fpr_upper95" not in tags:
        raise PromotionError(
            f"model version {version} carries no policy, as_of or certificate tags (registered "
            "before versions carried them); retrain it to make it promotable"
        )
    return Candidate(
        version=version,
        policy=policy,
        as_of=as_of,
        cal_fpr_upper95=float(tags["cal_fpr_upper95"]),
        is_commuter=val["is_commuter"].to_numpy().astype(int),
        badge=val["badge"].to_numpy().astype(bool),
    )


def validation_persons(run_id: str, version: str) -> pd.DataFrame:
    """The candidate's validation persons (person key, label, its badge, features) logged with its
    run; runs from before person keys carry the person id instead."""
    with tempfile.TemporaryDirectory(prefix="commuter-val-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=VALIDATION_ARTIFACT, dst_path=tmp
            )
        except (MlflowException, OSError):
            raise PromotionError(
                f"model version {version} has no {VALIDATION_ARTIFACT} in run {run_id}; retrain "
                "it to make it promotable"
            ) from None
        return pd.read_parquet(Path(local))


def champion_evidence(version: str, val: pd.DataFrame) -> Champion:
    """The champion's policy and data date from its tags, and its badges on `val`.

    A champion registered before versions carried these tags is read from its run's params (the
    older training logged target_fpr, confidence, window_days and as_of there)."""
    tags = _tags(version)
    if version_policy(tags) is None or version_as_of(tags) is None:
        run_id = _client().get_model_version(MODEL_NAME, version).run_id
        try:
            params = _client().get_run(run_id).data.params if run_id else {}
        except MlflowException:
            params = {}
        tags = {**params, **tags}
    try:
        model = registry.load_model(f"models:/{MODEL_NAME}/{version}")
        proba = model.predict_proba(val[list(FEATURE_NAMES)])
        badge, why = model.decide(proba), ""
    except ModelError as exc:
        badge, why = None, str(exc)
    return Champion(version, version_policy(tags), version_as_of(tags), badge, why)


def _history(client: MlflowClient) -> list[str]:
    tags = client.get_registered_model(MODEL_NAME).tags
    text = tags.get(HISTORY_TAG, "")
    return [x for x in text.split(",") if x]


def _move_alias(client: MlflowClient, version: str, previous: str | None, how: str) -> None:
    """Point the alias at `version` and record the move on both versions and the model."""
    now = _now()
    client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, version)
    history = [*_history(client), f"{version}:{how}"][-200:]
    client.set_registered_model_tag(MODEL_NAME, HISTORY_TAG, ",".join(history))
    if how == "rollback":
        client.set_model_version_tag(MODEL_NAME, version, "rolled_back_to_at", now)
        client.set_model_version_tag(MODEL_NAME, version, "rollback_from", previous or "none")
        if previous:
            client.set_model_version_tag(MODEL_NAME, previous, "rolled_back_at", now)
            client.set_model_version_tag(MODEL_NAME, previous, "rolled_back_to", version)
        return
    client.set_model_version_tag(MODEL_NAME, version, "champion_since", now)
    client.set_model_version_tag(MODEL_NAME, version, "previous_champion", previous or "none")
    client.set_model_version_tag(MODEL_NAME, version, "promoted_by", how)
    if previous:
        client.set_model_version_tag(MODEL_NAME, previous, "replaced_by", version)
        client.set_model_version_tag(MODEL_NAME, previous, "replaced_at", now)


def record_decision(version: str, move: Move, tags: dict) -> None:
    """Gate tags, the decision in words and the description on the judged version."""
    client = _client()
    d = move.decision
    values = {f"gate.{name}": str(d.gates[name]) for name in GATES}
    values.update(
        {
            "gates_passed": str(d.passed),
            "promotion_decision": move.summary()[:MAX_TAG],
            "judged_against": move.previous or "none",
            "judged_at": _now(),
        }
    )
    values.update({k: f"{v:.6g}" for k, v in d.figures.items()})
    if d.policy_change:
        values["policy_change_reason"] = d.policy_change[:MAX_TAG]
    if d.champion_breach:
        values["champion_breach"] = d.champion_breach[:MAX_TAG]
    for key, value in values.items():
        client.set_model_version_tag(MODEL_NAME, version, key, value)
    description = card.version_description({**tags, **values}, move.summary())
    client.update_model_version(MODEL_NAME, version, description=description[:MAX_TAG])


def judge(
    version: str,
    val: pd.DataFrame,
    *,
    promote: bool = True,
    policy_change: str | None = None,
    how: str = "train",
    certifying: pd.DataFrame | None = None,
) -> Move:
    """Decide on `version` against the current champion and move the alias if it passes, as one
    serialised step; records the outcome on the version. `certifying`: the audited persons that
    certified it (the champion is judged on them too: has it broken the promise there?)."""
    client = _client()
    with registry.store_lock() as still_ours:
        tags = _tags(version)
        cand = candidate_from_frame(version, tags, val)
        previous = registry.champion_version()
        if previous == version:
            raise PromotionError(f"model version {version} is already the champion")
        champ = champion_evidence(previous, val) if previous else None
        if champ is not None and certifying is not None:
            champ = champion_on_audit(champ, certifying, tags)
        decision = decide(cand, champ, policy_change=policy_change)
        moved = promote and decision.passed
        move = Move(decision, version, previous, moved, promote)
        still_ours()
        record_decision(version, move, tags)
        if moved:
            _move_alias(client, version, previous, how)
            if decision.champion_breach and previous:
                client.set_model_version_tag(
                    MODEL_NAME, previous, "replaced_because", decision.champion_breach[:MAX_TAG]
                )
    return move


def champion_on_audit(champ: Champion, certifying: pd.DataFrame, tags: dict) -> Champion:
    """The champion's FPR lower bound on the candidate's certifying (audited) persons."""
    try:
        model = registry.load_model(f"models:/{MODEL_NAME}/{champ.version}")
        badge = model.decide(model.predict_proba(certifying[list(FEATURE_NAMES)]))
    except ModelError:
        return champ
    lower = fpr_lower(certifying, np.asarray(badge, dtype=bool), float(tags["confidence"]))
    month = tags.get("certified_month", tags.get("as_of", "?"))
    return dataclasses.replace(champ, newest_fpr_lower=lower, newest_month=month)


def certifying_persons(run_id: str) -> pd.DataFrame | None:
    """A version's certifying (audited) persons, None when its certificate is on a labelled
    month."""
    with tempfile.TemporaryDirectory(prefix="commuter-cert-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=CERTIFYING_ARTIFACT, dst_path=tmp
            )
        except (MlflowException, OSError):
            return None
        return pd.read_parquet(Path(local))


def promote(version: str, policy_change: str | None = None) -> Move:
    """`commuter promote VERSION`: judge a registered version now, against today's champion."""
    version = canonical_version(version)
    _tags(version)  # a clear error for an unknown version
    run_id = _client().get_model_version(MODEL_NAME, version).run_id
    val = validation_persons(run_id, version)
    return judge(
        version,
        val,
        policy_change=policy_change,
        how="promote",
        certifying=certifying_persons(run_id),
    )


def rollback(to: str | None = None) -> tuple[str, str]:
    """`commuter rollback [--to VERSION]`: the alias back to the previous champion (or `to`).

    The target must load with this code (registry.load_model says which code to deploy if not).
    Rollback is an operator's decision, not gated: the version served before is restored."""
    to = canonical_version(to) if to else None
    client = _client()
    with registry.store_lock() as still_ours:
        current = registry.champion_version()
        if current is None:
            raise PromotionError("there is no champion to roll back from; `commuter train` first")
        target = to or _tags(current).get("previous_champion", "none")
        if target in ("", "none"):
            raise PromotionError(
                f"champion v{current} has no previous champion; name one with --to VERSION"
            )
        _tags(target)
        if target == current:
            raise PromotionError(f"model version {target} is already the champion")
        registry.load_model(f"models:/{MODEL_NAME}/{target}")  # refuses an unscorable version
        still_ours()
        _move_alias(client, target, current, "rollback")
    return current, target
