"""One pre-imported parser template per machine, from which every worker forks its isolated parser.

Why: an isolated parser is a fresh interpreter that imports note-seq (about a second: note-seq's package
imports bokeh, pandas and scipy).  If each Beam worker started its own, a machine with ``n`` workers
would pay ``n`` of those seconds, and a job would pay them again after every crash or timeout.  So the
job's driver owns one template process that has imported the readers once; a worker asks it for a child
over a Unix socket and gets a fork in milliseconds, already prepared.

The template is the children's parent, so it is the one that can reap them, report how each ended, and
kill one without the risk of hitting a recycled pid.  Each child is tied to its client by a control
connection (a ``SOCK_SEQPACKET`` socket, one message per request):

- client → template ``fork MEMORY_MB``; template → client ``pid PID`` with the client's end of a fresh
  socket pair attached (``SCM_RIGHTS``): the child's request channel;
- client → template ``kill``; template → client ``exit CODE`` once the child has ended, however it ended
  (``CODE`` as :class:`subprocess.Popen` reports it: negative for a signal);
- the client closing the connection kills the child.

Nothing outlives its owner: the template exits when the driver closes (or loses) the lifeline pipe, and
each child is killed by the kernel if the template dies (``PR_SET_PDEATHSIG``).  Anything that goes
wrong on the client's side raises :class:`TemplateUnavailable`, and
:class:`~melodyflow.transforms.sandbox.isolated_worker.IsolatedWorker` falls back to starting its own
interpreter.  Linux only (``SOCK_SEQPACKET``, fd passing, ``prctl``); elsewhere every worker starts its
own parser, as before.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import secrets
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

SUPPORTED = sys.platform.startswith("linux")
_PR_SET_PDEATHSIG = 1
_MESSAGE_BYTES = 64


class TemplateUnavailable(OSError):
    """The template could not provide a child (not started, gone, or refused)."""


def child_interpreter_env() -> dict[str, str]:
    """Environment for a child ``python -m ...`` that can import whatever this process can (as with
    ``multiprocessing``'s spawn)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def _function_name(fn: Callable[[], Any]) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def _load_function(name: str) -> Callable[[], Any]:
    module, _, qualname = name.partition(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


# --- driver side -------------------------------------------------------------------------------------


class ParserTemplate:
    """Owns the template process and its socket for the length of one job (a context manager).

    ``address`` is what workers need; it travels to them inside the DoFn.  It names a socket in Linux's
    abstract namespace: nothing on disk to clean up after a killed job, and the template serves only
    processes of its own user (checked on every connection with ``SO_PEERCRED``).  The process
    starts at once when ``start_now`` (the job's plan shows files that need the isolated parser, so its
    import overlaps the workers' own start-up) and otherwise on the first worker's request: the driver
    binds the socket and hands it to the template when someone knocks, like socket activation, so a job
    whose files never need the parser never pays for it.
    """

    def __init__(self, prepare: Sequence[Callable[[], Any]] = (), *, start_now: bool = False):
        self._prepare = tuple(_function_name(fn) for fn in prepare)
        self._start_now = start_now
        self._address: str | None = None
        self._listener: socket.socket | None = None
        self._lifeline_w: int | None = None
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._stop_r: int | None = None
        self._stop_w: int | None = None
        self._activator: threading.Thread | None = None

    @property
    def address(self) -> str:
        assert self._address is not None, "use the template inside its `with` block"
        return self._address

    def __enter__(self) -> "ParserTemplate":
        self._address = f"\0melodyflow-parsers-{secrets.token_hex(16)}"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._listener.bind(self.address)
        self._listener.listen(64)
        if self._start_now:
            self._spawn()
        else:
            self._stop_r, self._stop_w = os.pipe()
            self._activator = threading.Thread(target=self._activate_on_first_request, daemon=True,
                                               name="parser-template-activation")
            self._activator.start()
        return self

    def _activate_on_first_request(self) -> None:
        assert self._listener is not None and self._stop_r is not None
        ready, _, _ = select.select([self._listener.fileno(), self._stop_r], [], [])
        if self._listener.fileno() in ready:
            self._spawn()

    def _spawn(self) -> None:
        """Start the template with the listening socket; the driver keeps no copy, so if the template
        dies, waiting and later requests are refused at once and workers fall back."""
        with self._lock:
            if self._proc is not None or self._listener is None:
                return
            lifeline_r, self._lifeline_w = os.pipe()
            listen_fd = self._listener.fileno()
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "melodyflow.transforms.sandbox.fork_template", str(listen_fd),
                     str(lifeline_r), *self._prepare],
                    pass_fds=(listen_fd, lifeline_r), env=child_interpreter_env(), stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL)
            except OSError:  # e.g. out of processes: workers are refused and start their own parsers
                os.close(self._lifeline_w)
                self._lifeline_w = None
            finally:
                os.close(lifeline_r)
                self._listener.close()
                self._listener = None

    def __exit__(self, *exc: object) -> None:
        if self._stop_w is not None:
            os.close(self._stop_w)  # wakes the activation thread, which then starts nothing
            self._stop_w = None
        if self._activator is not None:
            self._activator.join()
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            if self._lifeline_w is not None:
                os.close(self._lifeline_w)  # the template kills its children and exits
                self._lifeline_w = None
            if self._proc is not None:
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        if self._stop_r is not None:
            os.close(self._stop_r)
            self._stop_r = None

    @property
    def started(self) -> bool:
        return self._proc is not None


