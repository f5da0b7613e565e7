"""Shared fixtures: a real GCS emulator on loopback, one Prefect test harness, generated corpora."""

from __future__ import annotations

import os
import subprocess
import uuid
import warnings
from pathlib import Path

import pytest

# Before anything imports gcsfs: without it every gcsfs call stalls ~60 s against the emulator.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
# CLI subprocesses of the tests use Prefect's temporary server, not melodyflow's shared background one,
# so a test run leaves no server behind (tests that run flows in-process use the harness's API).
os.environ.setdefault("MELODYFLOW_PREFECT_SERVER", "ephemeral")

import midi_factory  # noqa: E402
from support import emulator_command, free_port, wait_for_port, write_corpus  # noqa: E402

warnings.filterwarnings("ignore", module="pretty_midi")
warnings.filterwarnings("ignore", module="pydub")


@pytest.fixture(scope="session")
def gcs_emulator():
    """``STORAGE_EMULATOR_HOST`` of a running gcp-storage-emulator on 127.0.0.1.

    ``.ci/run`` starts one and exports the variable; otherwise the fixture starts (and stops) its own.
    """
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    proc = None
    if not host:
        port = free_port()
        proc = subprocess.Popen([*emulator_command(), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
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
