"""Two trainings side by side, for `commuter compare`: headline metrics, slices and gates.

MLflow's own compare page rounds every metric to three decimals, so a certificate of 0.9849% and
the 1% target both read "0.01" there. Here every number is shown at full precision (the shortest
decimal that round-trips the logged float) and every rate also per 10,000 persons. Either side may
be a run id or a registered version (`3`, `v3`, `models:/commuter-badge/3`,
`models:/commuter-badge@champion`). The comparison is plain data (`Comparison`); rendering it as
markdown or HTML is here too, the terminal table is the command's.

Each run's figures are on its own persons: a training's validation persons follow from its data,
its split seed and shares, an evaluation's from its month. When those differ between the sides
(`persons_caveat`), every difference in the table mixes the two models with the two months.
`compare_on_month` scores both versions on one labelled month instead (`eval_` figures on the same
persons, through the same metrics as `commuter evaluate`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import re
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from commuter_badge.errors import UserError
from commuter_badge.features.workdays import LIBRARY_CALENDAR, WorkingCalendar
from commuter_badge.settings import MODEL_NAME

# (name without prefix, is a rate) in the order a reviewer reads them.
HEADLINE = (
    ("auc", False),
    ("pr_auc", False),
    ("brier", False),
    ("threshold", False),
    ("target_fpr", True),
    ("cal_fpr", True),
    ("cal_fpr_upper95", True),
    ("cal_negatives", False),
    ("fpr", True),
    ("fpr_upper95", True),
    ("recall", True),
    ("precision", True),
    ("false_positives", False),
    ("false_negatives", False),
    ("n_neg", False),
    ("n_pos", False),
    ("true_fpr", True),
    ("true_recall", True),
    ("suspected_noise_rate", True),
    ("baseline_val_recall", True),
    ("baseline_val_fpr", True),
    ("champion_val_recall", True),
    ("best_iteration", False),
)
UNPREFIXED = {
    "threshold",
    "target_fpr",
    "cal_fpr",
    "cal_fpr_upper95",
    "cal_negatives",
    "baseline_val_recall",
    "baseline_val_fpr",
    "champion_val_recall",
    "best_iteration",
}
FEW = 30  # fewer labelled persons than this behind a slice rate: counts, not a rate
VERSION_REF = re.compile(r"v?(\d+)")
MODELS_REF = re.compile(r"models:/([^/@]+)(?:/(\d+)|@(.+))")


class CompareError(UserError):
    """A side of the comparison names no run or model version in this store."""


@dataclass(frozen=True)
class Side:
    ref: str  # as given on the command line
    run_id: str
    version: str  # registered version, '' when the run registered none
    run_name: str
    prefix: str  # "val_" for training runs, "eval_" for evaluation runs
    metrics: dict
    tags: dict
    slices: pd.DataFrame
    params: dict = field(default_factory=dict)
    scored_on: str = ""  # the labelled month both were scored on (compare_on_month), else ''
    persons_digest: str = ""  # of the scored persons' ids (compare_on_month), else ''

    @property
    def label(self) -> str:
        return f"v{self.version}" if self.version else f"run {self.run_id[:8]}"


@dataclass(frozen=True)
class Comparison:
    a: Side
    b: Side
    headline: pd.DataFrame  # metric, a, b, delta, a_per10k, b_per10k, delta_per10k
    slices: pd.DataFrame  # slice, value, n_a, n_b, fpr_a, fpr_b, ..., as text where few
    gates: pd.DataFrame  # gate, a, b


def _version_of(client: MlflowClient, ref: str) -> str | None:
    if m := VERSION_REF.fullmatch(ref):
        return m.group(1)
    if m := MODELS_REF.fullmatch(ref):
        name, number, alias = m.groups()
        if name != MODEL_NAME:
            raise CompareError(f"{ref}: registered model is {MODEL_NAME!r}, not {name!r}")
        if number:
            return number
        try:
            return str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            raise CompareError(f"{ref}: no version of {name} has alias {alias!r}") from None
    return None


def resolve(ref: str, client: MlflowClient | None = None) -> tuple[str, str]:
    """(run id, registered version or '') for a run id or a version reference."""
    client = client or MlflowClient()
    version = _version_of(client, ref.strip())
    if version is not None:
        try:
            return client.get_model_version(MODEL_NAME, version).run_id, version
        except MlflowException:
            raise CompareError(
                f"{ref}: no version {version} of registered model {MODEL_NAME} in "
                f"{mlflow.get_tracking_uri()}; `commuter` lists none there under that number"
            ) from None
    try:
        run = client.get_run(ref.strip())
    except MlflowException:
        raise CompareError(
            f"{ref!r} is neither a run id nor a model version in {mlflow.get_tracking_uri()}; "
            f"pass a run id, a version (3, v3) or models:/{MODEL_NAME}/3"
        ) from None
    return run.info.run_id, run.data.tags.get("registered_version", "")


def _slices(client: MlflowClient, run_id: str, prefix: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory(prefix="commuter-compare-") as tmp:
        try:
            path = client.download_artifacts(run_id, f"{prefix}slices.json", tmp)
        except (MlflowException, OSError):
            return pd.DataFrame()
        table = json.loads(Path(path).read_text())
    return pd.DataFrame(table["data"], columns=table["columns"])


def load_side(ref: str, client: MlflowClient | None = None) -> Side:
    client = client or MlflowClient()
    run_id, version = resolve(ref, client)
    run = client.get_run(run_id)
    metrics = run.data.metrics
    prefix = "eval_" if "eval_auc" in metrics and "val_auc" not in metrics else "val_"
    return Side(
        ref=ref,
        run_id=run_id,
        version=version,
        run_name=run.info.run_name or "",
        prefix=prefix,
        metrics=dict(metrics),
        tags=dict(run.data.tags),
        slices=_slices(client, run_id, prefix),
        params=dict(run.data.params),
    )


def _value(side: Side, name: str) -> float | None:
    key = name if name in UNPREFIXED else f"{side.prefix}{name}"
    return side.metrics.get(key)


def _delta(a, b):
    return None if a is None or b is None else b - a


def headline(a: Side, b: Side) -> pd.DataFrame:
    rows = []
    for name, rate in HEADLINE:
        va, vb = _value(a, name), _value(b, name)
        if va is None and vb is None:
            continue
        row = {"metric": name, "a": va, "b": vb, "delta": _delta(va, vb)}
        if rate:
            row.update(
                a_per10k=None if va is None else va * 1e4,
                b_per10k=None if vb is None else vb * 1e4,
                delta_per10k=None if row["delta"] is None else row["delta"] * 1e4,
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _rate_text(row, rate: str, n_col: str, k_col: str) -> str:
    """A slice rate per 10,000, or 'k/n' counts when fewer than FEW persons carry it."""
    if pd.isna(row.get(n_col)):
        return ""
    n = int(row[n_col])
    events = int(row[k_col]) if rate == "fpr" else n - int(row[k_col])
    if n < FEW:
        return f"{events}/{n}"
    return f"{row[rate] * 1e4:.2f}"


def slice_deltas(a: Side, b: Side) -> pd.DataFrame:
    """One row per slice value in either run: sizes, FPR and recall per 10,000 and their change."""
    if a.slices.empty and b.slices.empty:
        return pd.DataFrame()
    keys = ["slice", "value"]
    merged = pd.merge(a.slices, b.slices, on=keys, how="outer", suffixes=("_a", "_b"))
    rows = []
    for _, r in merged.sort_values(keys).iterrows():
        out = {"slice": r["slice"], "value": r["value"]}
        for side in ("a", "b"):
            n = r.get(f"n_{side}")
            out[f"n_{side}"] = "" if pd.isna(n) else int(n)
        for rate, n_col, k_col in (
            ("fpr", "n_neg", "false_positives"),
            ("recall", "n_pos", "false_negatives"),
        ):
            parts = {}
            for side in ("a", "b"):
                sided = {
                    c.removesuffix(f"_{side}"): r[c] for c in r.index if c.endswith(f"_{side}")
                }
                parts[side] = _rate_text(sided, rate, n_col, k_col)
                out[f"{rate}_per10k_{side}"] = parts[side]
            both = all(
                not pd.isna(r.get(f"{n_col}_{s}")) and r.get(f"{n_col}_{s}") >= FEW
                for s in ("a", "b")
            )
            out[f"{rate}_delta_per10k"] = (
                f"{(r[f'{rate}_b'] - r[f'{rate}_a']) * 1e4:+.2f}" if both else ""
            )
        rows.append(out)
    return pd.DataFrame(rows)


def gates(a: Side, b: Side) -> pd.DataFrame:
    names = sorted({k for s in (a, b) for k in s.tags if k.startswith("gate.")})
    names += [k for k in ("gates_passed", "promoted", "promotion_decision", "previous_champion")]
    rows = [
        {"gate": k.removeprefix("gate."), "a": a.tags.get(k, ""), "b": b.tags.get(k, "")}
        for k in names
        if k in a.tags or k in b.tags
    ]
    return pd.DataFrame(rows, columns=["gate", "a", "b"])


def compare(ref_a: str, ref_b: str, client: MlflowClient | None = None) -> Comparison:
    client = client or MlflowClient()
    a, b = load_side(ref_a, client), load_side(ref_b, client)
    return Comparison(a, b, headline(a, b), slice_deltas(a, b), gates(a, b))


# What decides a run's persons: (where it is kept, name, what to call it in the caveat).
PERSONS_KEYS = (
    ("tags", "as_of", "as_of"),
    ("tags", "input_digest", "input data (digest)"),
    ("params", "seed", "split seed"),
    ("params", "share_fit", "share_fit"),
    ("params", "share_early_stop", "share_early_stop"),
    ("params", "split", "split"),
)


def persons_caveat(cmp: Comparison) -> str | None:
    """Why the two sides' figures are on different persons, in words; None when they are not."""
    a, b = cmp.a, cmp.b
    if a.scored_on or b.scored_on:
        if a.persons_digest == b.persons_digest:
            return None
        return (
            f"the two versions' windows ({a.tags.get('window_days', '?')} and "
            f"{b.tags.get('window_days', '?')} days) give different sets of labelled persons with "
            f"crossings ({int(a.metrics['eval_n_pos'] + a.metrics['eval_n_neg']):,} and "
            f"{int(b.metrics['eval_n_pos'] + b.metrics['eval_n_neg']):,}): the figures are not "
            "on exactly the same persons"
        )
    differ = []
    if a.prefix != b.prefix:
        differ.append(f"{a.prefix}* vs {b.prefix}* figures (validation vs evaluation persons)")
    for where, key, name in PERSONS_KEYS:
        va, vb = getattr(a, where).get(key), getattr(b, where).get(key)
        if va != vb:
            shown = (
                f"{(va or '?')[:12]} vs {(vb or '?')[:12]}"
                if key == "input_digest"
                else f"{va} vs {vb}"
            )
            differ.append(f"{name} {shown}")
    if not differ:
        return None
    return (
        f"{a.label} and {b.label} were measured on different persons ({'; '.join(differ)}), so "
        "each difference below mixes the two models with the two sets of persons (a month's "
        "figures move by chance and with its calendar). To compare the models on the same "
        f"persons, score both on one labelled month: commuter compare {a.ref} {b.ref} --trips "
        "TRIPS --labels LABELS --as-of DATE"
    )


