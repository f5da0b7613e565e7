"""Live progress of a Beam job, on any runner: workers drop tiny count files, the driver sums them.

Beam's metrics are not readable while a FnApiRunner or Dask job runs, and workers of a remote runner
cannot call back into the driver; a shared directory under the job's output works everywhere.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable

from melodyflow.transforms.io import storage

PROGRESS_DIR = "_progress"


def report(progress_dir: str, count: int) -> None:
    """Called by workers: ``count`` more units are done."""
    if count:
        storage.write_text(storage.join(progress_dir, f"{uuid.uuid4().hex}.json"), json.dumps({"done": count}),
                           durable=False)


class ProgressWatcher:
    """Polls ``progress_dir`` in a thread and calls ``callback(done, total)`` when the count grows."""

    def __init__(self, progress_dir: str, total: int, callback: Callable[[int, int], None], every_s: float = 2.0):
        self._dir, self._total, self._callback, self._every = progress_dir, total, callback, every_s
        self._seen: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="beam-progress", daemon=True)
        self._last = -1

    def _poll(self) -> None:
        for url in storage.list_dir(self._dir):
            if url not in self._seen:
                try:
                    self._seen[url] = int(json.loads(storage.read_text(url))["done"])
                except (FileNotFoundError, ValueError, KeyError):
                    continue  # being written
        done = sum(self._seen.values())
        if done != self._last:
            self._last = done
            self._callback(min(done, self._total), self._total)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._poll()
            except Exception:  # noqa: BLE001 - progress must never break the job
                pass

    def __enter__(self) -> "ProgressWatcher":
        storage.remove_tree(self._dir)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if exc[0]:  # the job failed, maybe because the store is down: its re-run removes the whole directory
            return
        try:
            self._poll()
        except Exception:  # noqa: BLE001
            pass
        storage.remove_tree(self._dir)
