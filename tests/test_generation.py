"""Generation from a trained debug bundle: primers good and bad, index, seeds, beam search, gs://."""

from __future__ import annotations

import io
import json

import note_seq
import pytest
from note_seq.protobuf import music_pb2

import midi_factory
from support import write_corpus
from melodyflow.flows.generate import generate_melodies
from melodyflow.models.generation.sampling import GenerationError, GenerationOptions, load_generator
from melodyflow.models.hparams import debug_hparams
from melodyflow.models.training.loop import TrainSettings, train
from melodyflow.transforms.io import storage
from melodyflow.models.generation.primers import PrimerError, primer_from_events, primer_from_midi, primer_id



def _midi(tracks: dict[int, list[tuple[int, float, float]]], drums: tuple[int, ...] = (), qpm: float = 100.0) -> bytes:
    seq = music_pb2.NoteSequence(ticks_per_quarter=220)
    seq.tempos.add(qpm=qpm)
    for instrument, notes in tracks.items():
        for pitch, start, end in notes:
            seq.notes.add(pitch=pitch, velocity=80, start_time=start, end_time=end, instrument=instrument,
                          program=instrument, is_drum=instrument in drums)
    seq.total_time = max(n.end_time for n in seq.notes)
    buf = io.BytesIO()
    note_seq.note_sequence_to_pretty_midi(seq).write(buf)
    return buf.getvalue()


