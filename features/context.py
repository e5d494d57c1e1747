"""What a command or a service worker resolves once at its start and passes down: `RunContext`.

The settings (core/settings.py, the only reader of the environment) and the working-day calendar
(features/workdays.py) are built at the edge, `commuter_badge.cli.app.run_context` for a command,
and handed to a job as one frozen object, so no library module reads the environment or a
process-wide calendar: every feature build, the simulator and the person's side take
`context.calendar` as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass

from commuter_badge.features.workdays import LIBRARY_CALENDAR, WorkingCalendar
from commuter_badge.settings import Settings


@dataclass(frozen=True)
class RunContext:
    """The settings and the working-day calendar one run works under."""

    settings: Settings
    calendar: WorkingCalendar

    @classmethod
    def defaults(cls) -> RunContext:
        """The embedded defaults (no environment read) and the statutory calendar alone: for a
        job called from Python without a context, on the MLflow store it is pointed at already."""
        return cls(Settings.model_construct(tracking_uri=""), LIBRARY_CALENDAR)

    @property
    def tracking_uri(self) -> str | None:
        """The MLflow store; None: the one MLflow points at already."""
        return self.settings.tracking_uri or None
