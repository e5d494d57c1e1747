"""Units behind the service's hardening (issue 15): metrics labels and 401 log sampling."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from commuter_badge.serving.access_log import UnauthorizedSampler
from commuter_badge.serving.metrics import OTHER, STATIC_PREFIX, SYSTEM_ROUTES, endpoint_label

ROUTES = ("/score", "/badge")


@given(st.text(max_size=60).map(lambda s: "/" + s))
def test_every_path_gets_a_label_from_the_fixed_set(path):
    label = endpoint_label(path, ROUTES)
    assert label in {*ROUTES, *SYSTEM_ROUTES, STATIC_PREFIX, OTHER}, label
    if path in ROUTES or path in SYSTEM_ROUTES:
        assert label == path, "known routes keep their own label"


def test_look_alike_paths_are_other():
    for path in ("/score/", "/Score", "/score/../badge", "/metricsx", "/static_contentx"):
        assert endpoint_label(path, ROUTES) == OTHER, path
    assert endpoint_label("/static_content/swagger-ui.css", ROUTES) == STATIC_PREFIX


def access_record(status: int) -> logging.LogRecord:
    return logging.LogRecord(
        "bentoml.access",
        logging.INFO,
        __file__,
        1,
        "%s (%s) (%s) %.3fms",
        ("127.0.0.1:5", "scheme=http,method=GET,path=/x", f"status={status},type=,length=", 0.1),
        None,
    )


def test_401_lines_are_capped_per_window_and_the_next_kept_line_counts_the_dropped():
    sampler = UnauthorizedSampler(limit=3, window=3600)
    kept = [sampler.filter(access_record(401)) for _ in range(10)]
    assert kept == [True] * 3 + [False] * 7, kept
    assert all(sampler.filter(access_record(200)) for _ in range(5)), "other lines all kept"
    sampler._window_start -= 3600  # the window has passed
    record = access_record(401)
    assert sampler.filter(record)
    assert "7 earlier 401 lines not logged" in record.getMessage(), record.getMessage()
