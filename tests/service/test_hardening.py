"""What the adversarial test broke on the service side (issue 15 items 1, 3, 5, 8), held fixed.

Each test runs against a real `commuter serve` (tests/service/conftest.py) and fails on the
behaviour the issue describes: /metrics growing with random paths, two services sharing one
metrics directory, errors in plain text, stores readable by others, one log line per 401.
"""

from __future__ import annotations

import random
import socket
import stat
from pathlib import Path

import httpx
import pytest

from commuter_badge.serving.run import command
from commuter_badge.settings import load_settings

from .conftest import TOKENS, Server, World, start_server, stop_server, store_env, wait_until

pytestmark = pytest.mark.service

RANDOM_PATHS = 2_000


def metrics_lines(server: Server) -> list[str]:
    r = httpx.get(server.url + "/metrics", timeout=60)
    assert r.status_code == 200, r.text[:200]
    return r.text.splitlines()


def request_total(lines: list[str], endpoint: str, code: int) -> float:
    """Sum of bentoml_service_request_total for one endpoint label and status."""
    total = 0.0
    for line in lines:
        if (
            line.startswith("bentoml_service_request_total{")
            and f'endpoint="{endpoint}"' in line
            and f'http_response_code="{code}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- 15.1: /metrics labels from a fixed set; 15.8: 401 log lines sampled ------------------------


def test_random_paths_leave_metrics_flat_and_the_log_short(server: Server):
    before = metrics_lines(server)
    log_before = server.logs().count("status=401")
    rng = random.Random(20261201)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(RANDOM_PATHS):
            r = client.get(f"/x{rng.randrange(10**9)}{i}")
            assert r.status_code == 401, r.text[:200]
    after = metrics_lines(server)
    assert len(after) - len(before) <= 40, (
        f"/metrics grew by {len(after) - len(before)} lines for {RANDOM_PATHS} random paths"
    )
    assert not any('endpoint="/x' in line for line in after), "raw paths must not be labels"
    assert request_total(after, "other", 401) - request_total(before, "other", 401) >= (
        RANDOM_PATHS
    ), "every refused request is still counted, under one label"
    logged = server.logs().count("status=401") - log_before
    assert logged <= 100, f"{logged} access-log lines for {RANDOM_PATHS} unauthenticated requests"


# --- 15.3: each service its own Prometheus directory --------------------------------------------


def test_two_services_started_at_once_keep_separate_counts(tmp_path: Path):
    env = store_env(tmp_path)  # both share one BENTOML_HOME, as two services of one user would
    first = start_server(env, tmp_path, workers=1)
    second = None
    try:
        wait_until(first, "/livez", 200)
        for _ in range(7):
            httpx.get(first.url + "/unknown", timeout=30)
        second = start_server(env, tmp_path, workers=1)
        wait_until(second, "/livez", 200)
        for _ in range(3):
            httpx.get(second.url + "/unknown", timeout=30)
        assert request_total(metrics_lines(first), "other", 401) == 7, "first service's count"
        assert request_total(metrics_lines(second), "other", 401) == 3, "second service's count"
        homes = sorted(p.name for p in (tmp_path / "bentoml").iterdir())
        assert len(homes) == 2, f"one BentoML home per service: {homes}"
    finally:
        stop_server(first)
        if second is not None:
            stop_server(second)


# --- 15.5: every error is JSON ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/no-such-path", 404), ("GET", "/score", 405), ("PUT", "/badge", 405)],
)
def test_unknown_paths_and_methods_answer_json(client, method, path, status):
    r = client.request(method, path)
    assert r.status_code == status, r.text[:200]
    assert r.headers["content-type"].startswith("application/json"), r.text[:200]
    body = r.json()
    assert body["error"], body
    assert body["message"], body


def raw_request(server: Server, head: str, body: bytes = b"{}") -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


@pytest.mark.parametrize(
    "content_length",
    ["Content-Length: -5", "Content-Length: 1.5", "Content-Length: 2\r\nContent-Length: 3"],
    ids=["negative", "non-integer", "duplicate-differing"],
)
def test_malformed_content_length_is_refused_with_400_json(server, content_length):
    """uvicorn's HTTP parser refuses these before the app; serving/http_errors.py makes it JSON."""
    head = (
        f"POST /badge HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKENS[0]}\r\n"
        f"Content-Type: application/json\r\n{content_length}"
    )
    answer = raw_request(server, head)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 400"), answer[:300]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in headers.lower(), answer[:300]
    assert b'"field": "request"' in body, body


# --- 15.8: deployment defaults ------------------------------------------------------------------


def test_the_server_binds_loopback_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("COMMUTER_HOST", raising=False)
    assert load_settings().host == "127.0.0.1"
    argv = command(3000)
    assert argv[argv.index("--host") + 1] == "127.0.0.1", argv
    monkeypatch.setenv("COMMUTER_HOST", "10.0.0.5")
    assert load_settings().host == "10.0.0.5"


def owner_only(path: Path) -> bool:
    return not stat.S_IMODE(path.stat().st_mode) & 0o077


def test_stores_outputs_and_metrics_files_are_owner_only(world: World, server: Server):
    port = server.url.rsplit(":", 1)[1]
    home = Path(server.env["BENTOML_HOME"]) / f"commuter_badge-{port}"
    prometheus = home / "prometheus_multiproc_dir"
    files = [p for p in prometheus.iterdir() if p.is_file()]
    assert files, f"no metrics files in {prometheus}"
    checked = [home, prometheus, *files]
    checked += [world.root / "mlflow.db", world.decisions_path, world.root / "scores.parquet"]
    mlruns = world.root / "mlruns"
    if mlruns.exists():
        # MLflow copies the model's code files keeping their source's mode (copy2); its folders,
        # created under the commands' umask, keep them from others.
        checked += [mlruns, *(p for p in mlruns.rglob("*") if p.is_dir())]
    loose = [f"{p} {stat.S_IMODE(p.stat().st_mode):o}" for p in checked if not owner_only(p)]
    assert not loose, f"readable by others: {loose}"


def test_a_missing_champion_names_the_store_it_looked_in(empty_server: Server):
    r = httpx.post(
        empty_server.url + "/score",
        json={"as_of": "2021-10-20", "persons": []},
        headers={"Authorization": f"Bearer {TOKENS[0]}"},
        timeout=30,
    )
    assert r.status_code == 503, r.text[:300]
    store = empty_server.env["MLFLOW_TRACKING_URI"]
    assert store in r.json()["message"], f"the message should name {store}: {r.text[:300]}"
