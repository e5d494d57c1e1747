"""The promotion rules, as pure functions: may this version replace the champion?

A version becomes champion only when every rule holds (docs/contract.md §4):
  certificate_holds               its calibration bound cal_fpr_upper95 <= target FPR;
  validation_consistent           the validation persons give no evidence against the certificate:
                                  the one-sided 95% Clopper–Pearson LOWER bound of the validation
                                  FPR is <= target. (The older rule `val_fpr <= target` refuses a
                                  correctly certified model by chance alone whenever its true FPR
                                  is near the target; see benchmarks/promotion_rules.py.)
                                  Under a policy with label noise rho the false positives and
                                  negatives are first restated against the truth as the
                                  certificate counts them (models/core/threshold.py `against_truth`).
  policy_matches_champion         target FPR, confidence and window equal the champion's; a
                                  different policy needs a stated reason (`commuter promote
                                  VERSION --policy-change REASON`);
  recall_not_worse_than_champion  on the same validation persons, McNemar's exact test on the
                                  commuters the two models disagree on does not show the
                                  candidate worse (one-sided, 5%);
  newer_data_on_tie               when the test does not show the candidate better either, it must
                                  be trained on newer data (a later as_of): an identical retrain
                                  or a tuning trial on the same month is not promoted.
Each outcome is True, False or skipped; a rule that could not be evaluated (no champion, a
champion that cannot be loaded, recall compared across two policies) is `skipped`, never True.
Nothing here touches MLflow, so every rule is tested on plain arrays.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import beta, binomtest

from commuter_badge.models.core.config import Policy
from commuter_badge.models.core.threshold import against_truth, metrics_against_truth

ALPHA = 0.05  # one-sided level of the validation bound and of McNemar's test
GATES = (
    "certificate_holds",
    "validation_consistent",
    "policy_matches_champion",
    "recall_not_worse_than_champion",
    "newer_data_on_tie",
)


class Outcome(enum.Enum):
    """A gate's result; its value is the tag text. Only PASSED is truthy."""

    PASSED = "True"
    FAILED = "False"
    SKIPPED = "skipped"

    def __bool__(self) -> bool:
        return self is Outcome.PASSED

    def __str__(self) -> str:
        return self.value

    @classmethod
    def of(cls, ok: bool) -> Outcome:
        return cls.PASSED if ok else cls.FAILED


def clopper_pearson_lower(k: float, n: int, confidence: float = 1 - ALPHA) -> float:
    """One-sided lower confidence bound on a rate after k events in n trials (0 when k = 0)."""
    if n <= 0:
        raise ValueError("Clopper–Pearson bound needs n > 0")
    return 0.0 if k <= 0 else float(beta.ppf(1 - confidence, k, n - k + 1))


@dataclass(frozen=True)
class Candidate:
    """What the rules need of the version being judged, on its own validation persons."""

    version: str
    policy: Policy
    as_of: dt.date
    cal_fpr_upper95: float
    is_commuter: np.ndarray  # validation labels
    badge: np.ndarray  # the candidate's decisions on the same persons

    @property
    def val_false_positives(self) -> int:
        return int((self.badge & (self.is_commuter == 0)).sum())

    @property
    def val_negatives(self) -> int:
        return int((self.is_commuter == 0).sum())

    def val_against_truth(self) -> tuple[float, float]:
        """Validation false positives and negatives under the policy's label-noise assumption."""
        pos = self.is_commuter == 1
        return against_truth(
            self.val_false_positives,
            self.val_negatives,
            int((self.badge & pos).sum()),
            int(pos.sum()),
            self.policy.label_noise,
        )


@dataclass(frozen=True)
class Champion:
    """The current champion; `badge` on the candidate's validation persons, None if not scorable."""

    version: str
    policy: Policy | None  # None when the version carries no policy tags (then: not comparable)
    as_of: dt.date | None
    badge: np.ndarray | None
    why_not_scored: str = ""
    # Its one-sided lower bound on the FPR of the newest month's certifying persons (an audit,
    # with the audit's design: models/core/stratified.py `fpr_lower`); None: not measured.
    newest_fpr_lower: float | None = None
    newest_month: str = ""

    def breach_reason(self) -> str:
        return (
            f"champion v{self.version} breaches the target on month {self.newest_month}'s "
            f"audited persons (FPR lower bound {self.newest_fpr_lower:.4%}); recall not compared"
        )


