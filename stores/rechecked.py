"""What the DuckDB and the PostgreSQL decision stores share: one lock, a publication re-read at
most every `recheck_seconds`, and `ready`/`publication` answered after that re-read."""

from __future__ import annotations

import threading
import time
from typing import Any


class RecheckedStore:
    """Base of both decision stores; a subclass says how to re-read (`_refresh`, called under the
    lock when `_due()`) and when it can answer lookups (`_serving`)."""

    def __init__(self, recheck_seconds: float) -> None:
        self.recheck_seconds = recheck_seconds
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._publication: dict[str, Any] | None = None
        self.problem = "not opened yet"

    @property
    def ready(self) -> bool:
        with self._lock:
            self._refresh()
            return self._serving()

    @property
    def publication(self) -> dict[str, Any] | None:
        """The publication being served (its as_of, model_version, rows, published_at, ...)."""
        with self._lock:
            self._refresh()
            return dict(self._publication) if self._publication else None

    def _due(self) -> bool:
        """True at most once per `recheck_seconds`: a lookup storm re-reads nothing."""
        now = time.monotonic()
        if now - self._checked_at < self.recheck_seconds:
            return False
        self._checked_at = now
        return True

    def _refresh(self) -> None:
        raise NotImplementedError

    def _serving(self) -> bool:
        raise NotImplementedError
