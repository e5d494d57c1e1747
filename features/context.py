"""What a command or a service worker resolves once at its start and passes down: `RunContext`.

The settings (core/settings.py, the only reader of the environment) and the working-day calendar
(features/workdays.py) are built at the edge, `commuter_badge.cli.app.run_context` for a command,
and handed to a job as one frozen object, so no library module reads the environment. The
calendar is also made the process's calendar there (`use_calendar`), which the feature SQL still
reads (docs/architecture.md says what remains).
"""

from __future__ import annotations

from dataclasses import dataclass

from commuter_badge.features.workdays import WorkingCalendar, active_calendar
from commuter_badge.settings import Settings


@dataclass(frozen=True)
class RunContext:
    """The settings and the working-day calendar one run works under."""

    settings: Settings
    calendar: WorkingCalendar

    @classmethod
    def defaults(cls) -> RunContext:
        """The embedded defaults (no environment read) and the calendar in use: for a job called
        from Python without a context, on the MLflow store it is pointed at already."""
        return cls(Settings.model_construct(tracking_uri=""), active_calendar())

    @property
    def tracking_uri(self) -> str | None:
        """The MLflow store; None: the one MLflow points at already."""
        return self.settings.tracking_uri or None
