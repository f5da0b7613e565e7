"""Object-store faults on a real GCS emulator: requests dropped, refused, answered with 503, answers
lost, delays, and the emulator stopped mid-run (then restarted, or not). Nothing may be lost, duplicated
or left looking complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import fsspec
import pytest

import crash_jobs
import midi_factory
from support import emulator_command, free_port, snapshot, wait_for_port
from fault_proxy import FaultProxy

pytestmark = pytest.mark.slow
JOB = [sys.executable, crash_jobs.__file__]
FAULT_SEEDS = [int(s) for s in os.environ.get("MELODYFLOW_FAULT_SEEDS", "7").split(",")]


class DiskEmulator:
    """A private gcp-storage-emulator that keeps objects on disk, so it can be stopped and restarted."""

    def __init__(self, base, bucket="faults"):
        self.base, self.bucket, self.port = str(base), bucket, free_port()
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([*emulator_command(), "start", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--default-bucket", self.bucket],
                                     env={**os.environ, "STORAGE_BASE": self.base},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def disk_emulator(tmp_path):
    emu = DiskEmulator(tmp_path / "gcs")
    emu.start()
    yield emu
    if emu.proc is not None:
        emu.stop()


def gcs(endpoint: str) -> fsspec.AbstractFileSystem:
    return fsspec.filesystem("gs", endpoint_url=endpoint, token="anon", skip_instance_cache=True)


def upload_corpus(fs, prefix: str, n: int) -> None:
    files = {f"tunes/t{i:03d}.mid": midi_factory.melodic_midi(i) for i in range(n)}
    files.update({"bad/empty.mid": b"", "bad/text.mid": b"hello\n", "tunes/dup.mid": files["tunes/t000.mid"]})
    for rel, data in files.items():
        fs.pipe_file(f"{prefix}/{rel}", data)


def run_jobs(endpoint: str, *jobs: list[str], env: dict | None = None, timeout: float = 400):
    env = {**os.environ, "STORAGE_EMULATOR_HOST": endpoint, **(env or {})}
    for args in jobs:
        proc = subprocess.run([*JOB, *args], env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            return proc
    return proc


@pytest.mark.parametrize("seed", FAULT_SEEDS)
def test_flaky_store_through_a_fault_proxy_gives_the_clean_result(gcs_emulator, gcs_bucket, seed):
    fs = gcs(gcs_emulator)
    upload_corpus(fs, f"{gcs_bucket}/corpus", 10)
    src = f"{gcs_bucket}/corpus"
    jobs = lambda root: (["ingest", src, root], ["dataset", root])  # noqa: E731
    clean = run_jobs(gcs_emulator, *jobs(f"{gcs_bucket}/clean"))
    assert clean.returncode == 0, clean.stderr[-3000:]

    host, port = gcs_emulator.split("://", 1)[1].split(":")
    proxy = FaultProxy((host, int(port)), drop=0.08, error=0.08, lose_response=0.04, delay=0.1, seed=seed)
    try:
        flaky = run_jobs(proxy.url, *jobs(f"{gcs_bucket}/flaky"))
    finally:
        proxy.close()
    assert flaky.returncode == 0, flaky.stderr[-3000:]
    assert proxy.faults >= 5, proxy.counts
    print(f"fault proxy seed {seed}: {dict(proxy.counts)}")  # figures for docs/reliability.md (pytest -s)
    assert snapshot(f"{gcs_bucket}/flaky", fs=fs) == snapshot(f"{gcs_bucket}/clean", fs=fs)


def _wait_for_object(fs, prefix: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fs.invalidate_cache()
        try:
            if fs.find(prefix):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"nothing appeared under {prefix}")


def test_emulator_stopped_mid_write_and_restarted_the_run_completes_exactly(disk_emulator):
    fs = gcs(disk_emulator.url)
    bucket = f"gs://{disk_emulator.bucket}"
    upload_corpus(fs, f"{bucket}/corpus", 120)
    env = {**os.environ, "STORAGE_EMULATOR_HOST": disk_emulator.url}
    job = subprocess.Popen([*JOB, "ingest", f"{bucket}/corpus", f"{bucket}/outage"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_object(fs, f"{disk_emulator.bucket}/outage/notesequences")
    disk_emulator.stop()
    time.sleep(3.0)
    disk_emulator.start()
    _, stderr = job.communicate(timeout=400)
    assert job.returncode == 0, stderr[-3000:]

    clean = run_jobs(disk_emulator.url, ["ingest", f"{bucket}/corpus", f"{bucket}/clean"])
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert snapshot(f"{bucket}/outage", fs=fs) == snapshot(f"{bucket}/clean", fs=fs)


def test_emulator_gone_for_good_fails_naming_the_url_and_publishes_nothing(disk_emulator):
    fs = gcs(disk_emulator.url)
    bucket = f"gs://{disk_emulator.bucket}"
    upload_corpus(fs, f"{bucket}/corpus", 120)
    env = {**os.environ, "STORAGE_EMULATOR_HOST": disk_emulator.url, "MELODYFLOW_STORAGE_RETRIES": "0"}
    job = subprocess.Popen([*JOB, "ingest", f"{bucket}/corpus", f"{bucket}/outage"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_object(fs, f"{disk_emulator.bucket}/outage/notesequences")
    disk_emulator.stop()
    _, stderr = job.communicate(timeout=300)
    assert job.returncode != 0
    assert "StorageError" in stderr and f"{bucket}/" in stderr and "failed after 1 attempts" in stderr, stderr[-3000:]

    disk_emulator.start()
    fs = gcs(disk_emulator.url)
    leftovers = fs.find(f"{disk_emulator.bucket}/outage")
    assert leftovers and not any(p.endswith("/COMPLETED") for p in leftovers), "partial output looks complete"
    again = run_jobs(disk_emulator.url, ["ingest", f"{bucket}/corpus", f"{bucket}/outage"])
    assert again.returncode == 0, again.stderr[-3000:]
    clean = run_jobs(disk_emulator.url, ["ingest", f"{bucket}/corpus", f"{bucket}/clean"])
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert snapshot(f"{bucket}/outage", fs=fs) == snapshot(f"{bucket}/clean", fs=fs)
