"""Named stages of a long job, timed: `with stage("fit"): ...` logs the stage's wall seconds, the
process's resident memory at its end and its peak so far, at DEBUG on the `commuter_badge.stages`
logger (benchmarks/train_profile.py reads these records). Nothing is measured unless that logger
is enabled for DEBUG, so a job pays nothing for its stages."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import time
from collections.abc import Iterator

log = logging.getLogger("commuter_badge.stages")

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 0.0


def rss_mb() -> float:
    """The process's resident set now, in MiB (Linux: /proc/self/statm; elsewhere 0)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * _PAGE_MB
    except OSError:
        return 0.0


def peak_rss_mb() -> float:
    """The process's peak resident set so far, in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block as stage `name` (when the stages logger is enabled for DEBUG)."""
    if not log.isEnabledFor(logging.DEBUG):
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - started
        figures = {"seconds": seconds, "rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()}
        log.debug(
            "stage %s: %.2f s, rss %.0f MiB, peak %.0f MiB",
            name,
            *figures.values(),
            extra={"stage": name, **figures},
        )
