"""Run an untrusted parser in a long-lived child process with a time limit and a memory cap.

Scraped corpora contain files that make MIDI parsers loop for minutes, allocate gigabytes (pretty_midi
builds a tick table as long as the largest delta time) or crash the interpreter.  One child process per
worker keeps the per-file cost at a pipe round trip, while a hang or a crash costs only that file and a
restart of the child — never the worker or the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from melodyflow.transforms.sandbox.fork_template import (ForkedChild, TemplateUnavailable, child_interpreter_env,
                                                        fork_child)


class IsolatedCallError(Exception):
    """Base class for failures of a call made through :class:`IsolatedWorker`."""

    reason = "error"


class CallTimedOut(IsolatedCallError):
    reason = "timeout"


class WorkerCrashed(IsolatedCallError):
    reason = "crashed"


class RemoteError(IsolatedCallError):
    """The function raised in the child; carries the exception's type name and message."""

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        # Readers often wrap a MemoryError (numpy's included) in their own error type.
        out_of_memory = "MemoryError" in type_name or "MemoryError" in message or "Unable to allocate" in message
        self.reason = "out_of_memory" if out_of_memory else "parse_error"


@dataclass(frozen=True)
class Limits:
    """Per-call limits enforced by :class:`IsolatedWorker`."""

    timeout_s: float = 60.0
    memory_mb: int = 4096

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.memory_mb < 256:
            raise ValueError("memory_mb must be at least 256")


class IsolatedWorker:
    """Calls module-level functions in a child process, one at a time.

    The child is forked from the job's parser template (:mod:`melodyflow.transforms.sandbox.fork_template`)
    when ``template`` names one and it answers, or else a fresh interpreter (``python -m
    melodyflow.transforms.sandbox.call_loop``) talking over two pipes — not ``multiprocessing``'s spawn,
    which re-imports the caller's ``__main__`` and so breaks under scripts, notebooks and Beam's worker
    harness.  It starts lazily and restarts after a
    timeout or crash.
    """

    def __init__(self, limits: Limits = Limits(), prepare: Callable[[], Any] | None = None,
                 template: str | None = None):
        """``prepare`` runs in every new child before its first call, outside the time limit (e.g.
        importing the parsers, which can take longer than a small per-file limit); a child forked from
        a template that ran it already finds it done.  ``template``: a parser template's address."""
        self._limits = limits
        self._prepare = prepare
        self._template = template
        self._prepared: set[Callable[[], Any]] = set()  # run in the current child
        self._proc: subprocess.Popen | ForkedChild | None = None
        self._inbox: Connection | None = None  # replies from the child
        self._outbox: Connection | None = None  # requests to the child

    @property
    def forked(self) -> bool:
        """Whether the current child came from the template (for tests and benchmarks)."""
        return isinstance(self._proc, ForkedChild)

    def _start(self) -> None:
        if self._template is not None:
            try:
                self._proc, channel = fork_child(self._template, self._limits.memory_mb)
            except TemplateUnavailable:
                self._template = None  # gone for good (the job's driver owns it): start our own from now on
            else:
                self._inbox = Connection(channel, writable=False)
                self._outbox = Connection(os.dup(channel), readable=False)
        if self._proc is None:
            self._spawn()
        self._prepared.clear()
        self._run_prepare(os.getpid)  # the child is up and serving before any call's time limit starts
        if self._prepare is not None:
            self._run_prepare(self._prepare)

    def _spawn(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        cmd = [sys.executable, "-m", "melodyflow.transforms.sandbox.call_loop", str(to_child_r), str(from_child_w),
               str(self._limits.memory_mb)]
        try:
            self._proc = subprocess.Popen(cmd, pass_fds=(to_child_r, from_child_w), env=child_interpreter_env(),
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._outbox = Connection(to_child_w, readable=False)
        self._inbox = Connection(from_child_r, writable=False)

    def _run_prepare(self, prepare: Callable[[], Any]) -> None:
        assert self._inbox is not None and self._outbox is not None
        try:
            self._outbox.send((prepare, (), {}))
            ok = self._inbox.poll(300) and self._inbox.recv()[0] == "ok"
        except (EOFError, OSError):
            ok = False
        if not ok:
            self._kill()
            raise WorkerCrashed("the parser process failed to start")
        self._prepared.add(prepare)

    def _ensure_running(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            self._kill()
            self._start()

    def ensure(self, prepare: Callable[[], Any]) -> None:
        """Run ``prepare`` in the child once (again after a restart), outside the time limit.

        For preparation that only some calls need: a child that never meets such a call never pays
        for it (the compiled MIDI reader's 0.5 s load, in a child that only parses ABC files).
        """
        self._ensure_running()
        if prepare not in self._prepared:
            self._run_prepare(prepare)

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            if isinstance(self._proc, ForkedChild):
                self._proc.close()
        for conn in (self._inbox, self._outbox):
            if conn is not None:
                conn.close()
        self._proc = self._inbox = self._outbox = None

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in the child, within the worker's time limit."""
        return self._call(fn, args, kwargs, self._limits.timeout_s, None)

    def call_watched(self, watchdog: Callable[[], str | None], tick_s: float, fn: Callable[..., Any],
                     *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in the child, with no overall time limit: every ``tick_s`` while it
        runs, ``watchdog()`` decides.  A message from it kills the child and raises
        :class:`CallTimedOut` with that message.  For calls that do many items, each with its own limit
        (the watchdog reads which item the child is on, e.g. from a
        :class:`~melodyflow.transforms.sandbox.progress_slot.ProgressSlot`)."""
        return self._call(fn, args, kwargs, tick_s, watchdog)

    def _call(self, fn: Callable[..., Any], args: tuple, kwargs: dict, wait_s: float,
              watchdog: Callable[[], str | None] | None) -> Any:
        self._ensure_running()
        assert self._inbox is not None and self._outbox is not None
        try:
            self._outbox.send((fn, args, kwargs))
            while not self._inbox.poll(wait_s):
                verdict = f"gave up after {wait_s:g} s" if watchdog is None else watchdog()
                if verdict:
                    self._kill()
                    raise CallTimedOut(verdict)
            reply = self._inbox.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError) as exc:
            code = None
            if self._proc is not None:
                try:  # EOF can arrive a moment before the child is reaped
                    code = self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            self._kill()
            raise WorkerCrashed(f"parser process died (exit code {code}): {exc!r}") from None
        if reply[0] == "ok":
            return reply[1]
        raise RemoteError(reply[1], reply[2])

    def close(self) -> None:
        self._kill()

    def __enter__(self) -> "IsolatedWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
