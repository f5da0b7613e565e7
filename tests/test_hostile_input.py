"""Hostile and broken input: the parsing core is fuzzed; ingestion survives every kind, counts add up."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import midi_factory
from conftest import write_corpus
from transforms.batches import plan_ingest
from transforms.convert import ConversionError, SourceFormat, convert_file
from transforms.ingest_files import IngestSettings
from transforms.ingest_pipeline import run_ingest_pipeline
from transforms.isolation import IsolatedCallError, IsolatedWorker, Limits
from transforms.runners import RunnerConfig

VALID = midi_factory.random_midi(3, tracks=2, notes_per_track=20)


@pytest.fixture(scope="module")
def worker():
    with IsolatedWorker(Limits(timeout_s=10, memory_mb=1024)) as w:
        yield w


def _convert(worker, data: bytes):
    """Either sequences or a classified failure — never an exception of another kind, never a hang."""
    started = time.monotonic()
    try:
        out = worker.call(convert_file, data, SourceFormat.MIDI, relative_path="f.mid", collection="c", digest="d")
        assert len(out.sequences) == len(out.ids) == 1
        result = "ok"
    except IsolatedCallError as exc:
        assert exc.reason in ("parse_error", "timeout", "out_of_memory", "crashed") and str(exc)
        result = exc.reason
    assert time.monotonic() - started < 30
    return result


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2048))
def test_random_bytes_never_escape_the_parser(worker, data):
    _convert(worker, data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=12),
       st.integers(14, len(VALID)))
def test_mutated_and_truncated_midi_never_escape_the_parser(worker, flips, keep):
    data = bytearray(VALID[:keep])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    _convert(worker, bytes(data))


@pytest.mark.parametrize("name,data", [
    ("format2", midi_factory.format2_file()),
    ("running_status", midi_factory.running_status_abuse()),
    ("tempo_extremes", midi_factory.zero_and_max_tempo()),
    ("odd_lengths", midi_factory.negative_and_zero_length_notes()),
])
def test_pathological_but_small_files_are_handled(worker, name, data):
    _convert(worker, data)


def test_conversion_errors_are_one_domain_error():
    for data in (b"", b"RIFF....WAVEfmt ", midi_factory.zip_named_mid()):
        with pytest.raises(ConversionError):
            convert_file(data, SourceFormat.MIDI, relative_path="f.mid", collection="c", digest="d")


@pytest.mark.slow
def test_ingestion_survives_every_kind_of_hostile_file(tmp_path):
    files = {
        "ok/valid.mid": midi_factory.random_midi(1),
        "zero.mid": b"",
        "random.mid": bytes(range(256)) * 8,
        "truncated_track.mid": midi_factory.header_only_truncated_track(),
        "bitflip.mid": midi_factory.bit_flipped(midi_factory.random_midi(2), seed=5, flips=40),
        "zip.mid": midi_factory.zip_named_mid(),
        "text.midi": b"hello, I am text\n",
        "format2.mid": midi_factory.format2_file(),
        "running.mid": midi_factory.running_status_abuse(),
        "tempos.mid": midi_factory.zero_and_max_tempo(),
        "lengths.mid": midi_factory.negative_and_zero_length_notes(),
        "absurd_delta.mid": midi_factory.absurd_delta_time(),
        "huge_16x100k.mid": midi_factory.huge_file(),
        "long_1x300k.mid": midi_factory.huge_file(tracks=1, notes=300_000),
        "ünïcødé dir/名前 with spaces.mid": midi_factory.random_midi(4),
        "/".join(f"d{i}" for i in range(30)) + "/deep.mid": midi_factory.random_midi(5),
    }
    corpus = write_corpus(tmp_path / "corpus", files)
    (corpus / "loop").symlink_to(corpus, target_is_directory=True)  # a symlink loop in SOURCE
    plan = plan_ingest(str(corpus), str(tmp_path / "data"),
                       IngestSettings(collection="c", file_timeout_s=3, memory_limit_mb=1024,
                                      max_file_bytes=32 * 1024 * 1024))
    assert len(plan.files) == len(files)
    report = run_ingest_pipeline(plan, RunnerConfig(workers=1))
    counts = report["counts"]
    assert counts["found"] == len(files) == counts["converted"] + counts["duplicates"] + counts["failed"]
    letters = [json.loads(line) for line in open(plan.dead_letters_url, encoding="utf-8")]
    assert len(letters) == counts["failed"] >= 6
    assert {d["relative_path"] for d in letters} >= {"zero.mid", "random.mid", "zip.mid", "text.midi"}
    assert all(d["path"] and d["reason"] and d["error"] for d in letters)
    manifest = [json.loads(line) for line in open(f"{plan.batch_dir}/manifest.jsonl", encoding="utf-8")]
    by_path = {m["path"]: m for m in manifest}
    assert by_path["ünïcødé dir/名前 with spaces.mid"]["status"] == "converted"
    assert by_path["/".join(f"d{i}" for i in range(30)) + "/deep.mid"]["status"] == "converted"
    # 1.6 M note-ons: refused by the byte scan before any parsing.
    assert by_path["huge_16x100k.mid"]["reason"] == "too_many_notes"
    # 300 k notes pass the note limit but take pretty_midi far longer than the 3 s per-file limit.
    assert by_path["long_1x300k.mid"]["reason"] == "timeout"
