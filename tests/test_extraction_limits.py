"""Limits per sequence in melody extraction: a sequence that does not finish, crashes its process or is
too large is dead-lettered with its id and reason, and the dataset completes with everything else."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

import midi_factory
from support import write_corpus
from melodyflow.transforms.beam.runners import RunnerConfig
from melodyflow.transforms.ingest.batches import plan_ingest
from melodyflow.transforms.ingest.files import IngestSettings
from melodyflow.transforms.ingest.job import run_ingest_pipeline
from melodyflow.transforms.io.tfrecord import encode_records, iter_records
from melodyflow.transforms.melodies.configs import get_config
from melodyflow.transforms.melodies.dataset import DatasetSettings, dead_letters_url, plan_dataset
from melodyflow.transforms.melodies.guard import UnitGuard, watch_tick
from melodyflow.transforms.melodies.job import plan_units, run_dataset_pipeline
from melodyflow.transforms.melodies.steps import run_dataset_in_process
from melodyflow.transforms.melodies.units import unit_job
from melodyflow.transforms.sandbox.fork_template import ParserTemplate
from melodyflow.transforms.melodies.units import prepare_child

SPARSE_ID = "/id/hostile/sparse"
DAYS_ID = "/id/hostile/days"


def sparse_sequence(notes: int, seq_id: str = SPARSE_ID) -> bytes:
    """One short note every 3 s (a melody each: more than a bar of silence between), and a control change at a NaN time.

    The NaN sends the sequence to note-seq's own extraction (the compiled path does not reproduce NaN
    ordering), which rescans every note for each melody it starts: 2,000 notes took 4 s here, 4,000 took
    30 s, 20,000 would take hours.  The compiled path takes milliseconds without the NaN.
    """
    from note_seq.protobuf import music_pb2

    seq = music_pb2.NoteSequence(id=seq_id, ticks_per_quarter=220, total_time=notes * 3.0)
    seq.tempos.add(qpm=120)
    seq.time_signatures.add(numerator=4, denominator=4)
    for i in range(notes):
        seq.notes.add(pitch=60 + (i * 7) % 12, velocity=80, start_time=i * 3.0, end_time=i * 3.0 + 0.5)
    seq.control_changes.add(time=float("nan"), control_number=64, control_value=0)
    return seq.SerializeToString()


def days_long_sequence(seq_id: str = DAYS_ID) -> bytes:
    """Two notes 25 hours apart: over ``MelodySettings.max_seconds``, refused before quantizing."""
    from note_seq.protobuf import music_pb2

    seq = music_pb2.NoteSequence(id=seq_id, ticks_per_quarter=220, total_time=25 * 3600.0)
    seq.notes.add(pitch=60, velocity=80, start_time=0.0, end_time=1.0)
    seq.notes.add(pitch=62, velocity=80, start_time=25 * 3600.0 - 1, end_time=25 * 3600.0)
    return seq.SerializeToString()


def write_batch(data_root, number: int, sequences: list[bytes]) -> None:
    """A completed ingestion batch holding ``sequences`` (the on-storage contract of ``batches.py``)."""
    name = f"batch-{number:05d}-{number:012x}"
    batch = data_root / "notesequences" / name
    batch.mkdir(parents=True)
    shard = "notesequences.tfrecord-00000-of-00001"
    (batch / shard).write_bytes(encode_records(sequences))
    (batch / "COMPLETED").write_text(json.dumps({"batch_id": name, "shards": [shard], "sequences": len(sequences),
                                                 "format_version": 1}))


def shard_records(out_dir: str) -> dict[str, bytes]:
    return {name: b"".join(iter_records(open(os.path.join(out_dir, name), "rb").read()))
            for name in sorted(os.listdir(out_dir)) if ".tfrecord-" in name}


@pytest.fixture(scope="module")
def tunes(tmp_path_factory):
    """Ingested melodic tunes (one batch) and the examples a build of them alone writes."""
    tmp = tmp_path_factory.mktemp("tunes")
    corpus = write_corpus(tmp / "corpus", {f"t{i:02d}.mid": midi_factory.melodic_midi(i) for i in range(12)})
    data = tmp / "data"
    run_ingest_pipeline(plan_ingest(str(corpus), str(data), IngestSettings(collection="tunes")), RunnerConfig())
    return data


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def _settings(**kw) -> DatasetSettings:
    return DatasetSettings(config=get_config("basic_rnn"), **kw)


def _build(plan, workers: int | None) -> dict:
    """The dataset job on Beam with ``workers``, or (``None``) in this process without Beam."""
    return run_dataset_in_process(plan) if workers is None else run_dataset_pipeline(plan, RunnerConfig(workers=workers))


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("workers", [None, 1, 2], ids=["in-process", "beam-1", "beam-2"])
def test_a_sequence_that_never_finishes_is_dead_lettered_and_the_dataset_completes(tunes, tmp_path, workers):
    clean = _copy(tunes, tmp_path / "clean")
    clean_plan = plan_dataset(str(clean), _settings(sequence_timeout_s=2.0))
    _build(clean_plan, workers)

    data = _copy(tunes, tmp_path / "hostile")
    write_batch(data, 2, [days_long_sequence(), sparse_sequence(20_000)])
    plan = plan_dataset(str(data), _settings(sequence_timeout_s=2.0))
    started = time.monotonic()
    result = _build(plan, workers)
    assert time.monotonic() - started < 120  # without the limit, the sparse sequence alone takes hours

    letters = {d["id"]: d for d in map(json.loads, open(dead_letters_url(plan), encoding="utf-8"))}
    assert set(letters) == {SPARSE_ID, DAYS_ID}
    assert letters[SPARSE_ID]["reason"] == "timeout" and "did not finish" in letters[SPARSE_ID]["error"]
    assert letters[DAYS_ID]["reason"] == "too_large" and "90000 s" in letters[DAYS_ID]["error"]
    stats = result["stats"]
    assert stats["failures"] == 2 and stats["failure_reasons"] == {"timeout": 1, "too_large": 1}
    assert stats["total"]["sequences_failed"] == 1 and stats["total"]["sequences_discarded_because_too_large"] == 1
    assert sum(result["info"]["sequences"].values()) == clean_plan.num_sequences + 2
    assert result["info"]["limits"] == {"sequence_timeout_s": 2.0, "memory_limit_mb": 4096}
    # Everything else is extracted exactly as without the hostile batch.
    assert shard_records(plan.out_dir) == shard_records(clean_plan.out_dir)


@pytest.mark.slow
def test_without_a_limit_the_worker_extracts_the_same_bytes(tunes, tmp_path):
    limited = plan_dataset(str(_copy(tunes, tmp_path / "limited")), _settings())
    unlimited = plan_dataset(str(_copy(tunes, tmp_path / "unlimited")), _settings(sequence_timeout_s=0))
    run_dataset_pipeline(limited, RunnerConfig())
    run_dataset_pipeline(unlimited, RunnerConfig())
    assert shard_records(limited.out_dir) == shard_records(unlimited.out_dir) != {}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_sequence_whose_process_dies_is_dead_lettered_as_crashed_and_the_unit_completes(tunes, tmp_path):
    """The extraction child is SIGKILLed (as the kernel's OOM killer would) while on one sequence."""
    data = _copy(tunes, tmp_path / "data")
    tunes_plan = plan_dataset(str(data), _settings())
    write_batch(data, 2, [days_long_sequence(), sparse_sequence(20_000), days_long_sequence("/id/hostile/after")])
    plan = plan_dataset(str(data), _settings(sequence_timeout_s=600))
    unit = plan_units(plan)[-1]
    assert unit.shard_url.startswith(str(data / "notesequences" / "batch-00002"))
    job = unit_job(plan.settings, plan.out_dir, {"train": 1, "eval": 1})
    with ParserTemplate([prepare_child], start_now=True) as template:
        guard = UnitGuard(job, template.address)
        killed = threading.Event()

        def kill_child_on_the_sparse_sequence():
            while guard._slot.value != 1:  # noqa: SLF001 - the test watches what the watchdog watches
                time.sleep(0.01)
            time.sleep(0.5)
            os.kill(guard._worker._proc.pid, signal.SIGKILL)  # noqa: SLF001
            killed.set()

        threading.Thread(target=kill_child_on_the_sparse_sequence, daemon=True).start()
        try:
            result = guard.run(unit)
        finally:
            guard.close()
    assert killed.is_set()
    reasons = {f["id"]: f["reason"] for f in result.failures}
    assert reasons == {DAYS_ID: "too_large", SPARSE_ID: "crashed", "/id/hostile/after": "too_large"}
    assert result.sequences == 3 and tunes_plan.num_sequences > 0


def test_the_watchdog_tick_bounds_how_late_a_kill_lands():
    assert watch_tick(60) == 0.5 and watch_tick(1) == 0.1 and watch_tick(0.01) == 0.01


def test_limits_are_validated():
    with pytest.raises(ValueError, match="sequence_timeout_s"):
        _settings(sequence_timeout_s=-1)
    with pytest.raises(ValueError, match="sequence_timeout_s"):
        _settings(sequence_timeout_s=float("nan"))
    with pytest.raises(ValueError, match="memory_limit_mb"):
        _settings(memory_limit_mb=100)
