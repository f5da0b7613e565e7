"""A local Prefect server that melodyflow commands share, so a command does not pay for a server start.

Without a configured API (``PREFECT_API_URL``, from the environment or the active Prefect profile),
Prefect 3 starts a temporary API server in a subprocess for every command: ten to fifteen seconds of a
short command's time on two cores, and its UI is gone when the command ends. Instead, the first command
starts this server in the background (UI included) and records its address in
``PREFECT_HOME/melodyflow-server.json``; later commands find it there and use it.

- The database is Prefect's own, ``PREFECT_HOME/prefect.db`` (``~/.prefect`` by default), the one the
  temporary servers used, so earlier runs stay visible.
- It listens on 127.0.0.1 only, and stops by itself after ``MELODYFLOW_SERVER_IDLE_MINUTES`` (default
  60) without a request or an open connection; ``melodyflow server stop`` stops it at once.
- A ``PREFECT_API_URL`` of the user's always wins: then this module does nothing.
  ``MELODYFLOW_PREFECT_SERVER=ephemeral`` restores Prefect's temporary server per command (the tests
  use it, so they leave nothing running).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_FILE = "melodyflow-server.json"
LOCK_FILE = "melodyflow-server.lock"
LOG_FILE = "melodyflow-server.log"
MODE_VARIABLE = "MELODYFLOW_PREFECT_SERVER"
IDLE_VARIABLE = "MELODYFLOW_SERVER_IDLE_MINUTES"
DEFAULT_IDLE_MINUTES = 60.0


class ServerStartError(RuntimeError):
    """The background server did not become healthy; the message names its log."""


@dataclass(frozen=True)
class ServerState:
    """What ``PREFECT_HOME/melodyflow-server.json`` records about a running server."""

    pid: int
    port: int
    started: float
    log: str
    prefect_version: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"


def prefect_home() -> Path:
    from prefect.settings import get_current_settings

    return Path(get_current_settings().home).expanduser()


def healthy(api_url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout_s) as response:
            return response.status == 200
    except OSError:
        return False


def read_state(home: Path) -> ServerState | None:
    try:
        return ServerState(**json.loads((home / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def running_server(home: Path) -> ServerState | None:
    """The recorded server, if it answers and runs this Prefect version (after an upgrade, the old one is
    stopped and a new one started)."""
    import prefect

    state = read_state(home)
    if state is None or not healthy(state.api_url):
        return None
    if state.prefect_version != prefect.__version__:
        _terminate(state.pid)
        return None
    return state


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """One command at a time decides whether to start a server (the others wait, then reuse it)."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def idle_minutes() -> float:
    text = os.environ.get(IDLE_VARIABLE, "")
    try:
        return float(text) if text else DEFAULT_IDLE_MINUTES
    except ValueError:
        return DEFAULT_IDLE_MINUTES


def _spawn(home: Path, port: int, minutes: float) -> subprocess.Popen:
    api_url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_UI_API_URL": api_url, "PREFECT_HOME": str(home)}
    with open(home / LOG_FILE, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "melodyflow.flows.local_server", "--port", str(port), "--idle-minutes",
             str(minutes)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            close_fds=True)


def start_server(home: Path, timeout_s: float) -> ServerState:
    """Start the background server and wait until it answers (the caller holds the lock)."""
    port = _free_port()
    process = _spawn(home, port, idle_minutes())
    import prefect

    state = ServerState(pid=process.pid, port=port, started=time.time(), log=str(home / LOG_FILE),
                        prefect_version=prefect.__version__)
    deadline = time.monotonic() + timeout_s
    while not healthy(state.api_url, timeout_s=1.0):
        if process.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            what = (f"exited with status {process.returncode}" if process.returncode is not None
                    else f"did not answer within {timeout_s:.0f} s")
            raise ServerStartError(f"the local Prefect server {what}; see {state.log}, or set PREFECT_API_URL "
                                   "to a server of yours")
        time.sleep(0.1)
    tmp = home / f".{STATE_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(asdict(state)))
    tmp.replace(home / STATE_FILE)
    return state


