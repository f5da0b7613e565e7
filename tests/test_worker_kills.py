"""SIGKILL one worker process (not the whole job) in the middle of a job: a Beam SDK worker of the
multi-processing direct runner, or a worker of a local Dask cluster.  The job either finishes with exactly
the clean run's output, or fails without publishing anything, after which a re-run gives the clean output.
Never a hang, never a published partial batch or dataset."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

import crash_jobs
import midi_factory
from support import snapshot, write_corpus
from test_extraction_limits import sparse_sequence, write_batch

pytestmark = pytest.mark.slow
JOB = [sys.executable, crash_jobs.__file__]
RUNNERS = {"beam-multiprocessing": ("direct", "2"), "dask-local-cluster": ("dask", "2")}


def run_job(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*JOB, *args], capture_output=True, text=True, timeout=600)


def _workers(job: psutil.Process) -> list[psutil.Process]:
    """The job's worker processes: Beam SDK harnesses, or Dask workers (started by multiprocessing's
    spawn; the resource tracker and the extraction template are not workers)."""
    found = []
    for child in job.children(recursive=True):
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "sdk_worker_main" in line or "spawn_main" in line:
            found.append(child)
    return found


def kill_one_worker_mid_job(args: tuple[str, ...], started_work: str) -> tuple[subprocess.Popen, int, str]:
    """Start the job, SIGKILL one of its workers as soon as a file matching ``started_work`` exists (the
    job is past start-up and busy), and wait for the job.  Returns the job, its exit code and stderr."""
    err = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([*JOB, *args], stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    job = psutil.Process(proc.pid)
    deadline = time.monotonic() + 300
    victim = None
    try:
        while victim is None:
            assert time.monotonic() < deadline, "the job never got busy"
            assert proc.poll() is None, "the job ended before a worker could be killed"
            workers = _workers(job)
            if len(workers) >= 2 and glob.glob(started_work):
                victim = workers[0]
                victim.send_signal(signal.SIGKILL)
            time.sleep(0.05)
        code = proc.wait(timeout=300)  # a hang fails the test here
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err.seek(0)
    stderr = err.read()
    err.close()
    return proc, code, stderr


def _published(root, sub: str) -> list[str]:
    return [p for p in glob.glob(f"{root}/{sub}/**/COMPLETED", recursive=True)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kills")
    return write_corpus(tmp / "corpus", midi_factory.crash_test_corpus(tunes=400, noise=40, noise_seed=2000))


@pytest.fixture(scope="module")
def clean(corpus, tmp_path_factory):
    """A clean ingestion and dataset build (one worker), plus a second batch of a few slow sequences
    (about a second each in note-seq's extraction) so that a dataset unit keeps its worker busy."""
    data = tmp_path_factory.mktemp("clean") / "data"
    assert run_job("ingest", str(corpus), str(data)).returncode == 0
    ingestion = snapshot(data)
    write_batch(data, 2, [sparse_sequence(1200, f"/id/slow/{i}") for i in range(4)])
    ingested = tmp_path_factory.mktemp("ingested") / "data"
    shutil.copytree(data, ingested)
    done = run_job("dataset", str(data))
    assert done.returncode == 0, done.stderr[-3000:]
    return ingestion, ingested, snapshot(data, "melodies")


@pytest.mark.parametrize("runner", RUNNERS)
def test_killing_one_ingestion_worker_gives_the_exact_result_or_a_clean_failure(corpus, clean, tmp_path, runner):
    ingestion, _, _ = clean
    data = tmp_path / "data"
    args = ("ingest", str(corpus), str(data), *RUNNERS[runner])
    _, code, stderr = kill_one_worker_mid_job(args, f"{data}/notesequences/*/_staging/chunk-*.tfrecord")
    if code != 0:
        assert _published(data, "notesequences") == [], "a failed run published a batch"
        rerun = run_job(*args)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert snapshot(data) == ingestion
    print(f"{runner}: ingestion {'completed' if code == 0 else 'failed, re-run exact'}")  # for docs (pytest -s)


@pytest.mark.parametrize("runner", RUNNERS)
def test_killing_one_dataset_worker_gives_the_exact_result_or_a_clean_failure(clean, tmp_path, runner):
    _, ingested, dataset = clean
    data = tmp_path / "data"
    shutil.copytree(ingested, data)
    args = ("dataset", str(data), *RUNNERS[runner])
    _, code, stderr = kill_one_worker_mid_job(args, f"{data}/melodies/*/_staging/*/unit-*.tfrecord")
    if code != 0:
        assert _published(data, "melodies") == [], "a failed build published a dataset"
        rerun = run_job(*args)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert snapshot(data, "melodies") == dataset
    print(f"{runner}: dataset {'completed' if code == 0 else 'failed, re-run exact'}")  # for docs (pytest -s)
