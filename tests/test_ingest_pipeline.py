"""The Beam ingestion job on real runners: equivalence, bad input, dedupe, incremental, interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import note_seq
import pytest
from note_seq import midi_io

import midi_factory
from support import write_corpus
from melodyflow.transforms.io import storage
from melodyflow.transforms.ingest.batches import (IncompleteBatchError, completed_batches, open_batch, plan_ingest,
                                read_sequences)
from melodyflow.transforms.ingest.files import IngestSettings
from melodyflow.transforms.ingest.job import build_ingest_pipeline, run_ingest_pipeline
from melodyflow.transforms.beam.runners import RunnerConfig


HOSTILE = {
    "bad/empty.mid": b"",
    "bad/random_bytes.mid": bytes(range(256)) * 4,
    "bad/truncated_track.mid": midi_factory.header_only_truncated_track(),
    "bad/really_a_zip.mid": midi_factory.zip_named_mid(),
    "bad/text.midi": b"MThd? no, just text\n",
    "bad/truncated_copy.mid": midi_factory.truncated(midi_factory.random_midi(11), 0.3),
    "bad/absurd_delta.mid": midi_factory.absurd_delta_time(),
    "bad/empty_book.abc": b"%just a comment\n",
}


def _ingest(source, data_root, workers=1, **settings):
    settings = IngestSettings(collection="corpus", **settings)
    plan = plan_ingest(str(source), str(data_root), settings)
    return plan, run_ingest_pipeline(plan, RunnerConfig(workers=workers))


def _stored(data_root) -> dict[str, note_seq.NoteSequence]:
    out = {}
    for batch in completed_batches(str(data_root)):
        for raw in read_sequences(batch):
            seq = note_seq.NoteSequence.FromString(raw)
            assert seq.id not in out, "a sequence was stored twice"
            out[seq.id] = seq
    return out


def _strip(seq: note_seq.NoteSequence) -> note_seq.NoteSequence:
    seq = note_seq.NoteSequence.FromString(seq.SerializeToString())
    for field in ("id", "filename", "collection_name"):
        seq.ClearField(field)
    return seq


def test_sequences_equal_note_seq_and_bad_files_are_dead_lettered(small_corpus, tmp_path):
    write_corpus(small_corpus, HOSTILE)
    write_corpus(small_corpus, {"big/too_large.mid": midi_factory.random_midi(5) + b"\0" * 300_000})
    plan, report = _ingest(small_corpus, tmp_path / "data", max_file_bytes=200_000, memory_limit_mb=768)
    counts = report["counts"]
    assert counts["found"] == 9 + len(HOSTILE) + 1
    assert counts["found"] == counts["converted"] + counts["duplicates"] + counts["failed"]
    assert (counts["converted"], counts["duplicates"], counts["failed"]) == (8, 1, len(HOSTILE) + 1)
    assert counts["sequences"] == 6 + 2 + 1  # six MIDI files, a two-tune ABC book, one MusicXML
    assert counts["ignored"] == 1
    assert counts["failure_reasons"]["too_large"] == 1
    assert counts["failure_reasons"]["empty_file"] == 1
    assert counts["failure_reasons"]["out_of_memory"] == 1  # absurd delta time vs. a 768 MB cap

    letters = [json.loads(line) for line in Path(plan.dead_letters_url).read_text().splitlines()]
    assert sorted(d["relative_path"] for d in letters) == sorted([*HOSTILE, "big/too_large.mid"])
    assert all(d["error"] and d["reason"] and os.path.exists(d["path"]) for d in letters)

    stored = _stored(tmp_path / "data")
    assert len(stored) == 9
    midi_files = sorted(p for p in small_corpus.rglob("*") if p.suffix.lower() in (".mid", ".midi")
                        and "bad" not in p.parts and "big" not in p.parts)
    by_filename = {s.filename: s for s in stored.values()}
    checked = 0
    for path in midi_files:
        rel = path.relative_to(small_corpus).as_posix()
        if rel == "set1/tune1.mid":
            # Identical to "set0/Copy Of Tune1.MIDI", which sorts first: stored once, under that name.
            assert rel not in by_filename and "set0/Copy Of Tune1.MIDI" in by_filename
            continue
        expected = midi_io.midi_to_note_sequence(path.read_bytes())
        got = by_filename[rel]
        assert got.collection_name == "corpus" and got.id.startswith("/id/midi/corpus/")
        assert _strip(got) == _strip(expected)
        checked += 1
    assert checked == 6
    assert "books/two_tunes.abc" in {s.filename for s in stored.values()}


def test_rerun_writes_nothing_and_new_files_form_a_new_batch(small_corpus, tmp_path):
    data = tmp_path / "data"
    _ingest(small_corpus, data)
    again = plan_ingest(str(small_corpus), str(data), IngestSettings(collection="corpus"))
    assert again.is_empty and again.already_ingested == 9
    before = sorted(p for p in data.rglob("*"))

    write_corpus(small_corpus, {"new/fresh.mid": midi_factory.random_midi(100),
                                "new/same_as_tune2.mid": (small_corpus / "set0/tune2.mid").read_bytes()})
    plan, report = _ingest(small_corpus, data)
    assert plan.batch_id.startswith("batch-00002-")
    assert {k: report["counts"][k] for k in ("found", "converted", "duplicates", "failed")} == {
        "found": 2, "converted": 1, "duplicates": 1, "failed": 0}
    dup = [o for o in open_batch(plan.batch_dir).outcomes() if o.status.value == "duplicate"]
    assert dup[0].duplicate_of.startswith("batch:batch-00001-") and dup[0].duplicate_of.endswith("set0/tune2.mid")
    assert set(before) <= set(data.rglob("*"))
    assert len(_stored(data)) == 10


def test_interrupted_batch_is_invisible_and_rerun_is_identical(small_corpus, tmp_path):
    import apache_beam as beam

    settings = IngestSettings(collection="corpus")
    plan = plan_ingest(str(small_corpus), str(tmp_path / "killed"), settings)
    # Everything but the publishing step: shards and manifest exist, marker does not (a kill there).
    runner = RunnerConfig(workers=1)
    with beam.Pipeline(runner=runner.make_runner(), options=runner.pipeline_options()) as p:
        build_ingest_pipeline(p, plan)
    assert any(Path(plan.batch_dir).iterdir())
    assert completed_batches(str(tmp_path / "killed")) == []
    with pytest.raises(IncompleteBatchError, match="no COMPLETED marker"):
        open_batch(plan.batch_dir)

    replan, _ = _ingest(small_corpus, tmp_path / "killed")
    assert replan.batch_id == plan.batch_id
    clean, _ = _ingest(small_corpus, tmp_path / "clean")
    shards = sorted(Path(replan.batch_dir).glob("notesequences.tfrecord-*"))
    assert shards and [s.read_bytes() for s in shards] == [
        (Path(clean.batch_dir) / s.name).read_bytes() for s in shards]
    assert (Path(replan.batch_dir) / "manifest.jsonl").read_bytes() == (
        Path(clean.batch_dir) / "manifest.jsonl").read_bytes()


@pytest.mark.slow
def test_sigkill_during_ingest_then_rerun_loses_and_duplicates_nothing(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", {f"t{i:03d}.mid": midi_factory.random_midi(i, tracks=3, notes_per_track=300)
                                                for i in range(120)})
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "melodyflow.flows.cli", "ingest", str(corpus), str(data), "--workers", "1", "--json"]
    env = {**os.environ, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    root = data / "notesequences"
    # Killed as soon as the Beam job has staged its listing: the job is under way, and still has all of
    # Beam's run ahead of it before it can publish.  (A fixed sleep after the batch directory appeared
    # raced the job itself, which now finishes 120 files in about a second.)
    while time.monotonic() < deadline and not any(root.glob("*/_staging/listing.jsonl")):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert completed_batches(str(data)) == [], "a killed run must not publish its batch"

    plan, report = _ingest(corpus, data)
    assert report["counts"]["converted"] == 120
    stored = _stored(data)
    assert len(stored) == 120
    assert sorted(s.filename for s in stored.values()) == sorted(f"t{i:03d}.mid" for i in range(120))
    assert len(list(root.iterdir())) == 1, "leftovers of the killed run must be gone"


@pytest.mark.slow
def test_gcs_in_and_out_with_two_workers(gcs_bucket, small_corpus):
    for path in sorted(small_corpus.rglob("*")):
        if path.is_file():
            storage.write_bytes(f"{gcs_bucket}/corpus/{path.relative_to(small_corpus).as_posix()}",
                                path.read_bytes())
    source, data_root = f"{gcs_bucket}/corpus", f"{gcs_bucket}/data"
    plan, report = _ingest(source, data_root, workers=2)
    assert {k: report["counts"][k] for k in ("found", "converted", "duplicates", "failed", "sequences")} == {
        "found": 9, "converted": 8, "duplicates": 1, "failed": 0, "sequences": 9}
    batches = completed_batches(data_root)
    assert [b.batch_id for b in batches] == [plan.batch_id]
    stored = {note_seq.NoteSequence.FromString(r).filename for r in read_sequences(batches[0])}
    assert "set0/Copy Of Tune1.MIDI" in stored and "books/two_tunes.abc" in stored
    assert storage.exists(f"{plan.dead_letters_url}")
    assert plan_ingest(source, data_root, IngestSettings(collection="corpus")).is_empty
