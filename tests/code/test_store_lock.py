"""The store lock, across real processes: a fresh store opened at once, critical sections apart."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

OPEN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    go = Path(sys.argv[2])
    while not go.exists():  # start together
        time.sleep(0.01)
    from commuter_badge.models.mlflow_edge import registry
    registry.configure(sys.argv[1])
    registry.experiment_id()
    registry.ensure_registered_model()
    print("ok")
    """
)

HOLD = textwrap.dedent(
    """
    import sys, time
    from commuter_badge.models.mlflow_edge import registry
    with registry.store_lock(sys.argv[1]):
        start = time.time()
        time.sleep(1.0)
        print(start, time.time())
    """
)


def _spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 - this interpreter, our own snippet
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.servers
def test_fresh_store_opened_by_several_processes_at_once(tmp_path):
    # Given no mlflow.db yet and three processes released at the same instant,
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    go = tmp_path / "go"
    procs = [_spawn(OPEN, uri, str(go)) for _ in range(3)]
    time.sleep(3)  # let them import
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    # then every one opens it, creates or finds the experiment and the registered model.
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, f"a process failed to open the fresh store: {err[-1500:]}"
        assert out.strip().endswith("ok"), out
    from mlflow.tracking import MlflowClient

    model = MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model("commuter-badge")
    assert model.description, "registered model created without its description"


@pytest.mark.servers
def test_lock_keeps_critical_sections_apart(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    procs = [_spawn(HOLD, uri) for _ in range(2)]
    spans = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-1500:]
        spans.append(tuple(map(float, out.split())))
    (a0, a1), (b0, b1) = sorted(spans)
    assert b0 >= a1, f"two processes held the store lock at once: {spans}"
    assert (tmp_path / "mlflow.db.lock").exists(), "the lock file sits beside the store"


HOLD_DIRECTORY = textwrap.dedent(
    """
    import sys, time
    from commuter_badge.locks import file_lock
    with file_lock(sys.argv[1], directory=True):
        start = time.time()
        time.sleep(1.0)
        print(start, time.time())
    """
)


@pytest.mark.servers
def test_one_lock_helper_keeps_directory_holders_apart_and_leaves_no_file(tmp_path):
    # Given two processes taking the decision store's kind of lock: on the directory itself,
    store = tmp_path / "store"
    store.mkdir()
    procs = [_spawn(HOLD_DIRECTORY, str(store)) for _ in range(2)]
    spans = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-1500:]
        spans.append(tuple(map(float, out.split())))
    # then one holds it after the other, and nothing is left in the directory.
    (a0, a1), (b0, b1) = sorted(spans)
    assert b0 >= a1, f"two processes held the directory lock at once: {spans}"
    assert list(store.iterdir()) == [], "a directory lock leaves no file"
    # A lock file is created owner-only, with its folder.
    from commuter_badge.locks import file_lock

    with file_lock(tmp_path / "new" / "store.db.lock"):
        pass
    assert (tmp_path / "new" / "store.db.lock").stat().st_mode & 0o777 == 0o600
