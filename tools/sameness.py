"""Are two trainings and scorings the same? `python tools/sameness.py BEFORE AFTER`.

BEFORE and AFTER are each `TRACKING_URI,SCORES[,FEATURES]`: an MLflow tracking store and the
`commuter score` (and optionally `commuter features`) output of the same command line run on two
versions of the code. Checked with exact equality (NaN equals NaN): every feature column and row,
every person's probability, badge and threshold, and, run by run (matched by kind and run name),
every param and the full history of every metric. Prints what differs and exits 1 if anything does.

How a refactoring is shown to change nothing (issue 28): on the untouched commit and after the
change, the same `commuter simulate`, `commuter train ... --param num_threads=1` (deterministic),
`commuter features` and `commuter score`, each training into its own tracking store.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

KEY = "person_id"


def _same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def compare_frames(name: str, before: Path, after: Path) -> list[str]:
    """Differences between two tables of persons, exact, rows matched by person id."""
    a = pd.read_parquet(before).sort_values(KEY).reset_index(drop=True)
    b = pd.read_parquet(after).sort_values(KEY).reset_index(drop=True)
    if list(a.columns) != list(b.columns):
        return [f"{name}: columns differ: {list(a.columns)} vs {list(b.columns)}"]
    if len(a) != len(b) or not a[KEY].equals(b[KEY]):
        return [f"{name}: persons differ ({len(a)} vs {len(b)} rows)"]
    out = []
    for column in a.columns:
        x, y = a[column], b[column]
        same = (x == y) | (x.isna() & y.isna())
        if x.dtype != y.dtype or not bool(same.all()):
            out.append(f"{name}: column {column} differs in {int((~same).sum())} rows")
    print(f"{name}: {len(a):,} rows x {len(a.columns)} columns compared")
    return out


def _runs(uri: str) -> dict[tuple[str, str], object]:
    client = MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = {}
    for run in client.search_runs(experiments, max_results=1000):
        key = (run.data.tags.get("kind", ""), run.data.tags.get("mlflow.runName", ""))
        if key in runs:
            raise SystemExit(f"{uri}: two runs named {key}; give each side one training")
        runs[key] = run
    return runs


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def compare_runs(before: str, after: str) -> list[str]:
    """Differences between the runs of two stores: params and every metric's full history."""
    a, b = _runs(before), _runs(after)
    if set(a) != set(b):
        return [f"runs differ: {sorted(a)} vs {sorted(b)}"]
    ca, cb = MlflowClient(tracking_uri=before), MlflowClient(tracking_uri=after)
    out, n_metrics = [], 0
    for key in sorted(a):
        ra, rb = a[key], b[key]
        if ra.data.params != rb.data.params:
            diff = {
                k
                for k in ra.data.params.keys() | rb.data.params.keys()
                if ra.data.params.get(k) != rb.data.params.get(k)
            }
            out.append(f"run {key}: params differ: {sorted(diff)}")
        if set(ra.data.metrics) != set(rb.data.metrics):
            out.append(f"run {key}: metric names differ")
            continue
        for name in sorted(ra.data.metrics):
            ha, hb = _history(ca, ra.info.run_id, name), _history(cb, rb.info.run_id, name)
            n_metrics += 1
            if len(ha) != len(hb) or not all(
                sa == sb and _same_value(va, vb) for (sa, va), (sb, vb) in zip(ha, hb, strict=True)
            ):
                out.append(f"run {key}: metric {name} differs: {ha[-3:]} vs {hb[-3:]}")
    print(f"runs: {len(a)} runs, {n_metrics} metrics (full histories) and their params compared")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    (uri_a, scores_a, *features_a), (uri_b, scores_b, *features_b) = (s.split(",") for s in argv)
    problems = compare_runs(uri_a, uri_b)
    problems += compare_frames("scores", Path(scores_a), Path(scores_b))
    if features_a and features_b:
        problems += compare_frames("features", Path(features_a[0]), Path(features_b[0]))
    for line in problems:
        print("DIFFERS", line)
    print("identical" if not problems else f"{len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
