"""The working-day calendar is an argument, never process state (issue 28, item 3): two calendars
are used side by side in one process, a command's `--calendar` leaves nothing behind, and no
library module holds a calendar it could rebind."""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from commuter_badge.cli.main import app
from commuter_badge.features.build import build_features, features_from_trips
from commuter_badge.features.context import RunContext
from commuter_badge.features.workdays import LIBRARY_CALENDAR, WorkingCalendar, load_calendar
from commuter_badge.settings import Settings
from tests.code.test_workdays import library_rows, write_rows

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "features", "simulate", "models", "stores", "serving", "cli")
MAKERS = {"WorkingCalendar", "load_calendar", "open_calendar"}
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
AS_OF = dt.date(2026, 3, 9)
# Entering every morning of the week of 2026-03-02; the file below makes its Friday a holiday.
PERSON = [
    {"ts": dt.datetime(2026, 3, d, 7, 30, tzinfo=SHANGHAI), "direction": "in", "mode": "car",
     "site_id": "CK-G1-XIJI", "region": "langfang-xianghe"}
    for d in range(2, 7)
]  # fmt: skip


def friday_off(tmp_path: Path) -> str:
    rows = [*library_rows(2026), (dt.date(2026, 3, 6), "holiday", "春节")]
    return write_rows(tmp_path / "friday_off.csv", rows)


def trips_file(tmp_path: Path) -> Path:
    frame = pd.DataFrame([{"person_id": "p", **t} for t in PERSON])
    path = tmp_path / "trips.parquet"
    frame.to_parquet(path, index=False)
    return path


def workdays_active(frame: pd.DataFrame) -> int:
    return int(frame["workdays_active"].iloc[0])


def test_two_contexts_in_one_process_keep_their_own_working_days(tmp_path):
    # given two runs' contexts, one on the library calendar, one on a file that adds a holiday
    settings = Settings.model_construct(tracking_uri="")
    plain = RunContext(settings, LIBRARY_CALENDAR)
    filed = RunContext(settings, load_calendar(friday_off(tmp_path)))
    trips = trips_file(tmp_path)
    # when features are built under each, interleaved, on every engine, with no reset between
    seen = []
    for context in (plain, filed, plain, filed):
        cal = context.calendar
        seen.append(
            (
                workdays_active(build_features(trips, AS_OF, calendar=cal)),
                workdays_active(features_from_trips([("p", PERSON)], AS_OF, engine="sqlite",
                                                    calendar=cal)),
                cal.window_calendar(AS_OF, 28)["working_days"],
            )
        )  # fmt: skip
    # then each run sees its own calendar's days: 5 working days entered, or 4 with Friday off
    assert seen[0] == seen[2], f"the library run changed after the file's: {seen}"
    assert seen[1] == seen[3], f"the file's run changed after the library's: {seen}"
    assert seen[0][:2] == (5, 5), seen
    assert seen[1][:2] == (4, 4), seen
    assert seen[0][2] - seen[1][2] == 1, f"the file takes one working day off the window: {seen}"


def test_a_command_calendar_leaves_the_library_default_alone(tmp_path):
    # given `commuter features --calendar FILE` run in this process
    trips = trips_file(tmp_path)
    out = tmp_path / "features.csv"
    argv = ["features", "--trips", str(trips), "--as-of", AS_OF.isoformat(), "--out", str(out)]
    result = CliRunner().invoke(app, [*argv, "--calendar", friday_off(tmp_path)])
    assert result.exit_code == 0, result.output
    assert workdays_active(pd.read_csv(out)) == 4, "the command used its file"
    # when the library is called afterwards without a calendar
    after = build_features(trips, AS_OF)
    # then it uses the statutory calendar: the command's file did not become process state
    assert workdays_active(after) == 5, "the command's calendar leaked into the process"


def _module_calendars(tree: ast.Module) -> set[str]:
    """Names bound at module level to a freshly made calendar (`X = WorkingCalendar(...)`)."""
    names = set()
    for node in tree.body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        call = value.func if isinstance(value, ast.Call) else None
        made = getattr(call, "id", getattr(call, "attr", None))
        if made in MAKERS:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_no_library_module_holds_a_calendar_it_could_rebind():
    # given every library module / when its module-level calendars and `global` rebinds are read
    held, rebound = {}, {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            name = path.relative_to(ROOT).as_posix()
            if found := _module_calendars(tree):
                held[name] = found
            for node in ast.walk(tree):
                if isinstance(node, ast.Global):
                    rebound.setdefault(name, set()).update(node.names)
    # then the only one is the frozen statutory calendar, and no function rebinds a calendar
    assert held == {"features/workdays.py": {"LIBRARY_CALENDAR"}}, held
    assert WorkingCalendar.__dataclass_params__.frozen, "LIBRARY_CALENDAR must stay immutable"
    calendars = {n for names in held.values() for n in names}
    assert not {k: v & calendars for k, v in rebound.items() if v & calendars}, rebound
    assert not any("calendar" in n.lower() for names in rebound.values() for n in names), rebound
    assert dataclasses.is_dataclass(RunContext), "RunContext is one typed object"
    assert RunContext.__dataclass_params__.frozen, "RunContext is frozen"
