"""Small jobs run in the driver's process without Beam: the same bytes as the Beam jobs, and no Beam
imported; the sizing rule that picks them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import midi_factory
from support import snapshot, write_corpus
from melodyflow.transforms.beam import sizing
from melodyflow.transforms.beam.runners import RunnerConfig
from melodyflow.transforms.ingest.batches import plan_ingest
from melodyflow.transforms.ingest.files import IngestSettings
from melodyflow.transforms.ingest.job import run_ingest_pipeline
from melodyflow.transforms.ingest.steps import run_ingest_in_process
from melodyflow.transforms.melodies.configs import get_config
from melodyflow.transforms.melodies.dataset import DatasetSettings, plan_dataset
from melodyflow.transforms.melodies.job import run_dataset_pipeline
from melodyflow.transforms.melodies.steps import run_dataset_in_process


def _corpus(root):
    """Melodies, a duplicate, bad files, and formats that go to the isolated parser."""
    files = {f"tunes/s{i:02d}.mid": midi_factory.melodic_midi(i) for i in range(12)}
    files["tunes/copy.mid"] = files["tunes/s03.mid"]
    files["bad/truncated.mid"] = midi_factory.truncated(midi_factory.random_midi(5))
    files["bad/empty.mid"] = b""
    files["books/two.abc"] = midi_factory.ABC_TUNEBOOK.encode()
    files["scores/scale.xml"] = midi_factory.MUSICXML.encode()
    return write_corpus(root, files)


def _build(source, data_root, runner: RunnerConfig | None):
    """Ingest then a lookback_rnn dataset; ``runner=None``: both in this process, without Beam."""
    plan = plan_ingest(str(source), str(data_root), IngestSettings(collection="c", files_per_shard=7))
    report = run_ingest_in_process(plan) if runner is None else run_ingest_pipeline(plan, runner)
    dplan = plan_dataset(str(data_root), DatasetSettings(config=get_config("lookback_rnn"), eval_ratio=0.3))
    result = run_dataset_in_process(dplan) if runner is None else run_dataset_pipeline(dplan, runner)
    return report, result, snapshot(str(data_root))


@pytest.mark.slow
def test_in_process_jobs_write_what_the_beam_jobs_write(tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    local = _build(corpus, tmp_path / "local", None)
    assert local[0]["counts"]["converted"] >= 13 and local[0]["counts"]["duplicates"] == 1
    assert local[0]["counts"]["failed"] == 2 and len(local[0]["shards"]) == 3
    assert local[1]["info"]["counts"]["train"] > 0
    for name, runner in (("in-memory", RunnerConfig(workers=1)), ("two-processes", RunnerConfig(workers=2))):
        beam = _build(corpus, tmp_path / name, runner)
        assert beam[0]["counts"] == local[0]["counts"] and beam[1]["info"]["counts"] == local[1]["info"]["counts"]
        assert beam[2] == local[2], name  # shards, manifests, dead letters, stats: every byte


NO_BEAM_SCRIPT = """
import json, sys
from melodyflow.transforms.ingest.batches import plan_ingest
from melodyflow.transforms.ingest.files import IngestSettings
from melodyflow.transforms.ingest.steps import run_ingest_in_process
from melodyflow.transforms.melodies.configs import get_config
from melodyflow.transforms.melodies.dataset import DatasetSettings, plan_dataset
from melodyflow.transforms.melodies.steps import run_dataset_in_process
corpus, data = sys.argv[1:3]
run_ingest_in_process(plan_ingest(corpus, data, IngestSettings(collection="c")))
result = run_dataset_in_process(plan_dataset(data, DatasetSettings(config=get_config("basic_rnn"))))
heavy = ("apache_beam", "tensorflow", "note_seq", "matplotlib")
loaded = [m for m in heavy if m in sys.modules]  # the packages themselves, not note_seq.protobuf.music_pb2
print(json.dumps([loaded, result["info"]["counts"], "note_seq.protobuf.music_pb2" in sys.modules]))
"""


@pytest.mark.slow
def test_in_process_jobs_import_no_beam(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", {f"s{i}.mid": midi_factory.melodic_midi(i) for i in range(3)})
    done = subprocess.run([sys.executable, "-c", NO_BEAM_SCRIPT, str(corpus), str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    modules, counts, _generated_proto = json.loads(done.stdout.strip().splitlines()[-1])
    # None of the heavy packages in the driver; sequences are read (with note-seq's generated proto module
    # only) in the extraction child that enforces the per-sequence limits.
    assert modules == []
    assert counts["train"] + counts["eval"] > 0


def test_note_sequence_class_is_note_seqs_own_without_its_package():
    script = """
import json, pickle, sys
from melodyflow.transforms.melodies.proto import note_sequence_class
cls = note_sequence_class()
loaded = "note_seq" in sys.modules
seq = cls(id="x", total_time=2.0)
seq.notes.add(pitch=60, velocity=80, start_time=0.0, end_time=1.0)
seq.tempos.add(qpm=120)
blob = pickle.dumps(seq)
import note_seq
from note_seq import sequences_lib
quantized = sequences_lib.quantize_note_sequence(pickle.loads(blob), 4)
print(json.dumps([loaded, note_seq.NoteSequence is cls, type(quantized) is cls, len(quantized.notes)]))
"""
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [False, True, True, 1]


def test_sizing_runs_small_jobs_in_process_and_large_ones_on_every_cpu():
    small, large = sizing.ingest_seconds(5_000_000, 0), sizing.ingest_seconds(500_000_000, 0)
    assert sizing.plan_execution(None, "direct", small, sizing.INGEST, cpus=2) == sizing.Execution(
        1, True, "about 0.5 s of work: too little to gain from Beam's worker processes; --workers N overrides")
    assert sizing.plan_execution(None, "direct", large, sizing.INGEST, cpus=2).workers == 2
    assert not sizing.plan_execution(None, "direct", large, sizing.INGEST, cpus=2).in_process
    assert sizing.plan_execution(1, "direct", small, sizing.INGEST, cpus=2).in_process  # --workers 1, small
    assert not sizing.plan_execution(1, "direct", large, sizing.INGEST, cpus=2).in_process  # Beam, in memory
    assert sizing.plan_execution(2, "direct", small, sizing.INGEST, cpus=2).workers == 2  # as asked
    assert sizing.plan_execution(None, "dask", small, sizing.INGEST, cpus=8) == sizing.Execution(
        8, False, "the number of CPUs")
    # The break-even: two workers pay 2.7 s more to start and run 1.76x as fast; with the margin of 1.5,
    # a job needs about 9.4 s of single-worker work before they are chosen.
    assert sizing.INGEST.workers_for(9.0, 2) == 1 and sizing.INGEST.workers_for(10.0, 2) == 2
    assert sizing.DATASET.workers_for(13.0, 2) == 1 and sizing.DATASET.workers_for(14.5, 2) == 2


def test_encoding_sizes_match_note_seqs_encoders():
    from melodyflow.transforms.melodies import encoding_compiled
    from melodyflow.transforms.melodies.configs import CONFIGS

    for config in CONFIGS.values():
        assert encoding_compiled.input_size(config) == config.encoder_decoder.input_size, config.name
        assert encoding_compiled.num_classes(config) == config.encoder_decoder.num_classes, config.name
