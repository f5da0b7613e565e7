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


@pytest.mark.slow
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
        # Transient faults must be ridden out: a deadline that a busy machine's slow retries cannot reach.
        flaky = run_jobs(proxy.url, *jobs(f"{gcs_bucket}/flaky"), env={"MELODYFLOW_STORAGE_DEADLINE_S": "180"})
    finally:
        proxy.close()
    assert flaky.returncode == 0, flaky.stderr[-3000:]
    assert proxy.faults >= 5, proxy.counts
    print(f"fault proxy seed {seed}: {dict(proxy.counts)}")  # figures for docs/reliability.md (pytest -s)
    assert snapshot(f"{gcs_bucket}/flaky", fs=fs) == snapshot(f"{gcs_bucket}/clean", fs=fs)


def _wait_for_object(fs, prefix: str, timeout: float = 120, staging: bool = False) -> None:
    """Until something exists under ``prefix`` (``staging``: until the Beam job has staged a chunk)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fs.invalidate_cache()
        try:
            found = fs.find(prefix)
            if found and (not staging or any("/_staging/chunk-" in p for p in found)):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"nothing appeared under {prefix}")


@pytest.mark.slow
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


@pytest.mark.slow
def test_emulator_gone_for_good_fails_naming_the_url_and_publishes_nothing(disk_emulator):
    fs = gcs(disk_emulator.url)
    bucket = f"gs://{disk_emulator.bucket}"
    upload_corpus(fs, f"{bucket}/corpus", 120)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELODYFLOW_STORAGE_")}
    env["STORAGE_EMULATOR_HOST"] = disk_emulator.url
    job = subprocess.Popen([*JOB, "ingest", f"{bucket}/corpus", f"{bucket}/outage"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_object(fs, f"{disk_emulator.bucket}/outage/notesequences")
    disk_emulator.stop()
    stopped = time.monotonic()
    _, stderr = job.communicate(timeout=300)
    elapsed = time.monotonic() - stopped
    assert job.returncode != 0
    failure = stderr.strip().splitlines()[-1]  # the job script's uncaught exception
    assert failure.startswith("melodyflow.transforms.io.storage.StorageError: ") and f"{bucket}/" in failure
    assert "failed after" in failure and "out of retries" not in stderr, stderr[-3000:]
    assert elapsed < 40, f"the job failed {elapsed:.1f} s after the store went away (deadline 30 s)"

    disk_emulator.start()
    fs = gcs(disk_emulator.url)
    leftovers = fs.find(f"{disk_emulator.bucket}/outage")
    assert leftovers and not any(p.endswith("/COMPLETED") for p in leftovers), "partial output looks complete"
    again = run_jobs(disk_emulator.url, ["ingest", f"{bucket}/corpus", f"{bucket}/outage"])
    assert again.returncode == 0, again.stderr[-3000:]
    clean = run_jobs(disk_emulator.url, ["ingest", f"{bucket}/corpus", f"{bucket}/clean"])
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert snapshot(f"{bucket}/outage", fs=fs) == snapshot(f"{bucket}/clean", fs=fs)


CLI = [sys.executable, "-m", "melodyflow.flows.cli"]


def _one_line(stderr: str) -> str:
    """The CLI's own error line, after checking that stderr holds nothing like a traceback."""
    assert "Traceback" not in stderr and "out of retries" not in stderr, stderr[-5000:]
    return [line for line in stderr.splitlines() if line.startswith("melodyflow ")][-1]