def _scored_side(
    ref: str, trips, labels, as_of: dt.date, client: MlflowClient, calendar: WorkingCalendar
) -> tuple[Side, pd.DataFrame]:
    """A registered version scored on a labelled month: `eval_` figures as `commuter evaluate`
    computes them (without logging), with the version's certificate and gates beside them."""
    from commuter_badge.models.core.data import labelled_features, refuse_weights
    from commuter_badge.models.core.metrics import review_metrics, truth_metrics
    from commuter_badge.models.mlflow_edge import registry

    run_id, version = resolve(ref, client)
    if not version:
        raise CompareError(
            f"{ref}: run {run_id} registered no model version; on a labelled month compare two "
            "versions (3, v3, models:/commuter-badge/3)"
        )
    model = registry.load_model(f"models:/{MODEL_NAME}/{version}")
    labelled = labelled_features(trips, labels, as_of, model.meta.window_days, calendar=calendar)
    refuse_weights(labelled, "compare")
    frame = labelled.frame.copy()
    frame["proba"] = model.predict_proba(frame)
    metrics, slices = review_metrics("eval_", frame, model.threshold, model.target_fpr)
    metrics.update(truth_metrics("eval_", frame, model.threshold))
    run = client.get_run(run_id)
    for key in ("cal_fpr", "cal_fpr_upper95", "cal_negatives"):  # the version's certificate
        if key in run.data.metrics:
            metrics[key] = run.data.metrics[key]
    ids = "\n".join(sorted(frame["person_id"].astype(str)))
    side = Side(
        ref=ref,
        run_id=run_id,
        version=version,
        run_name=run.info.run_name or "",
        prefix="eval_",
        metrics=metrics,
        tags={**run.data.tags, "window_days": str(model.meta.window_days)},
        slices=slices,
        params=dict(run.data.params),
        scored_on=f"{labels} as_of {as_of} ({len(frame):,} labelled persons with crossings)",
        persons_digest=hashlib.sha256(ids.encode()).hexdigest(),
    )
    return side, frame


