"""SIGKILL the ingestion and the dataset build at random moments; a re-run must give exactly the clean
run's output — nothing lost, nothing duplicated, nothing partial visible to readers."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

import crash_jobs
import midi_factory
from support import snapshot, write_corpus
from melodyflow.transforms.ingest.batches import completed_batches
from melodyflow.transforms.melodies.dataset import IncompleteDatasetError, open_dataset

SEEDS = [int(s) for s in os.environ.get("MELODYFLOW_CRASH_SEEDS", "11,22,33").split(",")]
JOB = [sys.executable, crash_jobs.__file__]


def run_job(*args: str) -> float:
    started = time.monotonic()
    subprocess.run([*JOB, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    return time.monotonic() - started


def kill_job_after(delay: float, *args: str) -> bool:
    """Start the job, SIGKILL its whole process group after ``delay`` s; True if it was still running."""
    proc = subprocess.Popen([*JOB, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crash")
    return write_corpus(tmp / "corpus", midi_factory.crash_test_corpus(tunes=150, noise=30, noise_seed=1000))


@pytest.fixture(scope="module")
def clean_ingest(corpus, tmp_path_factory):
    data = tmp_path_factory.mktemp("clean") / "data"
    elapsed = run_job("ingest", str(corpus), str(data))
    return data, elapsed


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_ingest_killed_at_a_random_moment_reruns_to_the_clean_result(corpus, clean_ingest, tmp_path, seed):
    clean, elapsed = clean_ingest
    data = tmp_path / "data"
    delay = random.Random(seed).uniform(0.0, elapsed)
    killed = kill_job_after(delay, "ingest", str(corpus), str(data))
    if killed:
        assert completed_batches(str(data)) == [] or snapshot(data, "notesequences") == snapshot(
            clean, "notesequences"), "a killed run published a batch that differs from a clean one"
    run_job("ingest", str(corpus), str(data))
    assert snapshot(data) == snapshot(clean)
    assert len(completed_batches(str(data))) == 1


@pytest.fixture(scope="module")
def clean_dataset(clean_ingest, tmp_path_factory):
    ingested, _ = clean_ingest
    data = tmp_path_factory.mktemp("clean-ds") / "data"
    shutil.copytree(ingested, data)
    elapsed = run_job("dataset", str(data))
    return ingested, data, elapsed


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_dataset_build_killed_at_a_random_moment_reruns_to_the_clean_result(clean_dataset, tmp_path, seed):
    ingested, clean, elapsed = clean_dataset
    data = tmp_path / "data"
    shutil.copytree(ingested, data)
    delay = random.Random(seed).uniform(0.0, elapsed)
    if kill_job_after(delay, "dataset", str(data)):
        try:
            open_dataset(str(data), "basic_rnn")
        except IncompleteDatasetError:
            pass  # not published: fine
        else:
            assert snapshot(data, "melodies") == snapshot(clean, "melodies")
    run_job("dataset", str(data))
    assert snapshot(data) == snapshot(clean)
    assert open_dataset(str(data), "basic_rnn")["counts"]["train"] > 0
