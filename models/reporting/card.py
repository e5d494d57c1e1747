"""The words a version carries: its registry description and its model card (markdown artifact).

Both are built from numbers the training already has, so they cannot drift from the metrics. The
card answers what a reviewer asks before trusting a version: what is it for, on which data, what
does it certify, where is it weaker, whom does it get wrong, and how to undo it.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from commuter_badge.models.core.months import certificate_words

MOST_IMPORTANT = 3  # features shown when describing whom the model gets wrong


def _pct(x: object) -> str:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if value != value else f"{value:.2%}"  # NaN: no person of that class


def version_description(tags: dict, decision: str) -> str:
    """One paragraph for the Models page; a version that failed its gates says so first."""
    head = (
        "GATES FAILED, not promotable. "
        if tags.get("gates_passed") == "False"
        else "Gates passed. "
        if tags.get("gates_passed") == "True"
        else ""
    )
    return (
        f"{head}Commuter badge model trained on data up to {tags.get('as_of', '?')} "
        f"({tags.get('window_days', '?')}-day window). Policy: target FPR "
        f"{_pct(tags.get('target_fpr'))} at {tags.get('confidence', '?')} confidence; certified "
        f"FPR upper bound {_pct(tags.get('cal_fpr_upper95'))} on calibration persons. "
        f"Validation: recall {_pct(tags.get('val_recall'))}, FPR {_pct(tags.get('val_fpr'))}. "
        f"Code {tags.get('package_version', '?')} at {tags.get('git_commit', 'unknown')}. "
        f"Decision: {decision}"
    )


def _errors_table(val: pd.DataFrame, column: str, wrong: pd.Series, base: pd.Series) -> str:
    rows = []
    for value, part in val[base].groupby(column, sort=True):
        n_wrong = int(wrong[part.index].sum())
        if n_wrong:
            rows.append((str(value) or "(empty)", n_wrong, len(part), n_wrong / len(part)))
    rows.sort(key=lambda r: -r[1])
    lines = [f"| {column} | wrong | of (same label) | share |", "|---|---|---|---|"]
    lines += [f"| {v} | {w} | {n} | {s:.2%} |" for v, w, n, s in rows[:6]]
    return "\n".join(lines) if rows else "(none)"


def _typical(val: pd.DataFrame, mask: pd.Series, features: list[str]) -> str:
    if not mask.any():
        return "n/a"
    med = val.loc[mask, features].astype("float64").median()
    return ", ".join(f"{f} {med[f]:.3g}" for f in features)


def model_card(
    *,
    version: str,
    as_of: dt.date,
    config: dict,
    metrics: dict[str, float],
    certificate: dict[str, float],
    slices: pd.DataFrame,
    val: pd.DataFrame,
    importance: dict[str, float],
    digest: str,
    code: dict,
    decision: str,
) -> str:
    """Markdown: intended use, data window, certificate, slices, errors, rollback."""
    window_start = as_of - dt.timedelta(days=int(config["window_days"]))
    y = val["is_commuter"].astype(int)
    badge = val["badge"].astype(bool)
    fp, fn = badge & (y == 0), ~badge & (y == 1)
    top = sorted(importance, key=lambda k: -importance[k])[:MOST_IMPORTANT]
    slice_lines = ["| slice | value | n | FPR | recall |", "|---|---|---|---|---|"]
    for row in slices.itertuples() if len(slices) else []:
        slice_lines.append(
            f"| {row.slice} | {row.value} | {row.n} | {_pct(row.fpr)} | {_pct(row.recall)} |"
        )
    kinds = [c for c in ("archetype", "main_mode", "main_region") if c in val.columns]
    wrong_fp = "\n\n".join(_errors_table(val, c, fp, y == 0) for c in kinds[:2])
    wrong_fn = "\n\n".join(_errors_table(val, c, fn, y == 1) for c in kinds[:2])
    return f"""# Model card: commuter-badge version {version}

## Intended use
Decides whether a person is a regular cross-city commuter into Beijing from their boundary
crossings in the {config["window_days"]} days before `as_of`, so the badge issuer can spare them
checkpoint paperwork. The decision is a badge at a threshold chosen so that at most
{_pct(config["target_fpr"])} of non-commuters get one ({config["confidence"]:g} confidence).
Not for: judging individuals beyond the badge, other cities, windows other than
{config["window_days"]} days, or months the calendar does not cover. Labels are noisy (a few
percent wrong both ways); every rate below is against those labels.

## Data window
Trained on crossings from {window_start} to {as_of - dt.timedelta(days=1)} (Asia/Shanghai),
`as_of` {as_of}; input digest `{digest}`. Code: commuter-badge {code.get("package_version", "?")}
at commit {code.get("git_commit") or "unknown"}.

## Certificate
Threshold {metrics["threshold"]:.6f}: one-sided {config["confidence"]:g} upper bound on the FPR
**{_pct(certificate["cal_fpr_upper95"])}** (empirical {_pct(certificate["cal_fpr"])}); certified
by {certificate_words(certificate, as_of, config["confidence"])}.
Validation (persons used neither to fit nor to calibrate): FPR {_pct(metrics["val_fpr"])}
(upper95 {_pct(metrics["val_fpr_upper95"])}), recall {_pct(metrics["val_recall"])}, precision
{_pct(metrics["val_precision"])}, AUC {metrics["val_auc"]:.4f}.

Promotion decision: {decision}

## Slices (validation)
{chr(10).join(slice_lines)}

## Whom it gets wrong (validation)
Against the (noisy) labels: a "non-commuter" with a badge may be a mislabelled commuter.

Non-commuters given a badge: {int(fp.sum())} of {int((y == 0).sum())}; typical
{_typical(val, fp, top)} (all non-commuters: {_typical(val, y == 0, top)}).

{wrong_fp}

Commuters missed: {int(fn.sum())} of {int((y == 1).sum())}; typical {_typical(val, fn, top)}
(all commuters: {_typical(val, y == 1, top)}). Missed commuters can ask for a manual review.

{wrong_fn}

## How to roll back
`commuter rollback` moves the `champion` alias back to the previous champion (recorded on both
versions); `commuter rollback --to VERSION` to a named one. Restart (or rolling-restart) the
service to serve it. `commuter promote {version}` restores this version through the gates.
"""