def compare_on_month(
    ref_a: str,
    ref_b: str,
    trips,
    labels,
    as_of: dt.date,
    client: MlflowClient | None = None,
    calendar: WorkingCalendar = LIBRARY_CALENDAR,
) -> Comparison:
    """Both versions scored on the same labelled month (`commuter compare A B --trips --labels
    --as-of`) under the working-day `calendar`: the differences are the models', not the
    months'."""
    client = client or MlflowClient()
    a, _ = _scored_side(ref_a, trips, labels, as_of, client, calendar)
    b, _ = _scored_side(ref_b, trips, labels, as_of, client, calendar)
    return Comparison(a, b, headline(a, b), slice_deltas(a, b), gates(a, b))


def full(value) -> str:
    """Full precision: integers as integers, floats as the shortest repr that round-trips."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value)) if isinstance(value, float) else str(value)


def per10k_text(value, signed: bool = False) -> str:
    if value is None or pd.isna(value):
        return ""
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def headline_rows(cmp: Comparison) -> list[list[str]]:
    """The headline table as text cells: metric, A, B, B - A, A/10k, B/10k, (B - A)/10k."""
    rows = []
    for r in cmp.headline.to_dict("records"):
        rows.append(
            [
                r["metric"],
                full(r["a"]),
                full(r["b"]),
                full(r["delta"]),
                per10k_text(r.get("a_per10k")),
                per10k_text(r.get("b_per10k")),
                per10k_text(r.get("delta_per10k"), signed=True),
            ]
        )
    return rows


def headline_columns(cmp: Comparison) -> list[str]:
    a, b = cmp.a.label, cmp.b.label
    return ["metric", a, b, f"{b} − {a}", f"{a} per 10k", f"{b} per 10k", "Δ per 10k"]


def slice_columns(cmp: Comparison) -> list[str]:
    a, b = cmp.a.label, cmp.b.label
    return [
        "slice",
        "value",
        f"n {a}",
        f"n {b}",
        f"FPR/10k {a}",
        f"FPR/10k {b}",
        "Δ FPR/10k",
        f"recall/10k {a}",
        f"recall/10k {b}",
        "Δ recall/10k",
    ]


def slice_rows(cmp: Comparison) -> list[list[str]]:
    order = [
        "slice",
        "value",
        "n_a",
        "n_b",
        "fpr_per10k_a",
        "fpr_per10k_b",
        "fpr_delta_per10k",
        "recall_per10k_a",
        "recall_per10k_b",
        "recall_delta_per10k",
    ]
    if cmp.slices.empty:
        return []
    return [[str(r[c]) for c in order] for r in cmp.slices.to_dict("records")]


LONG_GATES = ("promotion_decision",)  # sentences: printed under the table, not in it


def gate_rows(cmp: Comparison) -> list[list[str]]:
    """The gates table's rows: the short outcomes (True/False/skipped, versions)."""
    return [
        [r["gate"], r["a"], r["b"]]
        for r in cmp.gates.to_dict("records")
        if r["gate"] not in LONG_GATES
    ]


