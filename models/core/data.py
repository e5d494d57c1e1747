"""Labelled feature tables: features for a trips path joined to labels (and, if given, simulation truth).

Coverage is checked first (features/coverage.py): a window with no crossing is an error naming
both ranges, a window sticking out of the data a warning. Several label files may be given; a
later file overrides an earlier one for the same person (reviews exported after a month's labels).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from commuter_badge.errors import CommuterError
from commuter_badge.features.build import build_features
from commuter_badge.features.copies import weekday_copies
from commuter_badge.features.coverage import check_coverage
from commuter_badge.features.read import discover, read_labels, unit_weights
from commuter_badge.features.workdays import LIBRARY_CALENDAR, WorkingCalendar
from commuter_badge.settings import DEFAULT_WINDOW_DAYS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Labelled:
    frame: pd.DataFrame  # person_id, features, context, is_commuter [, archetype, true_commuter]
    labels_without_trips: int  # labelled persons with no crossing in the window (cannot be scored)
    persons_without_label: int
    digest: str  # sha256 over the trip and label files
    as_of: dt.date | None = None
    window_days: int = DEFAULT_WINDOW_DAYS
    n_labels: int = 0  # distinct labelled persons over all label files
    warnings: tuple[str, ...] = ()  # coverage warnings, already logged
    # Per label file, how many of the final labels it gave (after later files overrode it).
    labels_by_file: tuple[tuple[str, int], ...] = ()
    labels_from_reviews: int = 0  # of those, from `commuter reviews export` files
    # Weekday copies of the labelled persons (features/copies.py), with `copy_of`; training adds
    # those of its fit persons (models/core/fitting.py `split`). None: not built.
    copies: pd.DataFrame | None = None
    # Per month trained on (models/core/months.py): files, digest, label counts, weight sum.
    months: tuple[dict, ...] = ()
    # The working days the features were built under; a model fitted on them records it.
    calendar: WorkingCalendar = LIBRARY_CALENDAR

    @property
    def labels_without_trips_share(self) -> float:
        return self.labels_without_trips / self.n_labels if self.n_labels else 0.0


class NoLabelledPersonsError(CommuterError, ValueError):
    """No labelled person has a crossing in the window."""


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


REVIEW_MARK = "case_id"  # the column `commuter reviews export` writes and month labels lack


def is_review_export(path: Path) -> bool:
    """A label file exported from the review store (it names each label's review)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        return REVIEW_MARK in pq.read_schema(path).names
    return REVIEW_MARK in pd.read_csv(path, nrows=0).columns


def read_label_files(labels: str | Path | list) -> tuple[pd.DataFrame, list[Path]]:
    """All label files, later ones overriding earlier ones for the same person."""
    y, paths, _ = counted_label_files(labels)
    return y, paths


def counted_label_files(
    labels: str | Path | list,
) -> tuple[pd.DataFrame, list[Path], list[int]]:
    """As `read_label_files`, with how many of the final labels each file gave."""
    paths = [Path(p) for p in (labels if isinstance(labels, (list, tuple)) else [labels])]
    frames = [read_labels(p).assign(_file=i) for i, p in enumerate(paths)]
    y = pd.concat(frames, ignore_index=True).drop_duplicates("person_id", keep="last")
    if "weight" in y.columns:  # rows of a file without the column weigh 1
        y["weight"] = y["weight"].fillna(1.0)
    kept = y["_file"].value_counts()
    counts = [int(kept.get(i, 0)) for i in range(len(paths))]
    return y.drop(columns="_file").reset_index(drop=True), paths, counts


class WeightedLabelsError(CommuterError, ValueError):
    """Weighted labels given to a command that cannot use their weights yet."""


def refuse_weights(labelled: Labelled, command: str) -> None:
    """`command` certifies a threshold on labelled persons counted one each; labels whose weights
    are not all 1 (an audit's verdicts) would need a certificate on weighted persons (issue 30,
    item 3), so they are refused rather than silently counted as one person each."""
    if unit_weights(labelled.frame):
        return
    files = ", ".join(p for p, _ in labelled.labels_by_file) or "the labels"
    raise WeightedLabelsError(
        f"{files}: weighted labels (a 'weight' column with values other than 1) cannot be used by "
        f"`commuter {command}` yet: its figures and threshold certificate count each labelled "
        "person once; "
        "measure a model on them with `commuter evaluate` (weighted estimates), or bound a "
        "month's FPR with `commuter audit certify`"
    )


def labelled_features(
    trips: str | Path,
    labels: str | Path | list,
    as_of: dt.date,
    window_days: int = DEFAULT_WINDOW_DAYS,
    copies: bool = False,
    memory: str | None = None,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> Labelled:
    """Features joined to labels; with `copies`, also the labelled persons' weekday copies.
    `memory` is the DuckDB memory setting, `calendar` the working days the features are built
    under."""
    # The labels first: a wrong --labels file is refused before the trips are read.
    y, label_paths, per_file = counted_label_files(labels)
    coverage = check_coverage(trips, as_of, window_days, calendar)
    for text in coverage.warnings:
        log.warning("%s", text)
    features = build_features(trips, as_of, window_days, memory=memory, calendar=calendar)
    for path, n in zip(label_paths, per_file, strict=True):
        kind = "reviews" if is_review_export(path) else "labels"
        log.info("%s: %d of the %d labels used (%s)", path.name, n, len(y), kind)
    frame = features.merge(y, on="person_id", how="inner", validate="one_to_one")
    # Ids are unique on both sides (checked by the merge), so the unmatched counts are differences
    # of sizes: `isin` on 1M string ids cost 21 s of a 1M-person training (issue 28 item 6).
    matched = len(frame)
    if frame.empty:
        raise NoLabelledPersonsError(
            f"none of the {len(y):,} labelled persons in {', '.join(map(str, label_paths))} has a "
            f"crossing in the window before {as_of} ({len(features):,} persons crossed in it); "
            "do the labels belong to these trips and this month?"
        )
    truth = truth_beside(label_paths[-1])
    if truth is not None:
        extra = pd.read_parquet(truth)
        keep = [
            c for c in ("person_id", "archetype", "true_commuter", "label_flipped") if c in extra
        ]
        extra = extra[keep].astype({"person_id": "str"})
        frame = frame.merge(extra, on="person_id", how="left")
    digest = file_digest([*discover(trips), *label_paths])
    copied = (
        weekday_copies(trips, as_of, frame["person_id"], window_days, memory, calendar)
        if copies
        else None
    )
    return Labelled(
        frame=frame,
        labels_without_trips=len(y) - matched,
        persons_without_label=len(features) - matched,
        digest=digest,
        as_of=as_of,
        window_days=window_days,
        calendar=calendar,
        n_labels=len(y),
        warnings=coverage.warnings,
        labels_by_file=tuple((str(p), n) for p, n in zip(label_paths, per_file, strict=True)),
        labels_from_reviews=sum(
            n for p, n in zip(label_paths, per_file, strict=True) if is_review_export(p)
        ),
        copies=copied,
    )