@dataclass(frozen=True)
class Decision:
    gates: dict[str, Outcome]
    passed: bool  # every rule holds (a differing policy counts only with a stated reason)
    reasons: list[str]  # why not, in words; empty when passed
    figures: dict[str, float] = field(default_factory=dict)  # comparison numbers to log
    policy_change: str | None = None
    champion_breach: str = ""  # why the champion's recall was not compared, when it broke

    def summary(self) -> str:
        if not self.passed:
            return "; ".join(self.reasons)
        return "all promotion gates passed" + (
            f" ({self.champion_breach})" * bool(self.champion_breach)
        )


def mcnemar(candidate: np.ndarray, champion: np.ndarray) -> tuple[int, int, float, float]:
    """Discordant counts on the commuters and the two one-sided exact p-values.

    b = champion badges, candidate not; c = candidate badges, champion not. Under "equal recall"
    each discordant person is a fair coin, so b ~ Binomial(b + c, 1/2)."""
    candidate, champion = np.asarray(candidate, bool), np.asarray(champion, bool)
    b = int((champion & ~candidate).sum())
    c = int((candidate & ~champion).sum())
    if b + c == 0:
        return b, c, 1.0, 1.0
    p_worse = binomtest(b, b + c, 0.5, alternative="greater").pvalue
    p_better = binomtest(c, b + c, 0.5, alternative="greater").pvalue
    return b, c, float(p_worse), float(p_better)


def decide(
    cand: Candidate, champ: Champion | None, *, policy_change: str | None = None
) -> Decision:
    """Every rule's outcome for `cand` against `champ` (None: there is no champion)."""
    g: dict[str, Outcome] = {}
    reasons: list[str] = []
    figures: dict[str, float] = {}
    _own_rules(cand, g, reasons, figures)
    if champ is None:
        for name in GATES[2:]:
            g[name] = Outcome.SKIPPED
        return _decision(g, reasons, figures, None, policy_ok=True)

    same_policy = champ.policy == cand.policy
    g["policy_matches_champion"] = Outcome.of(same_policy)
    policy_ok = same_policy or bool(policy_change and policy_change.strip())
    if not same_policy:
        was = champ.policy.describe() if champ.policy else "unknown"
        if not policy_ok:
            reasons.append(
                f"policy differs from champion v{champ.version} ({cand.policy.describe()} vs "
                f"{was}); promote it with `commuter promote {cand.version} --policy-change "
                "REASON` if that is intended"
            )
        # Recall at two different FPR targets is no like-for-like comparison.
        g["recall_not_worse_than_champion"] = Outcome.SKIPPED
        g["newer_data_on_tie"] = Outcome.SKIPPED
        return _decision(g, reasons, figures, policy_change, policy_ok=policy_ok)
    if champion_broke(cand, champ, figures):
        # The champion breaks the promise on the newest population: recall beside it is no
        # argument for keeping it (issue 30); the candidate's own rules decide alone.
        g["recall_not_worse_than_champion"] = Outcome.SKIPPED
        g["newer_data_on_tie"] = Outcome.SKIPPED
        return _decision(g, reasons, figures, None, policy_ok=True, breach=champ.breach_reason())
    better = _recall_rule(cand, champ, g, reasons, figures)
    _newer_rule(cand, champ, g, reasons, better)
    return _decision(g, reasons, figures, None, policy_ok=True)


def _own_rules(cand: Candidate, g: dict, reasons: list, figures: dict) -> None:
    """certificate_holds and validation_consistent: the rules that need no champion."""
    target = cand.policy.target_fpr
    g["certificate_holds"] = Outcome.of(cand.cal_fpr_upper95 <= target)
    if not g["certificate_holds"]:
        reasons.append(f"certificate {cand.cal_fpr_upper95:.4%} above target {target:.4%}")
    k, n = cand.val_against_truth()
    lower = clopper_pearson_lower(k, round(n)) if cand.val_negatives else float("nan")
    figures["val_fpr_lower95"] = lower
    g["validation_consistent"] = Outcome.of(cand.val_negatives > 0 and lower <= target)
    if not g["validation_consistent"]:
        noise = cand.policy.label_noise
        counted = (
            f"{k:.1f}/{n:.0f} against the truth at label noise {noise:g} "
            f"({cand.val_false_positives}/{cand.val_negatives} against labels)"
            if noise > 0
            else f"{cand.val_false_positives}/{cand.val_negatives}"
        )
        reasons.append(
            f"validation FPR {counted} has 95% lower bound {lower:.4%} above target {target:.4%}"
        )


def champion_broke(cand: Candidate, champ: Champion, figures: dict) -> bool:
    """The champion's one-sided lower bound on the newest month's certifying persons (the
    candidate's audit) is above the target; False when it was not measured."""
    if champ.newest_fpr_lower is None:
        return False
    figures["champion_newest_fpr_lower95"] = champ.newest_fpr_lower
    return champ.newest_fpr_lower > cand.policy.target_fpr


