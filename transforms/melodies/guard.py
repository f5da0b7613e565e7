"""The time and memory limit per sequence of melody extraction: each unit runs in an isolated child.

Melody extraction is pure computation on untrusted data, and a compiled kernel in a loop cannot be
interrupted from inside its process (no signal reaches it, and a worker thread cannot be stopped).  So a
worker hands each whole unit to a long-lived child (:class:`~melodyflow.transforms.sandbox.
isolated_worker.IsolatedWorker`, forked from the job's template where workers share the driver's
machine, under the same address-space cap as the parser), and watches it: the child marks the index of
the sequence it is on in a shared :class:`~melodyflow.transforms.sandbox.progress_slot.ProgressSlot`;
once one index has been current for longer than the limit, the child is killed and the unit re-run with
that sequence refused.  A crash or a ``MemoryError`` is pinned to its sequence the same way.

The normal case costs one call per unit (a unit description in, stats out: the child reads and stages
the records itself) and a store into shared memory per sequence.  ``sequence_timeout_s = 0`` turns the
limit off and extracts in the worker's own process.
"""

from __future__ import annotations

import time

from melodyflow.transforms.io import storage
from melodyflow.transforms.melodies.units import (Refusal, UnitJob, UnitResult, WorkUnit, extract_unit,
                                                  prepare_child, timeout_message)
from melodyflow.transforms.sandbox.isolated_worker import (CallTimedOut, IsolatedWorker, Limits, RemoteError,
                                                           WorkerCrashed)
from melodyflow.transforms.sandbox.progress_slot import IDLE, ProgressSlot

# A failure outside any sequence (reading the unit, writing its staging files) is retried this often in a
# fresh child before the job fails: it is not a property of one sequence, so nothing can be refused.
RETRIES_OUTSIDE_SEQUENCES = 1


def watch_tick(limit_s: float) -> float:
    """How often the watchdog looks: a tenth of the limit, within 10 ms .. 0.5 s (a kill lands at most
    one tick after the limit)."""
    return min(0.5, max(0.01, limit_s / 10))


class ExtractionFailed(RuntimeError):
    """A unit could not be extracted for a reason that is not one sequence's (the job fails)."""


class UnitGuard:
    """Runs :func:`~melodyflow.transforms.melodies.units.extract_unit` for a worker, within the limits.

    ``template``: the address of the job's fork template, when workers share the driver's machine.
    """

    def __init__(self, job: UnitJob, template: str | None = None):
        self._job = job
        settings = job.settings
        self._limit = settings.sequence_timeout_s
        self._worker: IsolatedWorker | None = None
        self._slot: ProgressSlot | None = None
        if self._limit:
            self._worker = IsolatedWorker(Limits(timeout_s=self._limit, memory_mb=settings.memory_limit_mb),
                                          prepare=prepare_child, template=template)
            self._slot = ProgressSlot()
        else:
            prepare_child()

    def run(self, unit: WorkUnit) -> UnitResult:
        if self._worker is None:
            return extract_unit(unit, self._job)
        refused: dict[int, Refusal] = {}
        outside = 0
        while True:
            try:
                return self._call(unit, refused)
            except (CallTimedOut, WorkerCrashed, RemoteError) as exc:
                index = self._failed_index(exc)
                if index is None:
                    outside += 1
                    if outside > RETRIES_OUTSIDE_SEQUENCES:
                        raise ExtractionFailed(storage.redact(
                            f"melody extraction of {unit.shard_url} (part {unit.part} of {unit.parts}) "
                            f"failed outside any sequence: {exc}")) from None
                    continue
                refused[index] = self._refusal(exc)

    def _call(self, unit: WorkUnit, refused: dict[int, Refusal]) -> UnitResult:
        assert self._worker is not None and self._slot is not None
        slot, limit = self._slot, self._limit
        slot.value = IDLE
        current, since = IDLE, time.monotonic()

        def watchdog() -> str | None:
            nonlocal current, since
            index, now = slot.value, time.monotonic()
            if index != current:
                current, since = index, now
            elif index != IDLE and now - since > limit:
                return timeout_message(limit)
            return None

        return self._worker.call_watched(watchdog, watch_tick(limit), extract_unit, unit, self._job, refused,
                                         slot.path)

    def _failed_index(self, exc: Exception) -> int | None:
        """The sequence a failure belongs to, or None: outside any sequence, or not the data's fault."""
        assert self._slot is not None
        if isinstance(exc, RemoteError):
            if exc.type_name == "StorageError":  # the store is down: stop the run, publish nothing
                raise storage.StorageError(str(exc).split(": ", 1)[-1]) from None
            if exc.reason != "out_of_memory":  # a bug outside the per-sequence guard: say so, stop
                raise ExtractionFailed(storage.redact(f"melody extraction failed: {exc}")) from None
        index = self._slot.value
        return None if index == IDLE else index

    def _refusal(self, exc: Exception) -> Refusal:
        if isinstance(exc, CallTimedOut):
            return Refusal("timeout", str(exc))
        if isinstance(exc, RemoteError):
            return Refusal("out_of_memory", str(exc))
        return Refusal("crashed", f"the extraction process died: {exc}")

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
        if self._slot is not None:
            self._slot.close()
