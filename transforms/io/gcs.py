"""gcsfs as melodyflow uses it: quick, bounded retries per request, no tracebacks in the logs.

Why: gcsfs retries every request itself (six attempts, 1 s .. 16 s apart plus jitter: about 33 s against
a dead endpoint) and logs a full traceback at ERROR when they are spent.  Under
:func:`~melodyflow.transforms.io.storage.retrying` that stacked to minutes before a dead endpoint failed,
and printed tracebacks for a failure melodyflow reports in one line anyway.  Here a request is retried
only for a failure that comes back fast (a reset, a refused connection, a 503), at most twice, 0.1 s and
0.3 s later: that keeps an operation made of several requests (a recursive delete, a paged listing, a
multi-part upload) from failing as a whole on one blip, and adds well under a second per attempt.  A
slow failure (no connection within 5 s, no data for 10 s) is not retried here.  ``storage.retrying``
decides about everything else, within its deadline.
"""

from __future__ import annotations

import asyncio
import logging
import os

# Must be set before gcsfs is imported anywhere in the process (see storage.py).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import aiohttp  # noqa: E402
import gcsfs  # noqa: E402
from gcsfs.retry import is_retriable  # noqa: E402

# A connection that takes this long to open, or an answer idle this long between two reads, is a
# failed attempt.  A healthy transfer is never idle that long; a large one can take longer in total.
# Short enough that a blackholed endpoint still gets two attempts within the default 30 s deadline.
CONNECT_TIMEOUT_S = 5.0
READ_IDLE_TIMEOUT_S = 10.0
QUICK_ATTEMPTS = 3  # per request, for failures that come back within QUICK_FAILURE_S
QUICK_FAILURE_S = 1.0
QUICK_BACKOFF_S = (0.1, 0.3)
# The longest one failing storage call attempt can take: a slow failure, or the quick ones before it.
ATTEMPT_BOUND_S = (max(CONNECT_TIMEOUT_S, READ_IDLE_TIMEOUT_S) + (QUICK_ATTEMPTS - 1) * QUICK_FAILURE_S
                   + sum(QUICK_BACKOFF_S))

_ONE_REQUEST = gcsfs.GCSFileSystem._request.__wrapped__  # type: ignore[attr-defined] # without gcsfs's retries


def _quick_retry(exc: Exception) -> bool:
    return is_retriable(exc) or isinstance(exc, (aiohttp.ClientError, ConnectionError))


class BoundedGCSFileSystem(gcsfs.GCSFileSystem):
    """``gcsfs.GCSFileSystem`` whose requests get the quick retries above instead of gcsfs's own.
    Every operation melodyflow uses (cat, ranged reads, uploads, listings, info, removal) goes through
    ``_request``; only ``get_file``, which melodyflow does not use, has its own retrying request."""

    async def _request(self, method, path, *args, **kwargs):
        loop = asyncio.get_running_loop()
        for attempt in range(QUICK_ATTEMPTS):
            started = loop.time()
            try:
                return await _ONE_REQUEST(self, method, path, *args, **kwargs)
            except Exception as exc:
                fast = loop.time() - started < QUICK_FAILURE_S
                if attempt + 1 == QUICK_ATTEMPTS or not fast or not _quick_retry(exc):
                    raise
            await asyncio.sleep(QUICK_BACKOFF_S[attempt])
        raise AssertionError("unreachable")


def request_timeout() -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_IDLE_TIMEOUT_S)


class _NoTracebacks(logging.Filter):
    """Drop gcsfs's records that carry a traceback: every failure they report reaches melodyflow as an
    exception, which it reports once, in one line, naming the URL (``StorageError``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None and record.exc_text is None


_FILTER = _NoTracebacks()


def quiet_tracebacks() -> None:
    for name in ("gcsfs", "gcsfs.credentials", "gcsfs.zonal_file"):  # a logger's filter misses its children
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


quiet_tracebacks()
