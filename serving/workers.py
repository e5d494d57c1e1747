"""A worker of the service never outlives the server process that started it.

BentoML's process manager (circus) starts each worker in a session of its own, so stopping the
server's process group (`kill -- -PGID`, a supervisor that signals the group, `kill -9` of the
group) reached the server but not its workers: they kept the port and the stores open, orphaned.
A plain SIGTERM to the server still stops its workers gracefully; for everything else each worker
asks Linux for SIGTERM when its parent dies (PR_SET_PDEATHSIG), and exits at once if the server
(COMMUTER_SERVER_PID, set by the server process: settings.export_for_workers) was gone before it
asked. Elsewhere than Linux this does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_server(server_pid: int | None) -> bool:
    """In a worker: SIGTERM to this process when its parent exits; True when that is arranged."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:
        logger.warning("this worker may outlive its server: prctl failed (%s)", exc)
        return False
    if server_pid is not None and os.getppid() != server_pid:
        # The server died before the request above: nobody will send the signal.
        logger.warning("the server process %d is gone; this worker stops", server_pid)
        signal.raise_signal(signal.SIGTERM)
    return True
