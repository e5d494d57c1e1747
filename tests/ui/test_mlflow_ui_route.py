"""The reviewers' route through the MLflow UI (docs/guide/reviewers.md), in a real browser: every
page it names opens and shows the names it promises (tools/mlflow_ui_screenshots.py, on a store a small training filled)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def load_tool():
    spec = importlib.util.spec_from_file_location(
        "mlflow_ui_screenshots", ROOT / "tools" / "mlflow_ui_screenshots.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GUIDE = ROOT / "docs" / "guide" / "reviewers.md"


def test_reviewers_guide_names_every_checked_page_and_shows_its_screenshot():
    tool = load_tool()
    section = GUIDE.read_text()
    for page in tool.PAGES:
        assert page.readme in section, f"docs/guide/reviewers.md does not name {page.readme}"
        image = f"../img/mlflow_{page.name}.png"
        assert image in section, f"docs/guide/reviewers.md does not show {image}"
        assert (GUIDE.parent / image).resolve().is_file(), f"{image} is not checked in"
    assert "Model training" in section, "the guide must say how to leave MLflow's GenAI mode"


def test_the_committed_screenshots_show_this_code():
    """The screenshots were taken from a clean tree of a commit with today's features and pages
    (the model version page shows the input count); retake them with `make screenshots`."""
    import json

    from commuter_badge.features.definitions import FEATURE_NAMES

    tool = load_tool()
    manifest = json.loads((ROOT / "docs" / "img" / tool.MANIFEST).read_text())
    retake = "retake them with `make screenshots` from a clean tree"
    assert manifest["features"] == len(FEATURE_NAMES), f"they show other inputs; {retake}"
    assert not manifest["commit"].endswith("+dirty"), f"taken from a tree with changes; {retake}"
    assert manifest["pages"] == [p.name for p in tool.PAGES], f"the route changed; {retake}"


def test_every_page_the_guide_names_opens_and_shows_what_it_promises(tmp_path, monkeypatch):
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        pytest.fail("Chromium is missing: `make chromium` installs it (make test does)")
    tool = load_tool()
    tool.train_small_store(tmp_path, 6_000)
    results = tool.check_route(f"sqlite:///{tmp_path / 'mlflow.db'}", out_dir=None)
    assert [r["page"] for r in results] == [p.name for p in tool.PAGES], "every page opened"
    broken = {r["page"]: r["missing"] for r in results if r["missing"]}
    assert not broken, f"pages missing the names the guide promises: {broken}"
    experiment = next(r for r in results if r["page"] == "experiment_runs")
    assert re.search(r"#/experiments/\d+/runs", experiment["url"]), experiment["url"]