@pytest.mark.slow
@pytest.mark.parametrize("endpoint", ["refusing", "silent"])
def test_a_dead_endpoint_fails_within_the_deadline_in_one_line(tmp_path, endpoint):
    """Nothing listens (connections refused), or a listener accepts and never answers: either way the
    CLI gives up within the default 30 s deadline, before Prefect starts, with one line naming the URL."""
    import socket

    listener = None
    port = free_port()
    if endpoint == "silent":
        listener = socket.socket()
        listener.bind(("127.0.0.1", port))
        listener.listen(64)  # accepted by the kernel, never read
    env = {**os.environ, "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"}
    env.pop("MELODYFLOW_STORAGE_DEADLINE_S", None)
    started = time.monotonic()
    try:
        proc = subprocess.run([*CLI, "ingest", "gs://corpus-bucket/tunes", "gs://data-bucket/out"], env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        if listener is not None:
            listener.close()
    elapsed = time.monotonic() - started
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == _one_line(proc.stderr), proc.stderr  # exactly one line, nothing else
    assert "gs://corpus-bucket/tunes failed after" in proc.stderr and "nothing was published" in proc.stderr
    assert elapsed < 30, f"took {elapsed:.1f} s"


@pytest.mark.slow
def test_the_deadline_is_configurable_and_zero_means_one_attempt(tmp_path):
    env = {**os.environ, "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}"}
    proc = subprocess.run([*CLI, "--storage-deadline", "0", "dataset", "gs://data-bucket/out"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "listing gs://data-bucket/out failed after 1 attempt in" in _one_line(proc.stderr), proc.stderr


@pytest.mark.slow
def test_an_endpoint_dying_mid_run_fails_the_cli_in_one_line_without_tracebacks(disk_emulator):
    """With one worker (Beam runs the job in the CLI's process).  Beam's multi-processing workers print a
    failed bundle's traceback to their stderr themselves (a print, not a log record): see
    docs/reliability.md."""
    workers = 1
    fs = gcs(disk_emulator.url)
    bucket = f"gs://{disk_emulator.bucket}"
    upload_corpus(fs, f"{bucket}/corpus", 120)
    env = {**os.environ, "STORAGE_EMULATOR_HOST": disk_emulator.url}
    job = subprocess.Popen([*CLI, "ingest", f"{bucket}/corpus", f"{bucket}/outage", "--workers", str(workers)],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_object(fs, f"{disk_emulator.bucket}/outage/notesequences/", staging=True)
    except AssertionError:
        job.kill()
        raise AssertionError(f"the ingest staged nothing; its stderr: {job.communicate()[1][-3000:]}") from None
    disk_emulator.stop()
    stopped = time.monotonic()
    _, stderr = job.communicate(timeout=300)
    assert job.returncode == 1
    line = _one_line(stderr)
    assert "storage failure, nothing was published:" in line and f"{bucket}/outage/" in line, stderr[-3000:]
    assert time.monotonic() - stopped < 60  # the deadline, plus a worker's own shutdown


def test_retries_are_melodyflows_alone_and_bounded_by_the_deadline(gcs_emulator, gcs_bucket, monkeypatch, caplog):
    """Every request answered 503: gcsfs makes one attempt per call (not six), melodyflow retries within
    the 30 s deadline, and no traceback reaches the logs."""
    import logging

    from melodyflow.transforms.io import storage

    host, port = gcs_emulator.split("://", 1)[1].split(":")
    proxy = FaultProxy((host, int(port)), error=1.0)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    monkeypatch.delenv("MELODYFLOW_STORAGE_DEADLINE_S", raising=False)
    monkeypatch.delenv("MELODYFLOW_STORAGE_RETRIES", raising=False)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    try:
        with pytest.raises(storage.StorageError) as failure:
            storage.read_bytes(f"{gcs_bucket}/any/object")
    finally:
        proxy.close()
    elapsed = time.monotonic() - started
    # Backoff 0.5, 1, 2, 4, 8 s: the sixth retry could not end within 30 s (16 s of backoff plus 10 s
    # for an attempt), so the call gives up after six attempts, about 15.5 s in.
    assert proxy.counts["errors"] == 6 and 15 < elapsed < 30, (dict(proxy.counts), elapsed)
    message = str(failure.value)
    assert "\n" not in message and message.startswith(f"reading {gcs_bucket}/any/object failed after 6 attempts")
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("gcsfs")]
