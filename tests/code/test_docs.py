"""Docs that match behaviour: the README lists exactly the features the code defines."""

from __future__ import annotations

import re
from pathlib import Path

from commuter_badge.features.definitions import FEATURES

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_lists_every_feature_with_its_description():
    text = README.read_text()
    listed = dict(re.findall(r"^\| `([a-z_]+)` \| [a-z]+ \| (.+?) \|$", text, flags=re.M))
    defined = {f.name: f.description for f in FEATURES}
    assert listed == defined, (
        f"README feature table out of date: missing {sorted(set(defined) - set(listed))}, "
        f"extra {sorted(set(listed) - set(defined))}"
    )


def test_cli_help_lists_every_contract_command():
    from typer.testing import CliRunner

    from commuter_badge.cli.main import app

    out = CliRunner().invoke(app, ["--help"]).output
    for command in ("simulate", "features", "train", "evaluate", "score", "serve"):
        assert command in out, f"`commuter --help` does not list {command}"
