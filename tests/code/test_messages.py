"""The catalogue of person-facing sentences: every feature and message in both languages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commuter_badge.errors import UserError
from commuter_badge.features.definitions import FEATURE_NAMES
from commuter_badge.features.messages import (
    FEATURE_WORDS,
    LANGS,
    MESSAGES,
    MODE_WORDS,
    check_lang,
    from_accept_language,
    placeholders,
    say,
)
from commuter_badge.features.schema import MODES


def test_every_feature_has_words_in_both_languages():
    assert set(FEATURE_WORDS) == set(FEATURE_NAMES), "a feature without catalogue words"
    for name, text in FEATURE_WORDS.items():
        assert text.en.strip(), f"feature {name} lacks English"
        assert text.zh.strip(), f"feature {name} lacks Chinese"
        assert text.en != text.zh, f"feature {name}: zh is the English text"


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_every_message_has_both_languages_with_the_same_placeholders(key):
    text = MESSAGES[key]
    assert text.en.strip(), f"message {key} lacks English"
    assert text.zh.strip(), f"message {key} lacks Chinese"
    assert placeholders(text.en) == placeholders(text.zh), f"message {key}: placeholders differ"
    values = dict.fromkeys(placeholders(text.en), "x")
    for lang in LANGS:
        assert "{" not in say(key, lang, **values), f"message {key} ({lang}) left a placeholder"


def test_every_mode_reads_in_both_languages():
    assert set(MODE_WORDS) == set(MODES)
    assert all(t.en and t.zh for t in MODE_WORDS.values())


def test_a_chinese_message_is_chinese():
    assert "天" in say("no_crossings", "zh", window_days=28)
    assert "days" in say("no_crossings", "en", window_days=28)


def test_an_unknown_language_is_refused_in_the_language_asked():
    with pytest.raises(UserError, match="not one of zh, en"):
        check_lang("fr")
    with pytest.raises(UserError, match="不是 zh 或 en"):
        check_lang("fr", "zh")
    assert check_lang("zh") == "zh"


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("en-US,en;q=0.9", "en"),
        ("fr-FR, en;q=0.5, zh;q=0.7", "zh"),
        ("zh;q=0, en", "en"),
        ("fr", None),
        ("", None),
        (None, None),
    ],
)
def test_accept_language_picks_the_preferred_of_zh_and_en(header, lang):
    assert from_accept_language(header) == lang


@given(st.text(max_size=60))
def test_any_accept_language_header_answers_a_language_or_none(header):
    assert from_accept_language(header) in (*LANGS, None)


def test_reasons_are_told_in_the_language_asked():
    from commuter_badge.features.messages import localize_reasons

    reasons = [
        {"feature": "workdays_active", "description": "x", "value": 3, "contribution": -1.2},
        {"feature": "crossings", "description": "x", "value": 0, "contribution": 0.0},
    ]
    zh = localize_reasons(reasons, "zh", 28)
    assert zh[0]["description"] == "有出入京记录的工作日天数"
    assert zh[1]["description"].startswith("评分日期前 28 天内没有出入京记录")
    assert [{k: v for k, v in r.items() if k != "description"} for r in zh] == [
        {k: v for k, v in r.items() if k != "description"} for r in reasons
    ], "only the words change"
    en = localize_reasons(reasons, "en", 28)
    assert en[0]["description"] == "working days with at least one crossing"
