"""Shared fixtures: a real GCS emulator on loopback, one Prefect test harness, generated corpora."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
# Before anything imports gcsfs: without it every gcsfs call stalls ~60 s against the emulator.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import midi_factory  # noqa: E402

warnings.filterwarnings("ignore", module="pretty_midi")
warnings.filterwarnings("ignore", module="pydub")


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


def emulator_executable() -> str:
    return shutil.which("gcp-storage-emulator") or os.path.join(os.path.dirname(sys.executable),
                                                                "gcp-storage-emulator")


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


@pytest.fixture(scope="session")
def gcs_emulator():
    """``STORAGE_EMULATOR_HOST`` of a running gcp-storage-emulator on 127.0.0.1.

    ``.ci/run`` starts one and exports the variable; otherwise the fixture starts (and stops) its own.
    """
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    proc = None
    if not host:
        port = free_port()
        proc = subprocess.Popen([emulator_executable(), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(port)
        host = f"http://127.0.0.1:{port}"
        os.environ["STORAGE_EMULATOR_HOST"] = host
    yield host
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=10)
        os.environ.pop("STORAGE_EMULATOR_HOST", None)


@pytest.fixture
def gcs_bucket(gcs_emulator):
    """A fresh, empty bucket on the emulator; returns ``gs://<name>``."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    client = gcs.Client(credentials=AnonymousCredentials(), project="melodyflow-test")
    name = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(name)
    return f"gs://{name}"


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def write_corpus(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture
def small_corpus(tmp_path) -> Path:
    """Eight valid files in nested folders (one duplicated), two formats besides MIDI, one ignored."""
    files = {f"set{i % 2}/tune{i}.mid": midi_factory.random_midi(i, meta_on_track1=(i % 3 == 0),
                                                                 drums=(i == 4))
             for i in range(6)}
    files["set0/Copy Of Tune1.MIDI"] = files["set1/tune1.mid"]
    files["books/two_tunes.abc"] = midi_factory.ABC_TUNEBOOK.encode()
    files["scores/scale.xml"] = midi_factory.MUSICXML.encode()
    files["notes.txt"] = b"not a score"
    return write_corpus(tmp_path / "corpus", files)
