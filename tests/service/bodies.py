"""Request bodies from simulated crossings: the service tests and the service benchmarks."""

from __future__ import annotations

import pandas as pd


def trip_entries(rows: pd.DataFrame) -> list[dict]:
    """One person's crossings (rows of a trips table) as the `trips` list of a /score person."""
    return [
        {
            "ts": r.ts.isoformat(),
            "direction": r.direction,
            "mode": r.mode,
            "site_id": r.site_id,
            "region": r.region,
        }
        for r in rows.itertuples()
    ]
