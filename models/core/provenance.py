"""Which code a model version was trained with: feature names, feature SQL digest, package, commit.

Recorded in the version's `model.json` (`meta.extra["code"]`) and in its MLmodel metadata, so a
version loaded by other code can tell whether that code computes the features it was trained on,
and if not, name the code version to deploy instead.

The SQL digest is the sha256 of the feature query text for one fixed as_of and the model's window:
the text is what defines the numbers (every engine runs it unchanged), while the fixed date keeps
the digest independent of when it is taken.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import subprocess
from pathlib import Path

import commuter_badge
from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.features.sql import Window, feature_sql

DIGEST_AS_OF = dt.date(2021, 11, 26)  # any date the calendar covers; fixed so digests compare
PACKAGE_ROOT = Path(commuter_badge.__file__).resolve().parent


@functools.lru_cache(maxsize=8)
def feature_sql_digest(window_days: int) -> str:
    """sha256 of the feature query for DIGEST_AS_OF and `window_days`."""
    text = feature_sql("trips", Window(DIGEST_AS_OF, window_days).params())
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The checkout's HEAD commit, with `+dirty` when files differ from it; "" outside a checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PACKAGE_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PACKAGE_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+dirty" if dirty else "")


def code_provenance(window_days: int) -> dict:
    """What this code defines and which code it is, as recorded with a version."""
    return {
        "feature_names": list(FEATURE_NAMES),
        "feature_sql_sha256": feature_sql_digest(window_days),
        "package_version": commuter_badge.__version__,
        "git_commit": git_commit(),
    }


def code_label(provenance: dict) -> str:
    """The code version in words: 'commuter-badge 0.1.0 at commit 1a2b3c4d5e6f'."""
    version = provenance.get("package_version") or "unknown version"
    commit = provenance.get("git_commit") or "unknown commit"
    return f"commuter-badge {version} at commit {commit}"


def mismatch(recorded: dict, feature_names: tuple[str, ...], window_days: int) -> str | None:
    """Why this code cannot score a version trained with `recorded` code, or None when it can.

    A version without a recorded digest (trained before digests were kept) is judged by its
    feature names alone.
    """
    if tuple(feature_names) != FEATURE_NAMES:
        return (
            f"it was trained on {len(feature_names)} features, this code defines "
            f"{len(FEATURE_NAMES)}"
        )
    digest = recorded.get("feature_sql_sha256")
    if digest and digest != feature_sql_digest(window_days):
        return "its feature SQL differs from this code's (sha256 " + digest[:12] + ")"
    return None
