"""Every sentence a person may read, in Simplified Chinese and English: one typed catalogue.

A person at the checkpoint, a community office or an operator reads the reasons for a decision,
the date a badge would come, what would change a decision and the errors about their own request.
Each of these is a `Text` here, with both languages side by side so a missing translation is a
gap in one line (tests/code/test_messages.py checks every feature and message has both, with the
same placeholders). The English feature words are the definitions' own (features/definitions.py);
the Chinese ones are kept beside them here. Callers pick a language with `Lang` ("zh" or "en"):
the CLI's `--lang`, the service's `"lang"` or `Accept-Language`, else COMMUTER_LANG.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal, get_args

from commuter_badge.errors import UserError
from commuter_badge.features.definitions import DESCRIPTIONS

Lang = Literal["zh", "en"]
LANGS: tuple[str, ...] = get_args(Lang)


@dataclass(frozen=True)
class Text:
    """One sentence in both languages; `{name}` placeholders are filled by `say`."""

    en: str
    zh: str

    def __call__(self, lang: Lang, **values: object) -> str:
        return getattr(self, lang).format(**values)


# Chinese feature words, one per feature of features/definitions.py (the English are its own).
_FEATURE_ZH: dict[str, str] = {
    "crossings": "窗口期内出入京次数（已去除重复扫描）",
    "active_days": "有出入京记录的天数",
    "workdays_active": "有出入京记录的工作日天数",
    "active_days_per_week": "窗口期内平均每周有出入京记录的天数",
    "workday_coverage": "窗口期内有出入京记录的工作日占比",
    "morning_entry_workdays": "首次进京在 05:00 至 10:00 之间的工作日天数",
    "evening_exit_workdays": "最后一次出京在 16:00 至 22:00 之间的工作日天数",
    "active_weeks": "有出入京记录的周数（自评分日期起每 7 天为一周）",
    "span_workday_coverage": "首次与最后一次出入京之间，有记录的工作日占比",
    "active_week_workday_coverage": "有记录的各周内，有出入京记录的工作日占比（整周外出不计入）",
    "entry_hour_mean": "每天首次进京的平均时刻",
    "exit_hour_mean": "每天最后一次出京的平均时刻",
    "stay_hours_mean": "同日进京与出京之间的平均停留小时数",
    "entry_hour_spread": "每天首次进京时刻的离散程度（标准差，小时）",
    "exit_hour_spread": "每天最后一次出京时刻的离散程度（标准差，小时）",
    "workday_round_trip_share": "窗口期内当天先进京后出京的工作日占比",
    "workday_entry_share": "窗口期内有进京记录的工作日占比",
    "offday_active_share": "窗口期内周末和节假日中有出入京记录的占比",
    "top_weekday_share": "出入京天数中落在最常出行的星期几的占比",
    "entry_gap_mode": "相邻两次进京日之间最常见的间隔天数",
    "entry_gap_regularity": "进京日间隔等于最常见间隔的占比",
    "fri_in_sun_out_weeks": "周五进京、周日出京的周数",
    "days_since_last": "最后一次出入京距评分日期的天数",
    "days_since_first": "首次出入京距评分日期的天数",
    "recent_active_days": "最近 7 天内有出入京记录的天数",
    "recent_vs_earlier": "最近一周的出行天数与此前平均每周之比（1 表示稳定）",
    "n_sites": "使用过的不同车站和检查站数",
    "n_regions": "往来的京外不同地区数",
    "n_modes": "使用过的不同出行方式数（铁路、自驾、客运班车）",
    "top_site_share": "在最常用站点的出入京次数占比",
    "rail_share": "乘火车出入京的次数占比",
    "bus_share": "乘客运班车或公交出入京的次数占比",
    "crossings_per_active_day": "每个出行日的平均出入京次数",
    "night_share": "22:00 至次日 05:00 之间出入京的次数占比",
    "entry_exit_imbalance": "进京与出京次数之差占总次数的比例",
}

FEATURE_WORDS: dict[str, Text] = {
    name: Text(en=DESCRIPTIONS[name], zh=_FEATURE_ZH.get(name, "")) for name in DESCRIPTIONS
}

MESSAGES: dict[str, Text] = {
    "no_crossings": Text(
        en="no boundary crossings in the {window_days} days before as_of, so no badge",
        zh="评分日期前 {window_days} 天内没有出入京记录，因此没有通勤标识",
    ),
    "expected_on": Text(
        en="if you keep commuting as you have ({mode} at {site}, in about {entry}, out about "
        "{exit} on working days), the badge would come on {date}",
        zh="如果按目前的方式继续通勤（工作日{mode}经{site}，约 {entry} 进京、约 {exit} 出京），"
        "预计 {date} 可获得通勤标识",
    ),
    "expected_none": Text(
        en="commuting as you have on working days would not bring the badge within "
        "{window_days} days",
        zh="按目前的方式在工作日继续通勤，{window_days} 天内仍不能获得通勤标识",
    ),
    "no_pattern": Text(
        en="no crossings to project forward: no expected date can be given",
        zh="没有可参照的出入京记录，无法估计获得通勤标识的日期",
    ),
    "recourse_add": Text(
        en="with {count} more working days of your usual round trip ({mode} at {site}, in about "
        "{entry}, out about {exit}) in the last {days} days, the model would have given the badge",
        zh="如果最近 {days} 天内再多 {count} 个工作日按平常方式往返（{mode}经{site}，约 {entry} "
        "进京、约 {exit} 出京），模型就会给予通勤标识",
    ),
    "recourse_remove": Text(
        en="with {count} fewer working days of crossing in the last {days} days, the model "
        "would not have given the badge",
        zh="如果最近 {days} 天内少 {count} 个有出入京记录的工作日，模型就不会给予通勤标识",
    ),
    "recourse_none": Text(
        en="no change in working days of crossing within the {window_days}-day window would "
        "change the decision",
        zh="在 {window_days} 天窗口期内增减有出入京记录的工作日都不会改变结果",
    ),
    "unknown_lang": Text(
        en="language {value!r} is not one of zh, en; use zh (简体中文) or en (English)",
        zh="语言 {value!r} 不是 zh 或 en 之一；请使用 zh（简体中文）或 en（English）",
    ),
    "unknown_include": Text(
        en="{value!r} cannot be included; choose from {choices}",
        zh="不能包含 {value!r}；可选：{choices}",
    ),
}

# How a mode reads inside a sentence.
MODE_WORDS: dict[str, Text] = {
    "rail": Text(en="by train", zh="乘火车"),
    "car": Text(en="by car", zh="自驾"),
    "bus": Text(en="by coach or bus", zh="乘客运班车"),
}


def say(key: str, lang: Lang, **values: object) -> str:
    """The message `key` in `lang`, its placeholders filled."""
    return MESSAGES[key](lang, **values)


def feature_words(name: str, lang: Lang) -> str:
    """What the feature measures, in words a person reads as a reason."""
    return FEATURE_WORDS[name](lang)


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def check_lang(value: str, lang: Lang = "en") -> Lang:
    """`value` as a language, or a UserError (in `lang`) saying which ones there are."""
    if value not in LANGS:
        raise UserError(say("unknown_lang", lang, value=value))
    return value  # type: ignore[return-value]


def from_accept_language(header: str | None) -> Lang | None:
    """The first of zh or en an Accept-Language header names (by its q order), else None."""
    if not header:
        return None
    ranked = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGS and q > 0:
            ranked.append((-q, i, primary))
    return min(ranked)[2] if ranked else None


def localize_reasons(reasons: list[dict], lang: Lang, window_days: int) -> list[dict]:
    """Reasons (`CommuterModel.reasons`' dicts) with their description in `lang`; the reason of a
    person without crossings (feature `crossings`, value 0: no one else has it) says so."""
    out = []
    for r in reasons:
        if r["feature"] == "crossings" and r["value"] == 0:
            words = say("no_crossings", lang, window_days=window_days)
        else:
            words = feature_words(r["feature"], lang)
        out.append({**r, "description": words})
    return out
