"""Is the working-day calendar in use the one the model was certified under?

A model's threshold and FPR certificate hold for features computed with one holiday calendar;
with another (a newer chinesecalendar, a different schedule file), the same person's working-day
features can change, so the certificate may not carry over. Commands that judge a model against
new data (`evaluate`, `monitor`) warn when the calendars differ, on stderr and as an MLflow tag.
The model records its calendar in `ModelMeta.calendar` at training (features/workdays.py
`WorkingCalendar.fingerprint`): library version, schedule file digest and a digest per year.
"""

from __future__ import annotations

import logging

import mlflow

from commuter_badge.features.workdays import WorkingCalendar
from commuter_badge.models.core.bundle import ModelMeta

log = logging.getLogger(__name__)

MISMATCH_TAG = "calendar_mismatch"


def calendar_mismatch(meta: ModelMeta, calendar: WorkingCalendar) -> str | None:
    """One line saying where `calendar` (the run's) disagrees with the model's, or None.

    Calendars are compared year by year on the years both cover: adding a year the model never
    saw (next year's schedule file, a library release) is no mismatch, changing one it did is.
    None too for a model that records no calendar (trained before models carried one).
    """
    recorded = meta.calendar or {}
    if not recorded:
        return None
    now = calendar.fingerprint()
    if all(recorded.get(k) == now[k] for k in ("library_version", "file_digest")):
        return None
    theirs, ours = recorded.get("year_digests") or {}, now["year_digests"]
    changed = sorted(y for y in theirs.keys() & ours.keys() if theirs[y] != ours[y])
    if not changed:
        return None
    return (
        f"the working-day calendar in use (chinesecalendar {now['library_version']}, file "
        f"{now['file_digest'][:12]}) differs from the one the model was certified under "
        f"(chinesecalendar {recorded.get('library_version')}, file "
        f"{str(recorded.get('file_digest'))[:12]}) for {', '.join(changed)}: features may differ "
        "from training and its FPR certificate may not hold; use the model's calendar "
        "(--calendar FILE) or retrain under this one"
    )


def warn_calendar_mismatch(meta: ModelMeta, calendar: WorkingCalendar) -> str | None:
    """Warn on stderr and tag the active MLflow run when the calendars differ; returns the line."""
    why = calendar_mismatch(meta, calendar)
    if why is not None:
        log.warning("warning: %s", why)
        if mlflow.active_run() is not None:
            mlflow.set_tag(MISMATCH_TAG, why)
    return why
