"""The reviewer's route through the MLflow UI, opened in a real browser.

Starts `mlflow ui` on a tracking store (by default a fresh one that a small simulated training
fills), opens every page the reviewers' guide (docs/guide/reviewers.md) names in headless
Chromium, checks that each page shows the names the guide promises (the UI is a React app: the DOM
is read after Chromium has let it run for a virtual-time budget), and saves a screenshot of each to docs/img/.

    .venv/bin/python tools/mlflow_ui_screenshots.py                  # train, check, screenshot
    .venv/bin/python tools/mlflow_ui_screenshots.py --no-screenshots --report out.json
    .venv/bin/python tools/mlflow_ui_screenshots.py --store .         # this directory's mlflow.db

Chromium comes from the system (`make chromium`: apt-get install chromium). Exit status 1 when a
page misses a promised name, so the guide's route cannot silently go stale.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.models.core.provenance import git_commit

ROOT = Path(__file__).resolve().parents[1]
AS_OF = dt.date(2021, 10, 20)
ML = "workflowType=machine_learning"  # MLflow 3 opens in GenAI mode; this is "Model training"


@dataclass(frozen=True)
class Page:
    name: str  # also the screenshot's file name
    route: str  # hash route, formatted with exp, run, baseline, version
    promises: tuple[str, ...]  # text the page must show
    readme: str  # how docs/guide/reviewers.md names this page (must appear in it)


PAGES = (
    Page(
        "home",
        f"#/?{ML}",
        ("Model training", "Experiments", "Model registry", "commuter-badge"),
        "`#/?workflowType=machine_learning`",
    ),
    Page(
        "experiment_runs",
        f"#/experiments/{{exp}}/runs?{ML}",
        ("lightgbm as_of=", "rule baseline as_of=", "commuter-badge v{version}"),
        "`#/experiments/<id>/runs`",
    ),
    Page(
        "model_registry",
        f"#/models?{ML}",
        ("commuter-badge", "champion", "Version {version}"),
        "`#/models`",
    ),
    Page(
        "model_version",
        f"#/models/commuter-badge/versions/{{version}}?{ML}",
        (
            "Source Run",
            "lightgbm as_of=",
            "champion",
            "Schema",
            f"Inputs ({len(FEATURE_NAMES)})",
            "Outputs (2)",
        ),
        "`#/models/commuter-badge/versions/<N>`",
    ),
    Page(
        "run_overview",
        f"#/experiments/{{exp}}/runs/{{run}}?{ML}",
        (
            "val_auc",
            "val_fpr_per10k",
            "cal_fpr_upper95_per10k",
            "input_digest_sha256",
            "trips-features-",
        ),
        "`#/experiments/<id>/runs/<run id>`",
    ),
    Page(
        "run_figures",
        "#/experiments/{exp}/runs/{run}/artifacts/figures/val_fpr_recall_vs_threshold.png?" + ML,
        (
            "val_calibration.png",
            "val_shap_summary.png",
            "val_slices.png",
            "feature_importance.png",
            "val_slices.json",
        ),
        "`#/experiments/<id>/runs/<run id>/artifacts`",
    ),
    Page(
        "compare_runs",
        '#/compare-runs?runs=["{run}","{baseline}"]&experiments=["{exp}"]&' + ML,
        ("Comparing 2 Runs", "cal_fpr_upper95_per10k", "rule baseline as_of="),
        "`#/compare-runs`",
    ),
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    sys.exit("no Chromium on PATH: run `make chromium` (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_small_store(directory: Path, persons: int) -> None:
    """A simulated month trained with the real pipeline into directory/mlflow.db; its artifacts
    go to directory/mlruns (MLflow roots them at the working directory when the store opens)."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{directory / 'mlflow.db'}"
    from commuter_badge.models.mlflow_edge import registry
    from commuter_badge.models.runs.train import TrainConfig, train
    from commuter_badge.simulate.world import simulate_world, write_world

    before = Path.cwd()
    os.chdir(directory)
    try:
        registry.configure(os.environ["MLFLOW_TRACKING_URI"])
        paths = write_world(simulate_world(persons, AS_OF, seed=3), directory / "world")
        train(paths["trips"], paths["labels"], AS_OF, TrainConfig(num_threads=1))
    finally:
        os.chdir(before)


