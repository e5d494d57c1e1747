"""Audits of a month's decisions: who holds a badge and should not (docs/contract.md §5).

The certificate of a model version covers persons drawn like its calibration persons; an audit
checks the month itself. `draw` takes a stratified random sample of a score file, without
replacement: badge holders in one stratum, non-holders in the other, so both the share of holders
who are not commuters and the false-positive rate can be bounded. Persons are verified by hand;
`certify` turns the verdicts into one-sided 95% upper bounds valid for the whole month's
population (the finite strata the sample was drawn from), not for a hypothetical larger one.

How the bounds are made, and what they assume:
- Within a stratum of N persons of whom K are non-commuters, the number found in a simple random
  sample of n is hypergeometric. The exact bound on K is the largest K that still makes a count as
  low as the one found at least `alpha` likely (and for a lower bound the mirror image). No normal
  approximation; valid for any sample size.
- Share of holders who are not commuters = K_holders / N_holders: its upper bound is the
  holder-stratum bound at 95%.
- FPR = K_holders / (K_holders + K_nonholders) rises with K_holders and falls with K_nonholders,
  so an upper bound is the upper bound of K_holders over it plus the lower bound of K_nonholders,
  each at 97.5%: by the union bound, both hold together with probability at least 95%.
- Sampled persons without a verdict are counted the unfavourable way (a holder as a non-commuter,
  a non-holder as a commuter), so missing verdicts widen the bounds instead of assuming they
  are missing at random. The report gives both counts.
- Verdicts are taken as the truth. A verification that errs is not covered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.stats import hypergeom

from commuter_badge.errors import CommuterError

HOLDERS, NON_HOLDERS = "badge_holder", "non_holder"
SAMPLE_COLUMNS = (
    "person_id",
    "stratum",
    "stratum_size",
    "stratum_sampled",
    "commuter_probability",
    "badge",
    "model_version",
)
CONFIDENCE = 0.95


class AuditError(CommuterError, ValueError):
    """A sample or verdict file that cannot be audited; the message says why."""


def draw(scores: pd.DataFrame, n: int, seed: int, holder_share: float = 0.5) -> pd.DataFrame:
    """A reproducible stratified sample of `n` persons from a month's score table.

    `holder_share` of the sample goes to badge holders (at most all of them), the rest to
    non-holders. The same scores, n and seed give the same sample whatever the row order.
    """
    if n < 2:
        raise AuditError(f"--n {n}: an audit needs at least 2 persons (one per stratum)")
    if not 0 < holder_share < 1:
        raise AuditError(f"holder share {holder_share} must be between 0 and 1")
    missing = [c for c in ("person_id", "badge", "commuter_probability") if c not in scores]
    if missing:
        raise AuditError(f"scores lack column(s) {', '.join(missing)}")
    frame = scores.sort_values("person_id", ignore_index=True)
    badge = frame["badge"].astype(bool).to_numpy()
    sizes = {HOLDERS: int(badge.sum()), NON_HOLDERS: int((~badge).sum())}
    if min(sizes.values()) == 0:
        raise AuditError(
            f"the scores hold {sizes[HOLDERS]:,} badge holders and {sizes[NON_HOLDERS]:,} "
            "non-holders; both strata are needed"
        )
    want_holders = min(sizes[HOLDERS], max(1, round(n * holder_share)))
    want = {HOLDERS: want_holders, NON_HOLDERS: min(sizes[NON_HOLDERS], n - want_holders)}
    rng = np.random.default_rng(seed)
    parts = []
    for stratum, mask in ((HOLDERS, badge), (NON_HOLDERS, ~badge)):
        members = np.flatnonzero(mask)
        chosen = np.sort(rng.choice(members, size=want[stratum], replace=False))
        part = frame.iloc[chosen].copy()
        part["stratum"] = stratum
        part["stratum_size"] = sizes[stratum]
        part["stratum_sampled"] = want[stratum]
        parts.append(part)
    sample = pd.concat(parts, ignore_index=True)
    if "model_version" not in sample:
        sample["model_version"] = ""
    return sample[list(SAMPLE_COLUMNS)]


def upper_count(size: int, sampled: int, found: int, confidence: float) -> int:
    """Largest K (non-commuters in a stratum of `size`) for which finding `found` or fewer in a
    sample of `sampled` still has probability ≥ 1 - confidence."""
    alpha = 1 - confidence
    # P(X <= found) falls as K grows: bisect for the last K where it is still >= alpha.
    lo, hi = found, size - (sampled - found)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if hypergeom.cdf(found, size, mid, sampled) >= alpha:
            lo = mid
        else:
            hi = mid - 1
    return int(lo)


def lower_count(size: int, sampled: int, found: int, confidence: float) -> int:
    """Smallest K for which finding `found` or more in a sample of `sampled` still has
    probability ≥ 1 - confidence."""
    alpha = 1 - confidence
    # P(X >= found) rises with K: bisect for the first K where it reaches alpha.
    lo, hi = found, size - (sampled - found)
    while lo < hi:
        mid = (lo + hi) // 2
        if hypergeom.sf(found - 1, size, mid, sampled) >= alpha:
            hi = mid
        else:
            lo = mid + 1
    return int(lo)


@dataclass(frozen=True)
class AuditResult:
    """What `certify` reports (docs/contract.md §5 names), with the counts every figure rests on."""

    badge_holders_noncommuter_share: float
    badge_holders_noncommuter_share_upper95: float
    fpr_estimate: float
    fpr_upper95: float
    n_sampled: int
    n_verified: int
    n_badge_holders: int
    n_non_holders: int
    sampled_badge_holders: int
    sampled_non_holders: int
    verified_badge_holders: int
    verified_non_holders: int
    noncommuters_found_among_holders: int
    noncommuters_found_among_non_holders: int
    noncommuters_among_holders_upper: int
    noncommuters_among_non_holders_lower: int
    model_version: str
    confidence: float = CONFIDENCE
    assumptions: str = (
        "simple random sampling without replacement within each stratum; verdicts are true; "
        "missing verdicts counted unfavourably; FPR bound by the union of two 97.5% bounds"
    )

    def as_dict(self) -> dict:
        return asdict(self)


def certify(sample: pd.DataFrame, verdicts: pd.DataFrame) -> AuditResult:
    """Bounds for the month from a drawn sample and the hand-verified verdicts of its persons."""
    missing = [c for c in SAMPLE_COLUMNS if c not in sample]
    if missing:
        raise AuditError(
            f"the sample lacks column(s) {', '.join(missing)}; use the file `audit draw` wrote"
        )
    unknown = set(verdicts["person_id"]) - set(sample["person_id"])
    if unknown:
        raise AuditError(
            f"{len(unknown)} verdict(s) for persons not in the sample, e.g. {sorted(unknown)[0]!r}"
        )
    merged = sample.merge(verdicts, on="person_id", how="left")
    counts = {}
    for stratum in (HOLDERS, NON_HOLDERS):
        part = merged[merged["stratum"] == stratum]
        if part.empty:
            raise AuditError(f"the sample has no {stratum.replace('_', ' ')}s")
        sizes = part["stratum_size"].unique()
        drawn = part["stratum_sampled"].unique()
        if len(sizes) != 1 or len(drawn) != 1 or int(drawn[0]) != len(part):
            raise AuditError(
                f"the {stratum} stratum's sizes are inconsistent: the sample was edited; "
                "draw a new one"
            )
        verified = part["is_commuter"].notna()
        counts[stratum] = {
            "size": int(sizes[0]),
            "sampled": len(part),
            "verified": int(verified.sum()),
            "found": int((part.loc[verified, "is_commuter"] == 0).sum()),
            "unverified": int((~verified).sum()),
        }
    h, o = counts[HOLDERS], counts[NON_HOLDERS]
    half = 1 - (1 - CONFIDENCE) / 2
    # Unverified holders count as non-commuters, unverified non-holders as commuters.
    share_up = upper_count(h["size"], h["sampled"], h["found"] + h["unverified"], CONFIDENCE)
    k_hold_up = upper_count(h["size"], h["sampled"], h["found"] + h["unverified"], half)
    k_other_low = lower_count(o["size"], o["sampled"], o["found"], half)
    k_hold_hat = h["size"] * h["found"] / max(h["verified"], 1)
    k_other_hat = o["size"] * o["found"] / max(o["verified"], 1)
    fpr_hat = k_hold_hat / (k_hold_hat + k_other_hat) if k_hold_hat + k_other_hat else 0.0
    fpr_up = k_hold_up / (k_hold_up + k_other_low) if k_hold_up + k_other_low else 1.0
    versions = sorted({str(v) for v in sample["model_version"].dropna()})
    return AuditResult(
        badge_holders_noncommuter_share=h["found"] / max(h["verified"], 1),
        badge_holders_noncommuter_share_upper95=share_up / h["size"],
        fpr_estimate=fpr_hat,
        fpr_upper95=fpr_up,
        n_sampled=h["sampled"] + o["sampled"],
        n_verified=h["verified"] + o["verified"],
        n_badge_holders=h["size"],
        n_non_holders=o["size"],
        sampled_badge_holders=h["sampled"],
        sampled_non_holders=o["sampled"],
        verified_badge_holders=h["verified"],
        verified_non_holders=o["verified"],
        noncommuters_found_among_holders=h["found"],
        noncommuters_found_among_non_holders=o["found"],
        noncommuters_among_holders_upper=k_hold_up,
        noncommuters_among_non_holders_lower=k_other_low,
        model_version=",".join(versions),
    )


def design_labels(sample: pd.DataFrame, verdicts: pd.DataFrame) -> pd.DataFrame:
    """The verdicts as weighted labels for the audited month: `person_id, is_commuter, weight`.

    A person's weight is the inverse of their inclusion probability in the stratified draw, their
    stratum's population count over the persons of that stratum in the file, so the weights of a
    stratum sum to its population and those of the file to the month's (`stratum_size` summed over
    the strata). Sampled persons without a verdict are left out and their stratum's weight spread
    over its verified persons: that assumes the unverified are missing at random within their
    stratum (`certify` instead counts them unfavourably; the CLI says how many there were). Call
    after `certify`, which checks the sample and verdicts.
    """
    merged = sample.merge(verdicts[["person_id", "is_commuter"]], on="person_id", how="inner")
    verified = merged.groupby("stratum")["person_id"].transform("size")
    weight = merged["stratum_size"].astype("float64") / verified
    return pd.DataFrame(
        {
            "person_id": merged["person_id"].astype(str),
            "is_commuter": merged["is_commuter"].astype("int64"),
            "weight": weight,
        }
    ).sort_values("person_id", ignore_index=True)
