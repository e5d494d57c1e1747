"""Training on several labelled months: keys, the split, and whose labels certify the threshold.

Each month's features are built over its own window (and the working-day calendar of its days),
then the months are stacked. A person's rows are keyed by month (`person_id@as_of`), so the same
person in two months stays two rows; the split (models/core/split.py) hashes the person's own id
(`split_id`), so all of a person's months fall on one side of it.

Whose labels certify the threshold: always the newest month's, so the certificate is for persons
drawn like the month the model will score next, not like the oldest.
- Labelled in full (unit weights): the newest month's calibration persons (Platt uses every
  month's calibration persons; the threshold only the newest's).
- An audit (weights not all 1, `commuter audit certify --labels-out`): its persons whose hash falls
  in the fit or early-stopping shares train the trees (with their weights as LightGBM sample
  weights, so the audited month counts for the persons it stands for); the rest, the
  calibration and validation shares, are held out as the `certify` part and certify the threshold
  with the audit's stratified design (models/core/stratified.py). Holding out, not cross-fitting:
  one model, one certificate on persons it never saw; the share follows the split so a person
  certifies only if none of their months trained the trees.
Only the newest month may be weighted: an older audit certifies nothing, and one month alone
cannot both train (it needs a population drawn as a whole) and certify.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from commuter_badge.errors import CommuterError
from commuter_badge.features.read import unit_weights
from commuter_badge.features.workdays import LIBRARY_CALENDAR, WorkingCalendar
from commuter_badge.models.core.data import Labelled, counted_label_files, labelled_features
from commuter_badge.models.core.split import assign
from commuter_badge.models.core.stratified import Stratum, strata_of

CERTIFY = "certify"  # the audited persons held out to certify the threshold
SEPARATOR = "@"


class MonthsError(CommuterError, ValueError):
    """Months that cannot be trained on together; the message says what to change."""


@dataclass(frozen=True)
class Month:
    trips: Path
    labels: tuple[Path, ...]
    as_of: dt.date

    @property
    def name(self) -> str:
        return self.as_of.isoformat()


def single_month(trips, labels, as_of: dt.date) -> Month:
    """The one month of the --trips/--labels/--as-of form."""
    paths = labels if isinstance(labels, (list, tuple)) else [labels]
    return Month(Path(trips), tuple(Path(p) for p in paths), as_of)


def check_months(months: Sequence[Month], command: str) -> list[Month]:
    """The months oldest first; refuses repeated as_ofs and weights outside the newest month
    before any feature is built (reads only the label files)."""
    ordered = sorted(months, key=lambda m: m.as_of)
    days = [m.as_of for m in ordered]
    if len(set(days)) != len(days):
        raise MonthsError(f"--month given twice for as_of {max(days, key=days.count)}")
    weighted = [m for m in ordered if not unit_weights(counted_label_files(list(m.labels))[0])]
    for m in weighted:
        if m is not ordered[-1]:
            raise MonthsError(
                f"{m.labels[-1]}: weighted labels (an audit) are used only as the newest month, "
                f"whose population the threshold is certified for; {m.as_of} is not the newest"
            )
        if len(ordered) == 1:
            raise MonthsError(
                f"{m.labels[-1]}: weighted labels (an audit) certify a threshold, but `commuter "
                f"{command}` cannot use them alone; give a fully labelled month too: "
                "`commuter train --month "
                "TRIPS LABELS AS_OF` (the month before) `--month` (the audited one)"
            )
    return ordered


def labelled_months(
    months: Sequence[Month],
    window_days: int,
    copies: bool,
    memory: str | None = None,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> Labelled:
    """Every month's labelled features, stacked and keyed by month (module docstring); built
    under the DuckDB `memory` setting and the working-day `calendar`."""
    parts = [
        labelled_features(m.trips, list(m.labels), m.as_of, window_days, copies, memory, calendar)
        for m in months
    ]
    return stack_months(months, parts, window_days)


def stack_months(months: Sequence[Month], parts: Sequence[Labelled], window_days: int) -> Labelled:
    """The months' labelled tables (oldest first) as one; one month is returned as it is."""
    logged = tuple(_month_log(m, lab) for m, lab in zip(months, parts, strict=True))
    if len(parts) == 1:
        return dataclasses.replace(parts[0], months=logged)
    frames, copied = [], []
    for m, lab in zip(months, parts, strict=True):
        frames.append(_keyed(lab.frame, m.name))
        if lab.copies is not None:
            copy = _keyed(lab.copies, m.name)
            copied.append(copy.assign(copy_of=copy["copy_of"] + SEPARATOR + m.name))
    digest = hashlib.sha256("".join(p.digest for p in parts).encode()).hexdigest()
    frame = pd.concat(frames, ignore_index=True)
    if "weight" in frame:  # the months without the column weigh 1
        frame["weight"] = frame["weight"].fillna(1.0)
    return Labelled(
        frame=frame,
        months=logged,
        labels_without_trips=sum(p.labels_without_trips for p in parts),
        persons_without_label=sum(p.persons_without_label for p in parts),
        digest=digest,
        as_of=months[-1].as_of,
        window_days=window_days,
        calendar=parts[-1].calendar,
        n_labels=sum(p.n_labels for p in parts),
        warnings=tuple(w for p in parts for w in p.warnings),
        labels_by_file=tuple(f for p in parts for f in p.labels_by_file),
        labels_from_reviews=sum(p.labels_from_reviews for p in parts),
        copies=pd.concat(copied, ignore_index=True) if copied else None,
    )


