"""The isolated parser's side: run each pickled call it receives, reply, until its caller hangs up.

Both ways of starting an isolated parser end here: a fresh interpreter (``python -m`` this module) and a
child forked from the parser template (:mod:`melodyflow.transforms.sandbox.fork_template`).
"""

from __future__ import annotations

import pickle
import sys
from multiprocessing.connection import Connection


def serve_calls(read_fd: int, write_fd: int, memory_mb: int) -> None:
    """The isolated parser's loop: run each pickled call, reply, until the worker hangs up."""
    import resource
    import warnings

    # Parsers warn per file (e.g. pretty_midi on meta events in non-zero tracks); the outcome and
    # dead letters carry what matters, so keep worker stderr readable.
    warnings.simplefilter("ignore")

    limit = memory_mb * 1024 * 1024
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):  # pragma: no cover - platform without RLIMIT_AS
        pass
    inbox = Connection(read_fd, writable=False)
    outbox = Connection(write_fd, readable=False)
    while True:
        try:
            request = inbox.recv_bytes()
        except EOFError:
            return
        try:
            fn, args, kwargs = pickle.loads(request)
            outbox.send(("ok", fn(*args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001 - report anything, keep serving
            try:
                outbox.send(("err", type(exc).__name__, str(exc)[:2000]))
            except BaseException:  # noqa: BLE001 - e.g. unpicklable or out of memory while sending
                return


if __name__ == "__main__":
    serve_calls(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
