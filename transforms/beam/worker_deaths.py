"""Beam's multi-processing direct runner, made to fail a job whose SDK worker process dies.

Unpatched, the runner waits forever for the answer to a dead worker's bundle: the thread that started the
worker raises "Worker subprocess exited with return code -9" where nobody listens.  And once the job
does fail, closing it waits for every other worker to finish on its own, which a worker in the middle
of a bundle whose inputs will never come does not.

Patched (:func:`fail_jobs_whose_worker_dies`), each worker gets a watcher: when its process ends before
the runner closes it, the worker's pending requests and its data channel fail with :class:`WorkerDied`
(the runner's waits wake within a second), and closing the job first stops the other workers of the
same job.  Nothing is published then (the driver writes completion markers after the job), and a re-run
redoes the job.  Killing a whole job is a different matter: see ``tests/test_crash_recovery.py``.
"""

from __future__ import annotations

import subprocess
import threading
import weakref
from typing import Any


class WorkerDied(RuntimeError):
    """A Beam SDK worker process ended in the middle of a job (killed, or out of memory)."""


class _WorkerProcesses:
    """Stands in for the ``subprocess`` module inside Beam's ``local_job_service``: starts each SDK worker
    as Beam does, but with ``exec`` (so the process is the worker itself, not a shell around it) and keeps
    it by worker id, so that a failing job can stop its workers."""

    def __init__(self) -> None:
        self.started: dict[str, subprocess.Popen] = {}

    def Popen(self, command: str, *, shell: bool, env: dict, **kwargs: Any) -> subprocess.Popen:  # noqa: N802
        process = subprocess.Popen(f"exec {command}" if shell else command, shell=shell, env=env, **kwargs)
        self.started[env.get("WORKER_ID", "")] = process
        return process

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)


_PROCESSES = _WorkerProcesses()
_FAILING: weakref.WeakSet = weakref.WeakSet()  # the gRPC servers (one per job) of jobs that lost a worker


def _watch(handler) -> None:
    handler.worker_thread.join()
    _PROCESSES.started.pop(handler.worker_id, None)
    if getattr(handler, "_melodyflow_closing", False):
        return
    _FAILING.add(handler._grpc_server)
    error = WorkerDied(f"a Beam worker process ({handler.worker_id}) died in the middle of the job; nothing was "
                       "published, and a re-run redoes the job")
    handler.control_conn.abort(error)
    handler.data_conn._exception = error  # what the channel's readers raise when they next wake


def fail_jobs_whose_worker_dies() -> None:
    """Patch Beam's subprocess worker handler (once per process); see the module's docstring."""
    from apache_beam.runners.portability import local_job_service
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    cls = worker_handlers.SubprocessSdkWorkerHandler
    if getattr(cls, "_melodyflow_watched", False):
        return
    start_worker, close = cls.start_worker, cls.close

    def watched_start_worker(self) -> None:
        start_worker(self)
        threading.Thread(target=_watch, args=(self,), name="beam-worker-watch", daemon=True).start()

    def watched_close(self) -> None:
        self._melodyflow_closing = True
        process = _PROCESSES.started.get(self.worker_id)
        if self._grpc_server in _FAILING and process is not None and process.poll() is None:
            process.kill()  # it may wait forever for the rest of a bundle the failed job will not send
        close(self)

    local_job_service.subprocess = _PROCESSES  # type: ignore[assignment]
    cls.start_worker, cls.close = watched_start_worker, watched_close  # type: ignore[method-assign]
    cls._melodyflow_watched = True  # type: ignore[attr-defined]
