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


def test_readme_month_examples_keep_one_calendar():
    """`simulate --months N --as-of D` examples give months whose windows the calendar treats
    alike, so monitoring the next month is like for like (issue 27: from 2021-10-20 the first
    window held National Day and the next month's monitor alarmed on the calendar alone)."""
    import datetime as dt

    from commuter_badge.features.workdays import window_calendar
    from commuter_badge.settings import DEFAULT_WINDOW_DAYS
    from commuter_badge.simulate import monthly_as_ofs

    examples = re.findall(r"simulate --months (\d+) --as-of (\d{4}-\d\d-\d\d)", README.read_text())
    assert examples, "the README shows a --months example"
    for months, day in examples:
        ends = monthly_as_ofs(dt.date.fromisoformat(day), int(months))
        shapes = {tuple(window_calendar(e, DEFAULT_WINDOW_DAYS).values()) for e in ends}
        assert len(shapes) == 1, f"--months {months} --as-of {day}: windows {ends} differ {shapes}"
