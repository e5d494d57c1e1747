"""Person keys: what MLflow keeps instead of person ids.

The validation persons a run logs (`validation/persons.parquet`: label, badge, probability and
features, which the promotion gates score the champion on) are keyed by
`person_key = HMAC-SHA256(secret, person_id)` (32 hex digits), not by the id. The secret lives
outside MLflow, in a file (COMMUTER_PERSON_KEY_FILE, default `person.key` in the working directory)
created on first use with 32 random bytes, readable by its owner only. The same secret gives the
same key to the same person in every run, so two versions' validation persons can still be matched;
a reader of MLflow without the secret cannot turn a key back into an id, nor test a guessed id.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from commuter_badge.errors import CommuterError

KEY_BYTES = 32
KEY_HEX = 32  # digits of the HMAC kept: 128 bits, no clash among any real number of persons


class PersonKeyError(CommuterError, OSError):
    """The person-key secret file cannot be used."""


def person_secret(path: str | Path) -> bytes:
    """The secret in `path` (the COMMUTER_PERSON_KEY_FILE setting), created (0600, atomically)
    on first use."""
    path = Path(path).expanduser()
    if not path.exists():
        _create(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise PersonKeyError(
            f"cannot read the person key file {path} (COMMUTER_PERSON_KEY_FILE): {exc.strerror}"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PersonKeyError(
            f"the person key file {path} (COMMUTER_PERSON_KEY_FILE) is readable by others "
            f"(mode {stat.S_IMODE(mode):o}); `chmod 600 {path}` and run again"
        )
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < 16:
        raise PersonKeyError(
            f"the person key file {path} (COMMUTER_PERSON_KEY_FILE) holds no key (64 hex "
            "digits); restore it from its backup (keys made without it match no earlier run)"
        )
    return secret


def _create(path: Path) -> None:
    """Write a new secret beside `path` and link it into place: exclusive and never half-written,
    so two trainings starting at once end up with the same key."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(KEY_BYTES) + "\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # another process made it first: use that
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise PersonKeyError(
            f"cannot create the person key file {path} (COMMUTER_PERSON_KEY_FILE): {exc.strerror}"
        ) from None


def person_keys(ids: Iterable[object], secret: bytes) -> list[str]:
    """HMAC-SHA256 of each id under `secret`, as KEY_HEX hex digits."""
    return [hmac.new(secret, str(i).encode(), hashlib.sha256).hexdigest()[:KEY_HEX] for i in ids]
