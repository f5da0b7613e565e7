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


@pytest.mark.slow
def test_in_process_jobs_import_no_beam(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", {f"s{i}.mid": midi_factory.melodic_midi(i) for i in range(3)})
    script = f"""
import json, sys
from melodyflow.transforms.ingest.batches import plan_ingest
from melodyflow.transforms.ingest.files import IngestSettings
from melodyflow.transforms.ingest.steps import run_ingest_in_process
from melodyflow.transforms.melodies.configs import get_config
from melodyflow.transforms.melodies.dataset import DatasetSettings, plan_dataset
from melodyflow.transforms.melodies.steps import run_dataset_in_process
run_ingest_in_process(plan_ingest({str(corpus)!r}, {str(tmp_path / 'data')!r}, IngestSettings(collection="c")))
result = run_dataset_in_process(plan_dataset({str(tmp_path / 'data')!r}, DatasetSettings(config=get_config("basic_rnn"))))
print(json.dumps([sorted(m for m in sys.modules if m.split(".")[0] in ("apache_beam", "tensorflow")),
                  result["info"]["counts"]]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    modules, counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert modules == [] and counts["train"] + counts["eval"] > 0


def test_sizing_runs_small_jobs_in_process_and_large_ones_on_every_cpu():
    small, large = sizing.ingest_seconds(5_000_000, 0), sizing.ingest_seconds(500_000_000, 0)
    assert sizing.plan_execution(None, "direct", small, sizing.INGEST, cpus=2) == sizing.Execution(
        1, True, "about 0.5 s of work, too little to gain from more processes; --workers N overrides")
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