# --- worker side -------------------------------------------------------------------------------------


class ForkedChild:
    """A child of the template, seen from the worker that asked for it; quacks like the parts of
    :class:`subprocess.Popen` that :class:`~melodyflow.transforms.sandbox.isolated_worker.IsolatedWorker` uses."""

    def __init__(self, control: socket.socket, pid: int):
        self._control = control
        self.pid = pid
        self.returncode: int | None = None

    def _read_exit(self, timeout: float | None) -> None:
        self._control.settimeout(timeout)
        try:
            message = self._control.recv(_MESSAGE_BYTES)
        except socket.timeout:
            raise subprocess.TimeoutExpired(f"parser {self.pid}", timeout or 0) from None
        except OSError:
            message = b""
        if message.startswith(b"exit "):
            self.returncode = int(message.split()[1])
        else:  # the template is gone, and its children with it (PR_SET_PDEATHSIG)
            self.returncode = -signal.SIGKILL

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._control], [], [], 0)[0]:
            self._read_exit(None)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._read_exit(timeout)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                self._control.send(b"kill")
            except OSError:
                pass

    def close(self) -> None:
        self._control.close()


def fork_child(address: str, memory_mb: int, timeout_s: float = 300.0) -> tuple[ForkedChild, int]:
    """A fresh child of the template at ``address`` and the fd of its request channel (a socket that
    carries both directions).  ``timeout_s`` covers a template still importing its readers."""
    if not SUPPORTED:
        raise TemplateUnavailable("parser templates need Linux")
    control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        control.settimeout(timeout_s)
        control.connect(address)
        control.send(b"fork %d" % memory_mb)
        message, fds, _, _ = socket.recv_fds(control, _MESSAGE_BYTES, 1)
    except OSError as exc:  # refused, gone, timed out (socket.timeout is an OSError)
        control.close()
        raise TemplateUnavailable(f"no parser template at {address}: {exc}") from exc
    if not message.startswith(b"pid ") or len(fds) != 1:
        control.close()
        for fd in fds:
            os.close(fd)
        raise TemplateUnavailable(f"the parser template at {address} refused: {message!r}")
    return ForkedChild(control, int(message.split()[1])), fds[0]


# --- the template process ----------------------------------------------------------------------------