def route_values(uri: str) -> dict[str, str]:
    """The ids the routes need: experiment, latest model run, its baseline, champion version."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.get_experiment_by_name("commuter-badge")
    if exp is None:
        sys.exit(f"{uri}: no experiment 'commuter-badge'; run `commuter train` first")
    newest = ["attributes.start_time DESC"]
    run = client.search_runs([exp.experiment_id], "tags.kind = 'model'", order_by=newest)[0]
    digest = run.data.tags.get("input_digest", "")
    baseline = client.search_runs(
        [exp.experiment_id],
        f"tags.kind = 'baseline' and tags.input_digest = '{digest}'",
        order_by=newest,
    )[0]
    return {
        "exp": exp.experiment_id,
        "run": run.info.run_id,
        "baseline": baseline.info.run_id,
        "version": run.data.tags.get("registered_version", "1"),
    }


class MlflowUi:
    """`mlflow ui` on 127.0.0.1, one worker (a shared 2-core machine), stopped on exit."""

    def __init__(self, uri: str, log: Path, timeout: float = 600) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        mlflow = Path(sys.executable).with_name("mlflow")
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [
                str(mlflow),
                "ui",
                "--backend-store-uri",
                uri,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            # MLflow's job runner (Huey consumers for GenAI judges) serves none of these pages.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            cwd=Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:") else None,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow ui exited ({self.proc.returncode}); see {log}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(1)
        self.stop()
        raise RuntimeError(f"mlflow ui did not answer /health within {timeout:.0f} s; see {log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
        self.log.close()


def page_text(dom: str) -> str:
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)))


def browse(url: str, profile: Path, budget_ms: int, screenshot: Path | None = None) -> str:
    """The page's DOM after `budget_ms` of virtual time; a screenshot too when asked."""
    base = [
        chromium(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--window-size=1440,1000",
        f"--virtual-time-budget={budget_ms}",
    ]
    dom = subprocess.run(
        [*base, "--dump-dom", url], capture_output=True, text=True, timeout=180, check=False
    ).stdout
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [*base, f"--screenshot={screenshot}", url],
            capture_output=True,
            timeout=180,
            check=False,
        )
    return dom


def check_route(uri: str, out_dir: Path | None, budget_ms: int = 20_000) -> list[dict]:
    """Open every page on a running `mlflow ui`; one result per page (missing names listed)."""
    values = route_values(uri)
    results = []
    with tempfile.TemporaryDirectory(prefix="mlflow-ui-route-") as tmp:
        ui = MlflowUi(uri, Path(tmp) / "mlflow-ui.log")
        try:
            for page in PAGES:
                url = f"{ui.url}/{page.route.format(**values)}"
                shot = out_dir / f"mlflow_{page.name}.png" if out_dir else None
                promises = [p.format(**values) for p in page.promises]
                text = ""
                for attempt in range(2):  # a loaded machine may need a longer budget once
                    text = page_text(
                        browse(url, Path(tmp) / "profile", budget_ms * (attempt + 1), shot)
                    )
                    missing = [p for p in promises if p not in text]
                    if not missing:
                        break
                results.append(
                    {
                        "page": page.name,
                        "url": url,
                        "readme": page.readme,
                        "promises": promises,
                        "missing": missing,
                        "screenshot": str(shot) if shot else "",
                    }
                )
        finally:
            ui.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", type=Path, help="directory holding mlflow.db (default: train a fresh one)"
    )
    parser.add_argument("--persons", type=int, default=6_000, help="size of the fresh world")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--no-screenshots", action="store_true")
    parser.add_argument("--report", type=Path, help="write the results as JSON")
    parser.add_argument(
        "--allow-dirty", action="store_true", help="take screenshots from a tree with changes"
    )
    args = parser.parse_args(argv)
    commit = git_commit()
    if not args.no_screenshots and commit.endswith("+dirty") and not args.allow_dirty:
        print("refusing to take screenshots from a tree with changes: the model version page")
        print("would show a code version ending +dirty; commit first (or pass --allow-dirty)")
        return 2
    with tempfile.TemporaryDirectory(prefix="mlflow-ui-store-") as tmp:
        store = args.store.resolve() if args.store else Path(tmp)
        if args.store is None:
            print(f"training a {args.persons:,}-person world into {store}", flush=True)
            train_small_store(store, args.persons)
        uri = f"sqlite:///{store / 'mlflow.db'}"
        results = check_route(uri, None if args.no_screenshots else args.out)
    for r in results:
        status = "ok" if not r["missing"] else f"MISSING {r['missing']}"
        print(f"{r['page']:16s} {status:10s} {r['url']}")
    if args.report:
        args.report.write_text(json.dumps(results, indent=2))
    failed = any(r["missing"] for r in results)
    if not args.no_screenshots and not failed:
        write_manifest(args.out / MANIFEST, commit)
    return 1 if failed else 0


MANIFEST = "mlflow_screenshots.json"


def write_manifest(path: Path, commit: str) -> None:
    """What the committed screenshots show, so a test fails once the code no longer matches them."""
    manifest = {
        "taken": dt.date.today().isoformat(),
        "commit": commit,
        "features": len(FEATURE_NAMES),
        "pages": [page.name for page in PAGES],
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
