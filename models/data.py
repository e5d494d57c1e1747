"""Labelled feature tables: features for a trips path joined to labels (and, if given, simulation truth)."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from commuter_badge.features.build import build_features
from commuter_badge.features.read import discover, read_labels
from commuter_badge.settings import DEFAULT_WINDOW_DAYS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Labelled:
    frame: pd.DataFrame  # person_id, features, context, is_commuter [, archetype, true_commuter]
    labels_without_trips: int  # labelled persons with no crossing in the window (cannot be scored)
    persons_without_label: int
    digest: str  # sha256 over the trip and label files


def file_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.name).encode())
        with p.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def truth_beside(labels: Path) -> Path | None:
    """Simulated worlds keep the truth (archetypes) in persons.parquet next to labels.csv."""
    p = Path(labels).with_name("persons.parquet")
    return p if p.is_file() else None


def labelled_features(
    trips: str | Path, labels: str | Path, as_of: dt.date, window_days: int = DEFAULT_WINDOW_DAYS
) -> Labelled:
    features = build_features(trips, as_of, window_days)
    y = read_labels(labels)
    frame = features.merge(y, on="person_id", how="inner", validate="one_to_one")
    truth = truth_beside(Path(labels))
    if truth is not None:
        extra = pd.read_parquet(truth)
        keep = [
            c for c in ("person_id", "archetype", "true_commuter", "label_flipped") if c in extra
        ]
        extra = extra[keep].astype({"person_id": "str"})
        frame = frame.merge(extra, on="person_id", how="left")
    digest = file_digest([*discover(trips), Path(labels)])
    return Labelled(
        frame=frame,
        labels_without_trips=int((~y["person_id"].isin(features["person_id"])).sum()),
        persons_without_label=int((~features["person_id"].isin(y["person_id"])).sum()),
        digest=digest,
    )