class _Template:
    """The template's loop: accept clients, fork on request, reap, report exits, kill on request."""

    def __init__(self, listener: socket.socket, lifeline: int):
        self._listener = listener
        self._lifeline = lifeline
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._selector = selectors.DefaultSelector()
        self._child_of: dict[socket.socket, int] = {}  # control connection → its child's pid
        self._control_of: dict[int, socket.socket] = {}  # child pid → its control connection

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the wakeup fd is written
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self._selector.register(self._listener, selectors.EVENT_READ, self._accept)
        self._selector.register(self._lifeline, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._reap)
        try:
            while True:
                for key, _ in self._selector.select():
                    if key.data is None:  # lifeline: the driver is done (or gone)
                        return
                    key.data(key.fileobj)
        finally:
            for pid in list(self._control_of):
                self._signal(pid, signal.SIGKILL)

    def _accept(self, listener: socket.socket) -> None:
        try:
            control, _ = listener.accept()
        except OSError:
            return
        _, uid, _ = struct.unpack("3i", control.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
        if uid != os.getuid():  # a child runs whatever it is sent: only for our own user's processes
            control.close()
            return
        self._selector.register(control, selectors.EVENT_READ, self._handle)

    def _handle(self, control: socket.socket) -> None:
        try:
            message = control.recv(_MESSAGE_BYTES)
        except OSError:
            message = b""
        pid = self._child_of.get(control)
        if message.startswith(b"fork ") and pid is None:
            try:
                self._fork(control, int(message.split()[1]))
            except (ValueError, OSError) as exc:
                self._drop(control, reply=b"error " + str(exc).encode()[:_MESSAGE_BYTES - 6])
        elif message == b"kill" and pid is not None:
            self._signal(pid, signal.SIGKILL)
        else:  # the client left (or spoke nonsense): its child goes too
            if pid is not None:
                self._signal(pid, signal.SIGKILL)
            self._drop(control)

    def _fork(self, control: socket.socket, memory_mb: int) -> None:
        parent_end, child_end = socket.socketpair()
        template_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            parent_end.close()
            child_end.close()
            raise
        if pid == 0:  # the child: drop everything of the template's, then serve calls until EOF
            code = 1
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() == template_pid:  # else the template died before prctl took hold
                    for fileobj in [key.fileobj for key in self._selector.get_map().values()]:
                        os.close(fileobj if isinstance(fileobj, int) else fileobj.detach())  # type: ignore[attr-defined]
                    self._selector.close()
                    os.close(self._wake_w)
                    parent_end.close()
                    from melodyflow.transforms.sandbox.call_loop import serve_calls

                    fd = child_end.detach()
                    serve_calls(fd, os.dup(fd), memory_mb)
                    code = 0
            finally:
                os._exit(code)
        child_end.close()
        try:
            socket.send_fds(control, [b"pid %d" % pid], [parent_end.fileno()])
        finally:
            parent_end.close()
        self._child_of[control] = pid
        self._control_of[pid] = control

    def _reap(self, wake_r: int) -> None:
        os.read(wake_r, 4096)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            control = self._control_of.pop(pid, None)
            if control is not None:
                del self._child_of[control]
                self._drop(control, reply=b"exit %d" % os.waitstatus_to_exitcode(status))

    def _drop(self, control: socket.socket, reply: bytes | None = None) -> None:
        if reply is not None:
            try:
                control.send(reply)
            except OSError:
                pass
        pid = self._child_of.pop(control, None)
        if pid is not None:  # still running: reaped later without anyone to tell
            self._control_of.pop(pid, None)
        self._selector.unregister(control)
        control.close()

    def _signal(self, pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)  # not yet reaped by us, so the pid cannot have been reused
        except ProcessLookupError:
            pass


def _template_main(listen_fd: int, lifeline: int, prepare: Sequence[str]) -> None:
    import warnings

    warnings.simplefilter("ignore")  # as in every isolated parser: outcomes carry what matters
    for name in prepare:
        _load_function(name)()
    _Template(socket.socket(fileno=listen_fd), lifeline).serve()


if __name__ == "__main__":
    _template_main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