def decision_lines(cmp: Comparison, width: int = 100) -> list[str]:
    """Each side's promotion decision in words, wrapped (it runs to a few hundred characters)."""
    rows = cmp.gates.set_index("gate") if not cmp.gates.empty else None
    lines = []
    for side, col in ((cmp.a, "a"), (cmp.b, "b")):
        text = (
            rows.loc["promotion_decision", col]
            if rows is not None and "promotion_decision" in rows.index
            else ""
        )
        if text:
            lines.append(
                textwrap.fill(
                    f"{side.label} promotion decision: {text}",
                    width=width,
                    subsequent_indent="    ",
                    break_on_hyphens=False,
                )
            )
    return lines


def sides_text(cmp: Comparison) -> list[str]:
    return [
        f"{s.label}: run {s.run_id} ({s.run_name}), as_of {s.tags.get('as_of', '?')}, "
        f"given as {s.ref!r}" + (f"; scored on {s.scored_on}" if s.scored_on else "")
        for s in (cmp.a, cmp.b)
    ]


HEADLINE_NOTE = (
    "Values at full precision; 'per 10k' columns give the rates (target_fpr, FPR, recall, "
    "precision, ...) per 10,000 persons of the class they count: FPR per 10,000 labelled "
    "non-commuters, recall per 10,000 labelled commuters."
)
NOTE = (
    "FPR/10k: false positives per 10,000 labelled non-commuters of the slice; recall/10k: "
    "commuters with a badge per 10,000 labelled commuters. Where fewer than "
    f"{FEW} labelled persons carry a rate it is shown as counts k/n instead, and gets no delta: "
    "for FPR, k false positives of n labelled non-commuters; for recall, k badged of n labelled "
    "commuters (so '0/0' means the slice has none of that class)."
)


