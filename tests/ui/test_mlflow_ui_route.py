"""The README's route through the MLflow UI, in a real browser: every page it names opens and
shows the names it promises (tools/mlflow_ui_screenshots.py, on a store a small training filled)."""

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


def reviewers_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## For reviewers")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end > 0 else None]


def test_readme_names_every_checked_page_and_shows_its_screenshot():
    tool = load_tool()
    section = reviewers_section()
    for page in tool.PAGES:
        assert page.readme in section, f"README 'For reviewers' does not name {page.readme}"
        image = f"docs/img/mlflow_{page.name}.png"
        assert image in section, f"README does not show {image}"
        assert (ROOT / image).is_file(), f"{image} is not checked in"
    assert "Model training" in section, "the README must say how to leave MLflow's GenAI mode"


def test_every_page_the_readme_names_opens_and_shows_what_it_promises(tmp_path, monkeypatch):
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        pytest.fail("Chromium is missing: `make chromium` installs it (make test does)")
    tool = load_tool()
    tool.train_small_store(tmp_path, 6_000)
    results = tool.check_route(f"sqlite:///{tmp_path / 'mlflow.db'}", out_dir=None)
    assert [r["page"] for r in results] == [p.name for p in tool.PAGES], "every page opened"
    broken = {r["page"]: r["missing"] for r in results if r["missing"]}
    assert not broken, f"pages missing the names the README promises: {broken}"
    experiment = next(r for r in results if r["page"] == "experiment_runs")
    assert re.search(r"#/experiments/\d+/runs", experiment["url"]), experiment["url"]
