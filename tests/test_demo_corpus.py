import json

import note_seq

from melodyflow.transforms.ingest.demo_corpus import MANIFEST_NAME, DemoCorpusSpec, build_demo_corpus

SMALL = DemoCorpusSpec(essen_per_book=1, oneills_per_book=1, chorales=2)


def test_demo_corpus_is_deterministic_cached_and_real(tmp_path):
    first = build_demo_corpus(str(tmp_path / "a"), SMALL)
    second = build_demo_corpus(str(tmp_path / "b"), SMALL)
    assert first["files"] == second["files"]
    assert len(first["files"]) > 40
    for rel in first["files"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel

    marker = tmp_path / "a" / MANIFEST_NAME
    stamp = marker.stat().st_mtime_ns
    messages = []
    assert build_demo_corpus(str(tmp_path / "a"), SMALL, progress=messages.append) == first
    assert marker.stat().st_mtime_ns == stamp and "already built" in messages[0]

    chorale = next(f for f in first["files"] if f.startswith("chorales/"))
    seq = note_seq.midi_file_to_note_sequence(str(tmp_path / "a" / chorale))
    assert len({n.instrument for n in seq.notes}) >= 4  # four voices → multi-track MIDI
    folk = next(f for f in first["files"] if f.startswith("essen/"))
    assert len(note_seq.midi_file_to_note_sequence(str(tmp_path / "a" / folk)).notes) >= SMALL.min_notes
    assert {f.rsplit(".", 1)[-1] for f in first["files"]} >= {"mid", "abc", "mxl"}
    assert json.loads(marker.read_text())["version"] == first["version"]
