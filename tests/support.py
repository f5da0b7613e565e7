"""Helpers the tests share: ports, the emulator's executable, corpora on disk, byte snapshots of outputs."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"GCS emulator did not open port {port} within {timeout} s")


def emulator_command() -> list[str]:
    """The GCS emulator of this interpreter's environment (also when its scripts are not on PATH)."""
    return [sys.executable, "-m", "gcp_storage_emulator"]


def snapshot(root: str, sub: str = "", fs=None) -> dict[str, bytes]:
    """Every file under ``root`` (or ``root/sub``) for byte-exact comparison of two runs' outputs.

    JSON reports lose their timing field, and every mention of ``root`` itself is neutralised, so two
    runs into different roots compare equal when they wrote the same things. ``fs`` defaults to local.
    """
    import json

    import fsspec

    fs = fs or fsspec.filesystem("file")
    fs.invalidate_cache()
    bare = str(root).split("://", 1)[-1].rstrip("/")
    out = {}
    for path in sorted(fs.find(f"{bare}/{sub}" if sub else bare)):
        data = fs.cat_file(path)
        if path.rsplit("/", 1)[-1] in ("report.json", "info.json"):
            doc = json.loads(data)
            doc.pop("elapsed_s", None)
            data = json.dumps(doc, sort_keys=True).encode()
        out[path[len(bare):].lstrip("/")] = data.replace(str(root).encode(), b"<ROOT>")
    return out


def write_corpus(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root
