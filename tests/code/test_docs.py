"""Docs that match behaviour: feature tables, month examples and the README's headline figures."""

from __future__ import annotations

import re
from pathlib import Path

from commuter_badge.features.definitions import FEATURES

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]


def test_no_page_holds_a_stale_feature_table():
    """The feature table is generated (docs/reference/features.md, checked in test_docs_site);
    any feature row still typed by hand on a page must name a defined feature with its words."""
    defined = {f.name: f.description for f in FEATURES}
    groups = {f.group for f in FEATURES}
    for page in PAGES:
        rows = re.findall(r"^\| `([a-z_]+)` \| ([a-z]+) \| (.+?) \|$", page.read_text(), flags=re.M)
        for name, group, description in rows:
            if group not in groups:
                continue  # another table (the contract's columns), not features
            assert name in defined, f"{page.relative_to(ROOT)} lists {name}, which is not defined"
            assert description == defined[name], f"{page.relative_to(ROOT)}: {name} words differ"


def test_cli_help_lists_every_contract_command():
    from typer.testing import CliRunner

    from commuter_badge.cli.main import app

    out = CliRunner().invoke(app, ["--help"]).output
    for command in ("simulate", "features", "train", "evaluate", "score", "serve"):
        assert command in out, f"`commuter --help` does not list {command}"


def test_month_examples_keep_one_calendar():
    """`simulate --months N --as-of D` examples (README and docs) give months whose windows the
    calendar treats alike, so monitoring the next month is like for like (from 2021-10-20 the
    first window held National Day and the next month's monitor alarmed on the calendar alone)."""
    import datetime as dt

    from commuter_badge.features.workdays import LIBRARY_CALENDAR
    from commuter_badge.settings import DEFAULT_WINDOW_DAYS
    from commuter_badge.simulate import monthly_as_ofs

    examples = [
        example
        for page in PAGES
        for example in re.findall(
            r"simulate --months (\d+) --as-of (\d{4}-\d\d-\d\d)", page.read_text()
        )
    ]
    assert examples, "the docs show a --months example (docs/guide/data.md)"
    for months, day in examples:
        ends = monthly_as_ofs(dt.date.fromisoformat(day), int(months))
        shapes = {
            tuple(LIBRARY_CALENDAR.window_calendar(e, DEFAULT_WINDOW_DAYS).values()) for e in ends
        }
        assert len(shapes) == 1, f"--months {months} --as-of {day}: windows {ends} differ {shapes}"


# --- the README stays short and its figures come from the pages it links ------------------------

FIGURE = re.compile(r"\d[\d,]*(?:\.\d+)?(?:%| ?(?:ms|s|GiB|GB)\b| persons/s)|\d[\d,]*\.\d+")


def headline_rows(text: str) -> list[tuple[str, str, list[str]]]:
    """(what, figure cell, linked files) of each row of the README's headline table."""
    if "## Headline figures" not in text:
        return []
    section = text.split("## Headline figures", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("what", "---"):
            links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", cells[2])
            rows.append((cells[0], cells[1], links))
    return rows


def figure_problems(text: str, root: Path) -> list[str]:
    problems = []
    rows = headline_rows(text)
    if not rows:
        return ["the README has no headline table"]
    for what, cell, links in rows:
        if not links:
            problems.append(f"{what}: no link to the page that holds it")
            continue
        pages = " ".join((root / link).read_text() for link in links if (root / link).is_file())
        if not pages:
            problems.append(f"{what}: {links} do not exist")
            continue
        plain = re.sub(r"\s+", " ", pages.replace("**", ""))
        for figure in FIGURE.findall(cell.replace("**", "")):
            if figure not in plain:
                problems.append(f"{what}: {figure} is not on {', '.join(links)}")
    return problems


def test_readme_headline_figures_are_the_linked_pages_figures():
    problems = figure_problems(README.read_text(), ROOT)
    assert not problems, "\n".join(problems)


def test_the_figure_check_catches_a_figure_the_page_does_not_hold(tmp_path):
    (tmp_path / "page.md").write_text("recall **0.9931** at 0.998%; p99 6.1 ms\n")
    table = "## Headline figures\n\n| what | figure | where |\n|---|---|---|\n| r | {} | [p](page.md#x) |\n"
    assert figure_problems(table.format("**0.9931**, 0.998%, p99 6.1 ms"), tmp_path) == []
    assert figure_problems(table.format("0.9941, 0.998%"), tmp_path) == [
        "r: 0.9941 is not on page.md"
    ]


def test_readme_is_for_a_person():
    """At most 250 lines, no issue numbers, every local link resolves, the feature count right."""
    text = README.read_text()
    for count in re.findall(r"(\d+) features", text):
        assert int(count) == len(FEATURES), (
            f"README says {count} features, the code has {len(FEATURES)}"
        )
    assert len(text.splitlines()) <= 250, f"README has {len(text.splitlines())} lines"
    assert not re.search(r"\bissue #?\d+", text, flags=re.I), "README names an issue number"
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
