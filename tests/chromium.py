"""A real headless Chromium for page tests, driven over the DevTools protocol (no browser download, no driver).

``.ci/run`` installs Debian's ``chromium-headless-shell``; any Chromium on PATH works. The client is a websocket
(``websockets``, a Prefect dependency) speaking CDP to one page: navigate, evaluate JavaScript, collect console
errors and failed loads, take a screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

BINARIES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")

# Waits until every <img> finished loading and every <audio> has its metadata (or failed), then reports them.
MEDIA_REPORT_JS = """
(async () => {
  const settle = (el, ok, events) => new Promise(resolve => {
    if (ok()) return resolve();
    for (const e of events) el.addEventListener(e, resolve, {once: true});
  });
  const images = [...document.images];
  const audio = [...document.querySelectorAll('audio')];
  const waits = images.map(i => settle(i, () => i.complete, ['load', 'error']))
    .concat(audio.map(a => settle(a, () => a.readyState >= 1 || a.error, ['loadedmetadata', 'error'])));
  await Promise.race([Promise.all(waits), new Promise(r => setTimeout(r, 20000))]);
  return {
    images: images.map(i => ({src: i.getAttribute('src'), width: i.naturalWidth})),
    audio: audio.map(a => ({src: a.getAttribute('src'), duration: a.duration, error: a.error && a.error.code})),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  };
})()
"""


def find_chromium() -> str | None:
    return next((path for name in BINARIES if (path := shutil.which(name))), None)


class CDPError(RuntimeError):
    pass


class Page:
    """One browser tab: commands in order, events kept in ``events`` for later inspection."""

    def __init__(self, ws):
        self.ws, self.events, self._id = ws, [], 0

    def send(self, method: str, timeout: float = 60.0, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == self._id:
                if "error" in message:
                    raise CDPError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("method") == method:
                return message
            self.events.append(message)

    def navigate(self, url: str) -> None:
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise CDPError(f"navigating to {url}: {result['errorText']}")
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str, timeout: float = 60.0):
        result = self.send("Runtime.evaluate", timeout=timeout, expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise CDPError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed network loads seen so far."""
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(params.get("exceptionDetails", {}))[:500])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                out.append(f"log: {entry.get('text')} {entry.get('url', '')}")
            elif method == "Network.loadingFailed" and not params.get("canceled"):
                out.append(f"network: {params.get('errorText')} ({params.get('type')})")
        return out

    def screenshot(self, path: Path, max_height: int = 6000) -> Path:
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height), "scale": 1}
        data = self.send("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@contextlib.contextmanager
def open_page(binary: str, profile: Path, width: int = 1280, height: int = 1000):
    """A fresh headless Chromium with one page; closed (and its process ended) on exit."""
    from websockets.sync.client import connect

    profile.mkdir(parents=True, exist_ok=True)
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start. Its own session: Debian's
    # /usr/bin/chromium* are shell scripts that run the browser as a child, so the whole group is ended on exit.
    proc = subprocess.Popen([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                             f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise CDPError(f"{binary} did not start (exit status {proc.poll()})")
            time.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            target = next(t for t in json.load(answer) if t["type"] == "page")
        with connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
            page = Page(ws)
            for domain in ("Page", "Runtime", "Log", "Network"):
                page.send(f"{domain}.enable")
            page.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
            yield page
    finally:
        _end_group(proc)


def _end_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the browser's process group; SIGKILL if it is still there after 10 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        if _group_gone(proc, timeout=10.0):
            break
    proc.wait()


def _group_gone(proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.poll()  # reap the wrapper script, or its zombie keeps the group alive
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def artifacts_dir(name: str) -> Path:
    """Where screenshots are kept: ``$MELODYFLOW_TEST_ARTIFACTS`` (CI) or ``test-artifacts/`` in the checkout."""
    default = Path(__file__).resolve().parent.parent / "test-artifacts"
    root = Path(os.environ.get("MELODYFLOW_TEST_ARTIFACTS") or default)
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
