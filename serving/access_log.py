"""Access-log lines: no person id in them, and refused (401) requests sampled.

`GET /reviews/<person_id>` carries a person id in its path, which BentoML's access log writes
as is; `RedactPersonIds` replaces it with `{person_id}` on every line of that logger (the person
ids of `/score` and `/badge` travel in bodies, which the access log never writes).

Refused requests are sampled: a flood of bad tokens must not flood the log.

BentoML's access-log middleware (logger `bentoml.access`) writes one line per request, before our
guard runs, so it cannot be told to skip some. A filter on that logger keeps the first
`UNAUTHORIZED_PER_WINDOW` 401 lines of every `WINDOW_SECONDS`, drops the rest, and says on the
next kept line how many it dropped. Every other line is kept. Counts per status stay exact in
/metrics; only the log is sampled.
"""

from __future__ import annotations

import logging
import re
import threading
import time

ACCESS_LOGGER = "bentoml.access"
WINDOW_SECONDS = 60.0
UNAUTHORIZED_PER_WINDOW = 10
PERSON_PATH = "/reviews/"
REDACTED = PERSON_PATH + "{person_id}"
# "scheme=http,method=GET,path=/reviews/<id>[,type=...][,length=...]": the id is whatever lies
# between the prefix and the optional content fields BentoML appends.
_IN_REQUEST = re.compile(
    r"path=" + re.escape(PERSON_PATH) + r".*?(?P<tail>(?:,type=[^,]*)?(?:,length=\d*)?)$",
    re.DOTALL,
)


class RedactPersonIds(logging.Filter):
    """Replace the person id in a `/reviews/<person_id>` path of an access-log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(a, str) and PERSON_PATH in a for a in record.args
        ):
            record.args = tuple(_redacted(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str) and PERSON_PATH in record.msg:
            record.msg = _IN_REQUEST.sub(lambda m: "path=" + REDACTED + m["tail"], record.msg)
        return True


def _redacted(text: str) -> str:
    if text.startswith(PERSON_PATH):  # the bare path (BentoML's websocket lines)
        return REDACTED
    return _IN_REQUEST.sub(lambda m: "path=" + REDACTED + m["tail"], text)


class UnauthorizedSampler(logging.Filter):
    """Keep at most `limit` access-log lines of 401 answers per `window` seconds."""

    def __init__(
        self, *, limit: int = UNAUTHORIZED_PER_WINDOW, window: float = WINDOW_SECONDS
    ) -> None:
        super().__init__()
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._window_start = float("-inf")
        self._kept = 0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not _is_unauthorized(record):
            return True
        with self._lock:
            now = time.monotonic()
            if now - self._window_start >= self.window:
                self._window_start, self._kept = now, 0
            if self._kept >= self.limit:
                self._dropped += 1
                return False
            self._kept += 1
            dropped, self._dropped = self._dropped, 0
        if dropped:
            record.msg = f"{record.msg} ({dropped} earlier 401 lines not logged)"
        return True


def _is_unauthorized(record: logging.LogRecord) -> bool:
    # The middleware logs "%s (%s) (%s) %.3fms" with the response part as "status=401,...".
    args = record.args if isinstance(record.args, tuple) else ()
    return len(args) >= 3 and str(args[2]).startswith("status=401")


def sample_unauthorized() -> UnauthorizedSampler:
    """Install the person-id redaction and the sampler on BentoML's access logger once per
    process; return the sampler."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactPersonIds) for f in logger.filters):
        logger.addFilter(RedactPersonIds())
    for existing in logger.filters:
        if isinstance(existing, UnauthorizedSampler):
            return existing
    sampler = UnauthorizedSampler()
    logger.addFilter(sampler)
    return sampler
