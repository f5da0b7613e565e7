"""gcsfs as melodyflow uses it: one attempt per request, bounded waits, no tracebacks in the logs.

Why: gcsfs retries every request itself (six attempts, 1 s .. 16 s apart plus jitter: about 33 s against
a dead endpoint) and logs a full traceback at ERROR when they are spent.  Under
:func:`~melodyflow.transforms.io.storage.retrying` that stacked to minutes before a dead endpoint failed,
and printed tracebacks for a failure melodyflow reports in one line anyway.  Here each request is made
once, with bounded connect and idle-read waits, and ``storage.retrying`` alone decides about retries,
within its deadline.
"""

from __future__ import annotations

import logging
import os

# Must be set before gcsfs is imported anywhere in the process (see storage.py).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import aiohttp  # noqa: E402
import gcsfs  # noqa: E402

# A connection that takes this long to open, or an answer idle this long between two reads, is a
# failed attempt.  A healthy transfer is never idle that long; a large one can take longer in total.
# Short enough that a blackholed endpoint still gets three attempts within the default 30 s deadline.
CONNECT_TIMEOUT_S = 5.0
READ_IDLE_TIMEOUT_S = 10.0
ATTEMPT_BOUND_S = max(CONNECT_TIMEOUT_S, READ_IDLE_TIMEOUT_S)  # the longest a failing attempt can take


class SingleAttemptGCSFileSystem(gcsfs.GCSFileSystem):
    """``gcsfs.GCSFileSystem`` whose requests are attempted once (its ``_request`` without gcsfs's
    retry decorator).  Every operation melodyflow uses (cat, ranged reads, uploads, listings, info,
    removal) goes through ``_request``; only ``get_file``, which melodyflow does not use, has its own
    retrying request."""

    _request = gcsfs.GCSFileSystem._request.__wrapped__  # type: ignore[attr-defined]


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
