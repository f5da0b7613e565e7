"""One integer that an isolated child sets and its caller reads, with no system call on either side.

Why: a child working through a batch (a dataset unit's sequences) sets the slot to the index of the item
it starts; the caller's watchdog reads it while waiting for the reply.  When one item runs over its time
limit, the watchdog knows which one it is and kills the child, and the batch is re-run without it.  A
store into shared memory costs nanoseconds, where a message per item through the pipe would cost a
round trip: the normal case stays one call per batch.

The slot lives in a ``memfd`` (an anonymous file in memory, gone when its last user closes it), which the
child opens through ``/proc/<caller pid>/fd/<fd>``: no name on disk to clean up after a killed job, and
only processes allowed to inspect the caller (its own user) can open it.  Where there is no ``memfd``, a
temporary file stands in and is removed on :meth:`ProgressSlot.close`.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from contextlib import contextmanager
from collections.abc import Iterator

IDLE = -1  # not working on any item (before the first, after the last)
_SIZE = 8


class ProgressSlot:
    """The caller's side: create the slot, hand :attr:`path` to the child, read :attr:`value`."""

    def __init__(self) -> None:
        self._temp: str | None = None
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("melodyflow-progress", os.MFD_CLOEXEC)
            self.path = f"/proc/{os.getpid()}/fd/{fd}"
        else:  # pragma: no cover - not Linux
            fd, self._temp = tempfile.mkstemp(prefix="melodyflow-progress-")
            self.path = self._temp
        os.ftruncate(fd, _SIZE)
        self._fd = fd
        self._map = mmap.mmap(fd, _SIZE)
        self._view = memoryview(self._map).cast("q")
        self._view[0] = IDLE

    @property
    def value(self) -> int:
        return int(self._view[0])

    @value.setter
    def value(self, index: int) -> None:
        self._view[0] = index

    def close(self) -> None:
        if self._fd < 0:
            return
        self._view.release()
        self._map.close()
        os.close(self._fd)
        self._fd = -1
        if self._temp is not None:
            os.remove(self._temp)

    def __enter__(self) -> "ProgressSlot":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def attach(path: str | None) -> Iterator[memoryview | list[int]]:
    """The child's side: a one-item sequence to store the current index into (``slot[0] = i``).

    ``path=None`` (nobody watching, e.g. the work runs in the caller itself) gives a plain list.
    """
    if path is None:
        yield [IDLE]
        return
    with open(path, "r+b") as fh, mmap.mmap(fh.fileno(), _SIZE) as shared:
        view = memoryview(shared).cast("q")
        try:
            yield view
        finally:
            view[0] = IDLE
            view.release()