STEP = 60 / 100 / 4
LEAD = [(p, i * 2 * STEP, (i * 2 + 2) * STEP) for i, p in enumerate([60, 62, 64, 65, 67, 65, 64, 62])]
CHORDS = [(p, 0.0, 16 * STEP) for p in (48, 52, 55)]
PRIMERS = {
    "single.mid": _midi({0: LEAD}),
    "multi track.mid": _midi({0: CHORDS, 1: LEAD, 9: [(36, i * STEP, (i + 1) * STEP) for i in range(16)]}, drums=(9,)),
    "too_long.mid": _midi({0: [(60 + i % 7, i * 2 * STEP, (i * 2 + 2) * STEP) for i in range(60)]}),
    "empty.mid": b"",
    "corrupt.mid": b"MThd\x00\x00\x00\x06garbage",
    "drums_only.mid": _midi({9: [(36, i * STEP, (i + 1) * STEP) for i in range(8)]}, drums=(9,)),
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from test_training import build_data

    tmp = tmp_path_factory.mktemp("gen")
    corpus = write_corpus(tmp / "corpus", {f"s{i}.mid": midi_factory.melodic_midi(i) for i in range(10)})
    data = build_data(corpus, tmp / "data", configs=("attention_rnn",))
    result = train(data, str(tmp / "run"), TrainSettings(config="attention_rnn", num_training_steps=6,
                                                          eval_every=6), debug_hparams("attention_rnn"))
    return result.bundle


@pytest.mark.slow
def test_primer_track_rule_picks_the_most_melodic_non_drum_track():
    primer = primer_from_midi(PRIMERS["multi track.mid"])
    assert primer.instrument == 1 and primer.qpm == pytest.approx(100.0)
    assert [e for e in primer.melody if e >= 0] == [60, 62, 64, 65, 67, 65, 64, 62]
    with pytest.raises(PrimerError, match="no pitched"):
        primer_from_midi(PRIMERS["drums_only.mid"])
    with pytest.raises(PrimerError, match="not a readable MIDI"):
        primer_from_midi(PRIMERS["corrupt.mid"])
    with pytest.raises(PrimerError):
        primer_from_events([60, 200])


@pytest.mark.slow
def test_primer_ids_are_safe_and_distinct():
    a, b = primer_id("../../etc/passwd.mid"), primer_id("x/../passwd.mid")
    assert "/" not in a and ".." not in a and a != b


@pytest.mark.slow
def test_flow_generates_for_good_primers_and_reports_bad_ones(prefect_harness, bundle, tmp_path):
    primers = write_corpus(tmp_path / "primers", PRIMERS)
    out = tmp_path / "out"
    index = generate_melodies(bundle=bundle, output=str(out), primers=str(primers), num_outputs=3,
                              num_steps=48, seed=7)
    by_source = {e["source"].rsplit("/", 1)[-1]: e for e in index["primers"]}
    assert {k for k, e in by_source.items() if e["status"] == "ok"} == {"single.mid", "multi track.mid"}
    assert "more than --num-steps 48" in by_source["too_long.mid"]["error"]
    assert by_source["empty.mid"]["error"] and by_source["corrupt.mid"]["error"]
    assert "no pitched" in by_source["drums_only.mid"]["error"]
    assert index["counts"] == {"primers": 6, "ok": 2, "failed": 4, "outputs": 6}
    saved = json.loads((out / "index.json").read_text())
    assert saved["bundle"] == bundle and saved["options"]["num_steps"] == 48
    for entry in (by_source["single.mid"], by_source["multi track.mid"]):
        for output in entry["outputs"]:
            seq = note_seq.midi_file_to_note_sequence(str(out / output["midi"]))
            assert seq.notes and (out / output["png"]).read_bytes()[:4] == b"\x89PNG"
            assert output["steps"] == 48 and output["log_likelihood"] < 0
            assert seq.tempos[0].qpm == pytest.approx(100.0)  # the primer's tempo is kept
            assert seq.notes[0].pitch == 60  # the primer comes first

    again = generate_melodies(bundle=bundle, output=str(tmp_path / "again"), primers=str(primers / "single.mid"),
                              num_outputs=3, num_steps=48, seed=7)
    assert again["counts"] == {"primers": 1, "ok": 1, "failed": 0, "outputs": 3}
    first = by_source["single.mid"]["outputs"][0]["midi"]
    assert (tmp_path / "again" / first).read_bytes() == (out / first).read_bytes()


@pytest.mark.slow
def test_seed_continuation_beam_search_and_default_primer(bundle):
    generator = load_generator(bundle)
    primer = primer_from_events([60, -2, 62, -2, 64, -2, 65, -2])
    options = GenerationOptions(num_outputs=2, num_steps=32, seed=3)
    a = [list(r.melody) for r in generator.generate(primer.melody, options)]
    b = [list(r.melody) for r in generator.generate(primer.melody, options)]
    c = [list(r.melody) for r in generator.generate(primer.melody, GenerationOptions(num_outputs=2, num_steps=32, seed=4))]
    assert a == b and a != c and all(len(m) == 32 for m in a)
    beams = generator.generate(primer.melody, GenerationOptions(num_outputs=2, num_steps=32, beam_size=3,
                                                                branch_factor=2, steps_per_iteration=5, seed=3))
    assert [len(r.melody) for r in beams] == [32, 32] and all(r.log_likelihood < 0 for r in beams)
    with pytest.raises(GenerationError, match="more than --num-steps 4"):
        generator.generate(primer.melody, GenerationOptions(num_outputs=1, num_steps=4))


@pytest.mark.slow
def test_continuation_only_and_middle_c_default_to_gcs(prefect_harness, bundle, gcs_bucket, tmp_path):
    out = f"{gcs_bucket}/generated"
    index = generate_melodies(bundle=bundle, output=out, num_outputs=2, num_steps=40, continuation_only=True)
    (entry,) = index["primers"]
    assert entry["source"] == "default: middle C" and entry["primer_steps"] == 1
    for output in entry["outputs"]:
        data = storage.read_bytes(f"{out}/{output['midi']}")
        seq = note_seq.midi_to_note_sequence(data)
        assert all(n.start_time >= 0 for n in seq.notes)
        assert seq.total_time <= 39 * 60 / 120 / 4 + 1e-6  # the primer step is not written
    assert json.loads(storage.read_text(f"{out}/index.json"))["options"]["continuation_only"] is True


@pytest.mark.slow
def test_hostile_primer_names_and_files_stay_inside_output(prefect_harness, bundle, tmp_path):
    import uuid

    good = PRIMERS["single.mid"]
    hostile = {
        "../../escape.mid": good,             # object-store names may hold "..": never an output path
        "..\\..\\windows.mid": good,
        "ü n i/../../ üñí cødé.mid": good,
        "oversized.mid": good + b"\0" * (1024 * 1024),
        "many_notes.mid": midi_factory.huge_file(tracks=1, notes=30_000),
        "days_long.mid": midi_factory.absurd_delta_time(),
        "zip.mid": midi_factory.zip_named_mid(),
    }
    # fsspec's in-memory store keeps names verbatim, like GCS and S3 (the GCS emulator refuses "..").
    source = f"memory://primers-{uuid.uuid4().hex}/p"
    fs = storage.filesystem(source)
    for name, data in hostile.items():
        fs.pipe_file(f"{source}/{name}", data)
    out = tmp_path / "a" / "b" / "out"
    index = generate_melodies(bundle=bundle, output=str(out), primers=source, num_outputs=1, num_steps=48, seed=3)
    assert index["counts"]["primers"] == len(hostile)
    by_source = {e["source"].split("/p/", 1)[1]: e for e in index["primers"]}
    assert {k for k, e in by_source.items() if e["status"] == "ok"} == {
        "../../escape.mid", "..\\..\\windows.mid", "ü n i/../../ üñí cødé.mid"}
    assert "byte limit" in by_source["oversized.mid"]["error"]
    assert "more than 20000 notes" in by_source["many_notes.mid"]["error"]
    assert "s limit" in by_source["days_long.mid"]["error"]
    assert by_source["zip.mid"]["error"]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(out in p.parents for p in written), written
    for entry in index["primers"]:
        for output in entry["outputs"]:
            assert ".." not in output["midi"] and output["midi"].count("/") == 1


@pytest.mark.slow
def test_output_paths_refuse_names_that_would_escape():
    for bad in ("..", ".", "", "a/b", "..\\x", "x\x00", " lead", "c:evil"):
        with pytest.raises(storage.UnsafePathError):
            storage.child("/out", bad)
    assert storage.child("gs://b/out", "tune-1a2b", "000.mid") == "gs://b/out/tune-1a2b/000.mid"