def _md_table(columns: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, columns)) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def to_markdown(cmp: Comparison) -> str:
    parts = [f"# {cmp.a.label} vs {cmp.b.label}", "", *[f"- {t}" for t in sides_text(cmp)], ""]
    if caveat := persons_caveat(cmp):
        parts += [f"> **Different persons.** {caveat}", ""]
    parts += ["## Headline metrics", "", HEADLINE_NOTE, ""]
    parts += [_md_table(headline_columns(cmp), headline_rows(cmp)), ""]
    parts += ["## Gates", "", _md_table(["gate", cmp.a.label, cmp.b.label], gate_rows(cmp)), ""]
    parts += [*[f"- {' '.join(t.split())}" for t in decision_lines(cmp)], ""]
    if not cmp.slices.empty:
        parts += ["## Slices", "", NOTE, "", _md_table(slice_columns(cmp), slice_rows(cmp)), ""]
    return "\n".join(parts)


def _html_table(columns: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(cmp: Comparison) -> str:
    title = html.escape(f"{cmp.a.label} vs {cmp.b.label}")
    sides = "".join(f"<li>{html.escape(t)}</li>" for t in sides_text(cmp))
    style = (
        "body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right;font-variant-numeric:"
        "tabular-nums}td:first-child,th:first-child{text-align:left}"
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>",
        f"<style>{style}</style></head><body><h1>{title}</h1><ul>{sides}</ul>",
    ]
    if caveat := persons_caveat(cmp):
        parts.append(f"<p><strong>Different persons.</strong> {html.escape(caveat)}</p>")
    parts += [
        f"<h2>Headline metrics</h2><p>{html.escape(HEADLINE_NOTE)}</p>",
        _html_table(headline_columns(cmp), headline_rows(cmp)),
        "<h2>Gates</h2>",
        _html_table(["gate", cmp.a.label, cmp.b.label], gate_rows(cmp)),
        *[f"<p>{html.escape(' '.join(t.split()))}</p>" for t in decision_lines(cmp)],
    ]
    if not cmp.slices.empty:
        parts += [
            f"<h2>Slices</h2><p>{html.escape(NOTE)}</p>",
            _html_table(slice_columns(cmp), slice_rows(cmp)),
        ]
    parts.append("</body></html>")
    return "".join(parts)


def output_format(path: str | Path) -> str:
    """'html' for .html/.htm, 'md' for .md; anything else is refused before any work is done."""
    suffix = Path(path).suffix.lower()
    if suffix in (".html", ".htm"):
        return "html"
    if suffix == ".md":
        return "md"
    raise CompareError(f"--out {path}: write a .md or .html file")


def render(cmp: Comparison, path: str | Path) -> str:
    """Markdown for .md, HTML for .html/.htm (by extension)."""
    return to_html(cmp) if output_format(path) == "html" else to_markdown(cmp)
