"""A local working copy of RUN_DIR, mirrored to object storage.

TensorFlow writes checkpoints and event files only to local paths here (it cannot reach the GCS emulator
and has no ``s3://``), so training writes into a local mirror and pushes each finished file through
fsspec.  Checkpoint data files are pushed before the ``checkpoint`` index that names them, so a run killed
during a push never leaves an index pointing at missing files.
"""

from __future__ import annotations

import hashlib
import os

from melodyflow.transforms.io import storage


class RunDir:
    def __init__(self, url: str):
        self.url = url.rstrip("/") if "://" in url else url
        self.remote = storage.protocol_of(url) != "file"
        if self.remote:
            self.local = storage.cache_dir("runs", hashlib.sha256(self.url.encode()).hexdigest()[:16])
        else:
            self.local = os.path.abspath(url)
        os.makedirs(self.local, exist_ok=True)
        self._pushed: dict[str, tuple[int, int]] = {}

    def local_path(self, *parts: str) -> str:
        return os.path.join(self.local, *parts)

    def remote_url(self, *parts: str) -> str:
        return storage.join(self.url, *parts)

    def pull(self, subdir: str) -> None:
        """Replace the local copy of ``subdir`` with RUN_DIR's (resuming on a new machine)."""
        if not self.remote:
            return
        local = self.local_path(subdir)
        os.makedirs(local, exist_ok=True)
        for name in os.listdir(local):
            os.remove(os.path.join(local, name))
        for url in storage.list_dir(self.remote_url(subdir)):
            name = url.rstrip("/").rsplit("/", 1)[-1]
            with open(os.path.join(local, name), "wb") as fh:
                fh.write(storage.read_bytes(url))

    def push(self, subdir: str, last: tuple[str, ...] = ()) -> None:
        """Upload new or changed files of ``subdir`` (``last`` ones after the rest); delete stale ones."""
        if not self.remote:
            return
        local = self.local_path(subdir)
        if not os.path.isdir(local):
            return
        names = sorted(os.listdir(local), key=lambda n: (n in last, n))
        for name in names:
            path = os.path.join(local, name)
            if not os.path.isfile(path):
                continue
            st = os.stat(path)
            sig = (st.st_size, st.st_mtime_ns)
            key = f"{subdir}/{name}"
            if self._pushed.get(key) == sig:
                continue
            with open(path, "rb") as fh:
                storage.write_bytes(self.remote_url(subdir, name), fh.read())
            self._pushed[key] = sig
        present = set(names)
        for url in storage.list_dir(self.remote_url(subdir)):
            name = url.rstrip("/").rsplit("/", 1)[-1]
            if name not in present:
                storage.remove_tree(url)
                self._pushed.pop(f"{subdir}/{name}", None)
