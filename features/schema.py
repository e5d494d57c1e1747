"""The trip and label contract (contract §1): column names, allowed values, and its error type."""

from __future__ import annotations

from commuter_badge.errors import CommuterError

TRIP_COLUMNS = ("person_id", "ts", "direction", "mode", "site_id", "region")
DIRECTIONS = ("in", "out")
MODES = ("rail", "car", "bus")
LABEL_COLUMNS = ("person_id", "is_commuter")

# A second read of the same person at the same site in the same direction within this many seconds
# is the scanner reading one crossing twice, not a new crossing (see features/sql.py).
DOUBLE_READ_SECONDS = 120


class TripDataError(CommuterError, ValueError):
    """Input data breaks the contract; the message names file, column and the first bad row."""
