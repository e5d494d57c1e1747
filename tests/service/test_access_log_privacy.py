"""The service's access log writes no person id: `/reviews/<person_id>` becomes `{person_id}`."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from commuter_badge.serving.access_log import RedactPersonIds
from tests.service.conftest import TOKENS

PERSON = "p-access-log-7d1c"


def test_a_review_lookup_leaves_no_person_id_in_the_access_log(server):
    # given lookups of a person's reviews, with an issuer token (403), none (401) and an odd id
    for headers in ({"Authorization": f"Bearer {TOKENS[0]}"}, {}):
        r = httpx.get(f"{server.url}/reviews/{PERSON}", headers=headers, timeout=10)
        assert r.status_code in (401, 403), r.text
    httpx.get(f"{server.url}/reviews/{PERSON},type=x,length=1", timeout=10)
    time.sleep(1.0)  # the access line is written after the answer
    logs = server.logs()
    # then the log has the lines, with the path's id replaced
    assert "path=/reviews/{person_id}" in logs, logs[-3000:]
    assert PERSON not in logs, [line for line in logs.splitlines() if PERSON in line]


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/reviews/p1", "/reviews/{person_id},type=,length="),
        ("/reviews/a,b/c d", "/reviews/{person_id},type=,length="),
        ("/reviews", "/reviews,type=,length="),
        ("/score", "/score,type=,length="),
    ],
)
def test_the_filter_redacts_the_path_of_bentomls_line(path, shown):
    record = logging.LogRecord(
        "bentoml.access",
        logging.INFO,
        __file__,
        1,
        "%s (%s) (%s) %.3fms",
        ("127.0.0.1:5", f"scheme=http,method=GET,path={path},type=,length=", "status=403", 1.0),
        None,
    )
    assert RedactPersonIds().filter(record)
    assert (
        record.getMessage()
        == f"127.0.0.1:5 (scheme=http,method=GET,path={shown}) (status=403) 1.000ms"
    )