def ensure_server(log=print) -> ServerState:
    """The running background server, started now when there is none."""
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    home = prefect_home()
    with _locked(home):
        state = running_server(home)
        if state is None:
            log("Starting a local Prefect server for melodyflow (once; later commands reuse it) ...")
            state = start_server(home, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
            log(f"Prefect UI: {state.url} (database in {home}; stops after {idle_minutes():g} idle minutes "
                "or with `melodyflow server stop`)")
    return state


def wants_background_server() -> bool:
    """Whether this command should use (and if needed start) the shared server: only when no API is
    configured and the user did not ask for Prefect's temporary server."""
    from prefect.settings import get_current_settings

    if os.environ.get(MODE_VARIABLE, "background").strip().lower() == "ephemeral":
        return False
    return not get_current_settings().api.url


@contextlib.contextmanager
def prefect_api(log=print) -> Iterator[str | None]:
    """For the duration of a command: the configured API, or the shared background server's.

    The address goes into the environment and Prefect's process-global settings, not a context
    variable: threads that report progress (a Beam job's watcher) must see it too, or Prefect would
    start a temporary server for them.

    On this server, flow runs send no heartbeats: they exist for automations that mark silent runs as
    crashed, which this server has none of, and each flow run's end waits up to a second for its
    heartbeat thread (0.4 s against 1.3 s per flow run, measured). ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``
    set by the user is kept.
    """
    if not wants_background_server():
        yield None
        return
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    state = ensure_server(log)
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = state.api_url
    refresh_global_settings_context()
    heartbeats = any(v in os.environ for v in ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY",
                                               "PREFECT_RUNNER_HEARTBEAT_FREQUENCY"))
    try:
        with temporary_settings(updates={} if heartbeats else {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield state.api_url
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
        refresh_global_settings_context()


def stop_server(home: Path) -> ServerState | None:
    """Stop the recorded server; None when none was running."""
    with _locked(home):
        state = read_state(home)
        if state is None:
            return None
        (home / STATE_FILE).unlink(missing_ok=True)
        return state if _terminate(state.pid) else None


def _terminate(pid: int, timeout_s: float = 10.0) -> bool:
    """SIGTERM (then SIGKILL) to ``pid`` if it is still this module's server; whether it was."""
    import signal

    if not _is_our_server(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _is_our_server(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _is_our_server(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def _is_our_server(pid: int) -> bool:
    """Whether ``pid`` is still this module's server (a recorded pid may have been reused since)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        process_state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return b"melodyflow.flows.local_server" in cmdline and process_state != "Z"


# --- the server process ---------------------------------------------------------------------------

class _ActivityTracker:
    """ASGI middleware: the time of the last request and the number of open connections (a flow run
    holds an events websocket open while it runs, so a long training never looks idle)."""

    def __init__(self, app) -> None:
        self.app = app
        self.last_seen = time.monotonic()
        self.open = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1
            self.last_seen = time.monotonic()

    def idle_for(self) -> float:
        return 0.0 if self.open else time.monotonic() - self.last_seen


def serve(port: int, idle_minutes: float) -> None:
    """Prefect's API and UI (as ``prefect server start`` serves them) on 127.0.0.1:``port``, until
    ``idle_minutes`` pass without a request or an open connection."""
    import threading

    import uvicorn
    from prefect.server.api.server import create_app

    tracker = _ActivityTracker(create_app(final=True))
    server = uvicorn.Server(uvicorn.Config(tracker, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))

    def stop_when_idle() -> None:
        while not server.started and not server.should_exit:  # the idle clock starts once it serves
            time.sleep(0.1)
        tracker.last_seen = time.monotonic()
        while not server.should_exit:
            time.sleep(min(30.0, idle_minutes * 60 / 4))
            if tracker.idle_for() > idle_minutes * 60:
                print(f"idle for {idle_minutes:g} minutes: stopping", flush=True)
                server.should_exit = True

    threading.Thread(target=stop_when_idle, daemon=True).start()
    server.run()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="melodyflow's background Prefect server (started by the CLI)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--idle-minutes", type=float, default=DEFAULT_IDLE_MINUTES)
    args = parser.parse_args(argv)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} serving on 127.0.0.1:{args.port} (pid {os.getpid()})", flush=True)
    serve(args.port, args.idle_minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
