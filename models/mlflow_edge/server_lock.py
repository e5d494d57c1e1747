"""A lock across machines made from the tracking server itself: a registered model as a mutex.

Why this and not a local file: against a shared `mlflow server` the processes that promote run on
several machines, and a file lock serialises one machine's processes only. Why not a database
advisory lock: data scientists hold the server's URL, not its database's credentials. What every
MLflow store does offer is an atomic create: registered-model names are unique (a primary key in
the server's database), so of two clients creating `commuter-badge.lock` at once exactly one
succeeds and the other gets RESOURCE_ALREADY_EXISTS. The holder deletes it when done.

A holder that dies (killed, machine lost) leaves the lock behind; its tags say who holds it and
since when. After `lease` seconds (promotion holds it for seconds) a waiter breaks it by renaming
it aside, which at most one breaker can do (a rename of a name that is gone fails). Because a
broken holder might still be alive, the holder checks the lock is still its own (`still_held`)
right before it moves the alias, and stops with a clear message if not.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from commuter_badge.errors import CommuterError
from commuter_badge.settings import MODEL_NAME

LOCK_MODEL = f"{MODEL_NAME}.lock"
LEASE_SECONDS = 600.0
_log = logging.getLogger(__name__)


class LockLost(CommuterError, RuntimeError):
    """This process's promotion lock was broken by another (it held it past the lease)."""


def _code(exc: MlflowException) -> str:
    return str(getattr(exc, "error_code", ""))


def _try_create(client: MlflowClient, token: str) -> bool:
    tags = {
        "lock.token": token,
        "lock.holder": f"{socket.gethostname()}:{os.getpid()}",
        "lock.acquired_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        client.create_registered_model(
            LOCK_MODEL, tags=tags, description="Held while a command judges or moves the champion."
        )
        return True
    except MlflowException as exc:
        if _code(exc) != "RESOURCE_ALREADY_EXISTS":
            raise
        return False


def _holder(client: MlflowClient) -> tuple[str, str, float] | None:
    """(token, holder, age in seconds) of the current lock; None when there is none."""
    try:
        model = client.get_registered_model(LOCK_MODEL)
    except MlflowException as exc:
        if _code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    age = time.time() - (model.creation_timestamp or 0) / 1000.0
    return model.tags.get("lock.token", ""), model.tags.get("lock.holder", "?"), age


def _break(client: MlflowClient, token: str) -> None:
    """Rename a stale lock aside (only one breaker can) and delete it."""
    aside = f"{LOCK_MODEL}.stale.{token[:12]}.{uuid.uuid4().hex[:8]}"
    try:
        client.rename_registered_model(LOCK_MODEL, aside)
    except MlflowException:
        return  # released or broken by someone else meanwhile
    with contextlib.suppress(MlflowException):
        client.delete_registered_model(aside)


def still_held(client: MlflowClient, token: str) -> None:
    """Raise LockLost unless the lock is the one `token` took."""
    held = _holder(client)
    if held is None or held[0] != token:
        raise LockLost(
            f"the promotion lock ({LOCK_MODEL}) was taken over while this command held it past "
            f"its {LEASE_SECONDS:.0f} s lease; nothing was moved: run the command again"
        )


@contextlib.contextmanager
def server_lock(client: MlflowClient, *, lease: float = LEASE_SECONDS) -> Iterator[str]:
    """Hold the server-side lock for the block; yields this holder's token (for `still_held`)."""
    token = uuid.uuid4().hex
    announced = False
    while not _try_create(client, token):
        held = _holder(client)
        if held is None:
            continue
        other, holder, age = held
        if other == token:
            break  # ours: a retried create whose first answer was lost
        if age > lease:
            _log.warning(
                "breaking the promotion lock %s held by %s for %.0f s", LOCK_MODEL, holder, age
            )
            _break(client, other)
            continue
        if not announced:
            _log.info("waiting for the promotion lock held by %s for %.0f s", holder, age)
            announced = True
        time.sleep(0.1 + random.random() * 0.3)  # noqa: S311 (jitter, not secrets)
    try:
        yield token
    finally:
        held = _holder(client)
        if held is not None and held[0] == token:
            with contextlib.suppress(MlflowException):
                client.delete_registered_model(LOCK_MODEL)