def _keyed(frame: pd.DataFrame, month: str) -> pd.DataFrame:
    out = frame.copy()
    out.insert(1, "split_id", out["person_id"].astype(str))
    out["person_id"] = out["split_id"] + SEPARATOR + month
    out["month"] = month
    return out


def _month_log(month: Month, lab: Labelled) -> dict:
    """What a run logs of one month: files, digest, label counts, weight sum."""
    frame = lab.frame
    weight = frame["weight"] if "weight" in frame else pd.Series(1.0, index=frame.index)
    return {
        "as_of": month.name,
        "trips": str(month.trips),
        "labels": [str(p) for p in month.labels],
        "digest": lab.digest,
        "labels_read": lab.n_labels,
        "labelled_with_crossings": len(frame),
        "commuters": int(frame["is_commuter"].sum()),
        "weight_sum": float(weight.sum()),
        "weighted": not unit_weights(frame),
    }


def assign_parts(frame: pd.DataFrame, seed: int, parts: dict[str, float]) -> pd.Series:
    """Each row's part: by its person's own id; an audited newest month's held-out share is
    `certify` (module docstring)."""
    key = frame["split_id"] if "split_id" in frame else frame["person_id"]
    part = assign(key, seed, parts)
    audited = audited_rows(frame)
    held_out = audited & ~part.isin(["fit", "early_stop"]).to_numpy()
    return part.mask(pd.Series(held_out, index=frame.index), CERTIFY)


def audited_rows(frame: pd.DataFrame) -> np.ndarray:
    """The rows of a weighted newest month (all False when every label weighs 1)."""
    if unit_weights(frame):
        return np.zeros(len(frame), dtype=bool)
    if "month" not in frame:
        return np.ones(len(frame), dtype=bool)
    return (frame["month"] == frame["month"].max()).to_numpy()


def certifying_strata(frame: pd.DataFrame) -> tuple[np.ndarray, list[Stratum]]:
    """For a split frame with an audited month: each certifying row's stratum and the strata."""
    audited = frame[audited_rows(frame)]
    index = strata_of(audited["weight"].to_numpy())
    certify = (audited["part"] == CERTIFY).to_numpy()
    strata = []
    for s in range(index.max() + 1):
        members = audited[index == s]
        n_cert = int(certify[index == s].sum())
        if n_cert == 0:
            raise MonthsError("an audit stratum has no held-out person to certify on; audit more")
        strata.append(
            Stratum(
                size=round(float(members["weight"].iloc[0]) * len(members)),
                audited=len(members),
                negatives=int((members["is_commuter"] == 0).sum()),
                certifying=n_cert,
            )
        )
    return index[certify], strata


def newest_calibration(frame: pd.DataFrame) -> pd.Series:
    """Rows of the calibration part that certify a fully labelled newest month."""
    cal = frame["part"] == "calibration"
    if "month" in frame:
        cal &= frame["month"] == frame["month"].max()
    return cal


def certificate_words(certificate: dict, as_of: dt.date, confidence: float) -> str:
    """Which month and how many persons certify the threshold, and how (tags, card, output)."""
    persons = int(certificate.get("cal_persons", certificate.get("cal_negatives", 0)))
    bound = f"FPR <= {certificate['cal_fpr_upper95']:.4%}"
    if certificate.get("cal_audit_design"):
        held = "" if certificate.get("cal_certified", 1) else " (does NOT reach the target)"
        return (
            f"{bound}{held}: one-sided {confidence:g} bound with the audit's stratified design "
            f"(exact hypergeometric test inversion) on {persons} audited persons of month "
            f"{as_of} held out from the trees ({int(certificate['cal_negatives'])} non-commuters)"
        )
    return (
        f"{bound}: one-sided {confidence:g} Clopper-Pearson on {persons} calibration persons of "
        f"month {as_of} ({int(certificate['cal_negatives'])} negatives)"
    )


def certificate_tags(certificate: dict, as_of: dt.date, confidence: float) -> dict[str, str]:
    """Version tags naming the certifying month, persons and design."""
    return {
        "certificate": certificate_words(certificate, as_of, confidence),
        "certified_month": as_of.isoformat(),
        "certifying_persons": str(int(certificate.get("cal_persons", 0))),
        "certificate_design": "audit" if certificate.get("cal_audit_design") else "clopper-pearson",
    }


def months_params(months: tuple[dict, ...]) -> dict[str, str]:
    """Run params naming every month: files, digest, labels and weight sum (months.json too)."""
    return {
        f"month_{i}": f"{m['as_of']}: {m['labelled_with_crossings']} labelled "
        f"({m['commuters']} commuters, weights sum {m['weight_sum']:.6g}), "
        f"digest {m['digest'][:16]}, labels {', '.join(Path(p).name for p in m['labels'])}"[:500]
        for i, m in enumerate(months)
    }


def uncertified_warning(certificate: dict, as_of: dt.date, config, version: str) -> str | None:
    """The one line train prints when the newest month's audit cannot certify the target."""
    if certificate.get("cal_certified", 1):
        return None
    return (
        f"the {int(certificate['cal_persons'])} audited persons of month {as_of} held out to "
        f"certify cannot certify FPR <= {config.target_fpr:.2%} at {config.confidence:g} "
        f"confidence (best bound {certificate['cal_fpr_upper95']:.2%}): version {version} is "
        "registered, not promoted; audit more persons (docs/guide/runbook.md)"
    )
