"""The operator's holiday schedule file: format, and every validation error naming file and line."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from commuter_badge.errors import CommuterError
from commuter_badge.features.holidays import (
    STATUTORY_HOLIDAYS,
    CalendarFileError,
    read_schedule,
    schedule_year,
)
from tests.conftest import CALENDAR_2027

HEADER = "date,kind,name\n"
# One holiday row per statutory holiday of 2027: the smallest complete year (lines 2-8).
MINIMAL_2027 = "".join(
    f"2027-{m:02d}-{d:02d},holiday,{name}\n"
    for (m, d), name in zip(
        [(1, 1), (2, 8), (4, 5), (5, 3), (6, 9), (9, 15), (10, 1)], STATUTORY_HOLIDAYS, strict=True
    )
)


def write(tmp_path, text: str, name: str = "cal.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_synthetic_2027_file_is_valid_and_says_it_is_synthetic():
    # given the test data's 2027 schedule / when it is read
    schedule = read_schedule(CALENDAR_2027)
    # then it covers 2027 only, says it is synthetic, and its digest is the file's sha256
    assert schedule.years == {2027}, f"years {schedule.years}"
    assert "SYNTHETIC" in CALENDAR_2027.read_text(encoding="utf-8"), "the file must say so"
    assert schedule.digest == hashlib.sha256(CALENDAR_2027.read_bytes()).hexdigest()
    assert schedule.is_workday(dt.date(2027, 2, 8)) is False, "Spring Festival Monday is off"
    assert schedule.is_workday(dt.date(2027, 2, 20)) is True, "make-up Saturday works"
    assert schedule.is_workday(dt.date(2027, 1, 4)) is True, "ordinary Monday: weekday rule"
    assert schedule.is_workday(dt.date(2027, 1, 9)) is False, "ordinary Saturday: weekday rule"
    assert schedule.is_workday(dt.date(2026, 12, 31)) is None, "the file does not speak for 2026"


def test_comments_blank_lines_and_a_byte_order_mark_are_accepted(tmp_path):
    # given a file saved by a spreadsheet (BOM, CRLF) with a comment citing its source
    text = "# 国务院办公厅关于2027年部分节假日安排的通知\r\n\r\n" + HEADER + MINIMAL_2027
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeff".encode() + text.replace("\n", "\r\n").encode("utf-8"))
    # when / then it reads as the seven rows
    schedule = read_schedule(path)
    assert len(schedule.days) == 7, f"{len(schedule.days)} rows"


def test_december_new_year_rows_belong_to_the_next_year(tmp_path):
    # given a 2028 schedule whose New Year holiday starts on 30 December 2027
    rows = MINIMAL_2027.replace("2027-", "2028-").replace("2028-01-01", "2027-12-31")
    # when it is read
    schedule = read_schedule(write(tmp_path, HEADER + rows + "2028-01-01,holiday,元旦\n"))
    # then 2028 is the file's year; 2027 is not (only its listed day is spoken for)
    assert schedule.years == {2028}, f"years {schedule.years}"
    assert schedule_year(dt.date(2027, 12, 31), "元旦") == 2028
    assert schedule.is_workday(dt.date(2027, 12, 31)) is False, "listed New Year day is off"
    assert schedule.is_workday(dt.date(2027, 12, 29)) is None, "rest of 2027 is not the file's"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (HEADER + MINIMAL_2027 + "2027-01-01,holiday,元旦\n", r"line 9: 2027-01-01 is already given on line 2"),
        (HEADER + "2027-02-30,holiday,春节\n" + MINIMAL_2027, r"line 2: date '2027-02-30' is not a date"),
        (HEADER + "20270206,holiday,春节\n" + MINIMAL_2027, r"line 2: date '20270206' is not a date"),
        (HEADER + MINIMAL_2027 + "2027-02-08,workday,春节\n", r"line 9: 2027-02-08 is a Monday; a make-up workday must be a Saturday or Sunday"),
        (HEADER + MINIMAL_2027 + "2027-02-20,workday,\n", r"line 9: 2027-02-20 has no name"),
        (HEADER + MINIMAL_2027 + "2027-02-20,workday, \n", r"line 9: 2027-02-20 has no name"),
        (HEADER + MINIMAL_2027 + "2027-02-20,makeup,春节\n", r"line 9: kind 'makeup' is not one of holiday, workday"),
        (HEADER + MINIMAL_2027 + "2027-02-20,workday\n", r"line 9: expected 3 fields date,kind,name, got 2"),
        ("day,type,name\n" + MINIMAL_2027, r"line 1: header must be date,kind,name"),
        ("# only a comment\n" + HEADER, r"no rows after the header"),
        ("", r"empty"),
        (HEADER + MINIMAL_2027.replace("中秋节", "中秋"), r"lines 2-8 \(year 2027\): no holiday row names 中秋节"),
        (
            HEADER + MINIMAL_2027.replace("2027-10-01,holiday,国庆节", "2027-10-09,workday,国庆节"),
            r"lines 2-8 \(year 2027\): no holiday row names 国庆节",
        ),
    ],
    ids=[
        "date-twice",
        "impossible-date",
        "date-without-dashes",
        "workday-on-a-monday",
        "no-name",
        "blank-name",
        "unknown-kind",
        "missing-field",
        "wrong-header",
        "no-rows",
        "empty-file",
        "holiday-missing",
        "holiday-only-as-workday",
    ],
)  # fmt: skip
def test_each_rule_is_an_error_naming_file_and_line(tmp_path, text, match):
    # given a schedule file breaking one rule
    path = write(tmp_path, text)
    # when it is read / then one CalendarFileError names the file, the line and the rule
    with pytest.raises(CalendarFileError, match=match) as caught:
        read_schedule(path)
    assert str(path) in str(caught.value), f"file not named: {caught.value}"
    assert "\n" not in str(caught.value), "one line"


def test_every_year_in_the_file_is_checked(tmp_path):
    # given a complete 2027 and a 2028 with only Spring Festival (line 9)
    path = write(tmp_path, HEADER + MINIMAL_2027 + "2028-01-26,holiday,春节\n")
    # when / then the half-typed year is named with all the holidays it lacks
    with pytest.raises(
        CalendarFileError, match=r"lines 9-9 \(year 2028\): no holiday row names 元旦, 清明节"
    ):
        read_schedule(path)  # fmt: skip


def test_unreadable_and_non_utf8_files_are_clear_errors(tmp_path):
    # given a missing file and a GBK-encoded one / when / then both say what to do
    with pytest.raises(CalendarFileError, match=r"cannot be read .*header date,kind,name"):
        read_schedule(tmp_path / "missing.csv")
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes((HEADER + MINIMAL_2027).encode("gbk"))
    with pytest.raises(CalendarFileError, match=r"not UTF-8 text .*save it as UTF-8"):
        read_schedule(gbk)


def test_calendar_file_error_is_a_commuter_error():
    # given / when / then the CLI prints it as one line, and ValueError callers catch it
    assert issubclass(CalendarFileError, CommuterError), "must extend CommuterError"
    assert issubclass(CalendarFileError, ValueError), "must be a ValueError"
