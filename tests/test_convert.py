import note_seq
import pytest
from note_seq import midi_io

import midi_factory
from melodyflow.transforms.ingest.convert import (ConversionError, SourceFormat, content_hash, convert_file,
                                format_for_path)


@pytest.mark.parametrize("path,fmt", [
    ("a.mid", SourceFormat.MIDI), ("b/C.MIDI", SourceFormat.MIDI), ("x.Kar", SourceFormat.MIDI),
    ("s.xml", SourceFormat.MUSICXML), ("s.MXL", SourceFormat.MUSICXML), ("t.abc", SourceFormat.ABC),
    ("readme.txt", None), ("mid", None),
])
def test_format_by_extension_is_case_insensitive(path, fmt):
    assert format_for_path(path) is fmt


def test_midi_conversion_equals_note_seq_and_sets_provenance():
    data = midi_factory.random_midi(3, tracks=3, meta_on_track1=True, drums=True)
    digest = content_hash(data)
    out = convert_file(data, SourceFormat.MIDI, relative_path="d/x.mid", collection="coll", digest=digest)
    (seq,) = [note_seq.NoteSequence.FromString(s) for s in out.sequences]
    expected = midi_io.midi_to_note_sequence(data)
    assert seq.id == f"/id/midi/coll/{digest}" and out.ids == (seq.id,)
    assert seq.filename == "d/x.mid" and seq.collection_name == "coll"
    seq.ClearField("id"), seq.ClearField("filename"), seq.ClearField("collection_name")
    expected.ClearField("id"), expected.ClearField("filename"), expected.ClearField("collection_name")
    assert seq == expected
    assert any(n.is_drum for n in seq.notes)


def test_abc_tunebook_yields_one_sequence_per_tune_from_bytes():
    out = convert_file(midi_factory.ABC_TUNEBOOK.encode(), SourceFormat.ABC, relative_path="b.abc",
                       collection="c", digest="h")
    seqs = [note_seq.NoteSequence.FromString(s) for s in out.sequences]
    assert [s.id for s in seqs] == ["/id/abc/c/h_1", "/id/abc/c/h_2"]
    assert [s.sequence_metadata.title for s in seqs] == ["First Tune", "Second Tune"]
    assert all(len(s.notes) > 20 for s in seqs)


def test_musicxml_is_read_from_bytes():
    out = convert_file(midi_factory.MUSICXML.encode(), SourceFormat.MUSICXML, relative_path="s.xml",
                       collection="c", digest="h")
    (seq,) = [note_seq.NoteSequence.FromString(s) for s in out.sequences]
    assert [n.pitch for n in seq.notes] == [60, 64, 67, 72]


@pytest.mark.parametrize("data", [b"", b"garbage", midi_factory.header_only_truncated_track(),
                                  midi_factory.zip_named_mid()])
def test_bad_midi_raises_conversion_error(data):
    with pytest.raises(ConversionError):
        convert_file(data, SourceFormat.MIDI, relative_path="x.mid", collection="c", digest="h")


def test_abc_without_tunes_raises():
    with pytest.raises(ConversionError):
        convert_file(b"just some text\n", SourceFormat.ABC, relative_path="x.abc", collection="c", digest="h")
