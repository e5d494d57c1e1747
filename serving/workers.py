"""A worker of the service never outlives the server process that started it.

BentoML's process manager (circus) starts each worker in a session of its own, so stopping the
server's process group (`kill -- -PGID`, a supervisor that signals the group, `kill -9` of the
group) reached the server but not its workers: they kept the port and the stores open, orphaned.
A plain SIGTERM to the server still stops its workers gracefully; for everything else each worker
watches its server (COMMUTER_SERVER_PID, set by the server process: settings.export_for_workers)
and sends itself SIGTERM once that process is gone.

Why a watching thread rather than Linux's PR_SET_PDEATHSIG: that signal fires when the *thread*
that started the worker exits, not the process, and circus may start workers from a thread that
ends; a worker then stopped right after it started (seen once in the kill test).
"""

from __future__ import annotations

import logging
import os
import signal
import threading

logger = logging.getLogger(__name__)

CHECK_SECONDS = 1.0  # how long an orphaned worker may keep the port after its server died


def _server_alive(server_pid: int) -> bool:
    # An orphan is re-parented (to init or a subreaper), so its parent id changes for good.
    return os.getppid() == server_pid


def _watch(server_pid: int, stop: threading.Event) -> None:
    while not stop.wait(CHECK_SECONDS):
        if not _server_alive(server_pid):
            logger.warning("the server process %d is gone; this worker stops", server_pid)
            os.kill(os.getpid(), signal.SIGTERM)
            return


def die_with_server(server_pid: int | None) -> threading.Event | None:
    """In a worker: SIGTERM to this process once its server is gone. Returns the watch's stop
    event (None when there is no server pid to watch: a worker started some other way)."""
    if server_pid is None:
        return None
    if not _server_alive(server_pid):
        logger.warning("the server process %d is gone; this worker stops", server_pid)
        os.kill(os.getpid(), signal.SIGTERM)
        return None
    stop = threading.Event()
    threading.Thread(
        target=_watch, args=(server_pid, stop), name="server-watch", daemon=True
    ).start()
    return stop