def _recall_rule(cand: Candidate, champ: Champion, g: dict, reasons: list, figures: dict) -> bool:
    """McNemar on the commuters of the same validation persons; True when the candidate is
    shown better."""
    if champ.badge is None:
        g["recall_not_worse_than_champion"] = Outcome.SKIPPED
        return False
    pos = cand.is_commuter == 1
    b, c, p_worse, p_better = mcnemar(cand.badge[pos], champ.badge[pos])
    neg = cand.is_commuter == 0
    figures.update(
        {
            "champion_val_recall": float(champ.badge[pos].mean()) if pos.any() else np.nan,
            "champion_val_fpr": float(champ.badge[neg].mean()) if neg.any() else np.nan,
            "mcnemar_champion_only": b,
            "mcnemar_candidate_only": c,
            "mcnemar_p_worse": p_worse,
            "mcnemar_p_better": p_better,
        }
    )
    worse = p_worse < ALPHA
    g["recall_not_worse_than_champion"] = Outcome.of(not worse)
    if worse:
        reasons.append(
            f"recall worse than champion v{champ.version} on the same validation persons "
            f"(McNemar: {b} commuters only the champion badges, {c} only this one, "
            f"p={p_worse:.2g})"
        )
    return p_better < ALPHA


def _newer_rule(cand: Candidate, champ: Champion, g: dict, reasons: list, better: bool) -> None:
    """newer_data_on_tie: without shown better recall, the data must be newer."""
    if better:
        g["newer_data_on_tie"] = Outcome.SKIPPED
        return
    newer = champ.as_of is not None and cand.as_of > champ.as_of
    g["newer_data_on_tie"] = Outcome.of(newer)
    if not newer and g["recall_not_worse_than_champion"] is Outcome.FAILED:
        # not a tie: the recall reason above says what happened; only the data's age is added
        reasons.append(
            f"nor is the data newer (as_of {cand.as_of} vs {champ.as_of}), which a tie would need"
        )
    elif not newer:
        tie = "recall ties" if champ.badge is not None else "champion not comparable"
        reasons.append(
            f"{tie} with champion v{champ.version} and the data is not newer (as_of "
            f"{cand.as_of} vs {champ.as_of}): an identical retrain or a trial on the same "
            "month is not promoted"
        )


def _decision(g, reasons, figures, policy_change, *, policy_ok: bool, breach="") -> Decision:
    hard = [g[name] for name in GATES if name != "policy_matches_champion"]
    passed = policy_ok and not any(o is Outcome.FAILED for o in hard)
    passed = passed and bool(g["certificate_holds"]) and bool(g["validation_consistent"])
    return Decision(
        gates=g,
        passed=passed,
        reasons=[] if passed else reasons,
        figures=figures,
        policy_change=policy_change if policy_ok and policy_change else None,
        champion_breach=breach,
    )


def validation_above_target(
    metrics: dict, target: float, label_noise: float, certified_upper: float, prefix: str = "val_"
) -> str | None:
    """Words for a validation FPR (point) above the target, None when it is not.

    Not a gate: the certificate is the calibration persons' bound, and a model whose true FPR
    sits just under the target shows a validation FPR above it about half the time. What it
    means is said in the line (`commuter train` and `recertify` print it as a warning)."""
    fp, neg = metrics_against_truth(metrics, label_noise, prefix)
    if not neg or not fp / neg > target:
        return None
    lower = clopper_pearson_lower(fp, round(neg))
    figure = (
        f"{fp / neg:.2%} against the truth at label noise {label_noise:g} "
        f"({metrics[f'{prefix}fpr']:.2%} against labels)"
        if label_noise > 0
        else f"{fp / neg:.2%} (upper95 {metrics[f'{prefix}fpr_upper95']:.2%})"
    )
    if lower <= target:
        meaning = (
            f"within the certificate's risk: its 95% lower bound {lower:.2%} is not above the "
            "target, so these persons give no evidence against the certificate (gate "
            "validation_consistent), and a true FPR under the target shows above it on a "
            "validation sample this size by chance"
        )
    else:
        meaning = (
            f"evidence against the certificate: its 95% lower bound {lower:.2%} is above the "
            "target (gate validation_consistent fails)"
        )
    return (
        f"validation FPR {figure} is above the {target:.2%} target; {meaning}. The promise is "
        f"the certificate, the calibration persons' bound {certified_upper:.2%} at 95% "
        "confidence (a true FPR above the target in at most 5% of certifications). Watch the "
        "next month's `commuter monitor` estimated FPR and a `commuter audit` of its badges"
    )
