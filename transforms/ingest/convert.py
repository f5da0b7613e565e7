"""Score files (MIDI, MusicXML, ABC) → ``NoteSequence`` protos, the pure core of ingestion.

Every sequence equals what note-seq's own readers produce.  MIDI goes through ``transforms.midi.compiled_reader`` (a compiled
reader that reproduces ``note_seq.midi_io.midi_to_note_sequence`` byte for byte, ~20x faster) and falls
back to note-seq for any file outside the subset that reader handles; MusicXML and ABC use note-seq.  This
module adds what Magenta's converter lacks: content-derived ids, ABC on Python 3 (text, not bytes), one
error type for every reader failure, and batches of files per call to the isolated parser process.
"""

from __future__ import annotations

import enum
import hashlib
import os
import tempfile
from dataclasses import dataclass

MIDI_EXTENSIONS = (".mid", ".midi", ".kar")
MUSICXML_EXTENSIONS = (".xml", ".mxl", ".musicxml")
ABC_EXTENSIONS = (".abc",)


class SourceFormat(str, enum.Enum):
    MIDI = "midi"
    MUSICXML = "musicxml"
    ABC = "abc"


class ConversionError(ValueError):
    """A file could not be turned into any NoteSequence; the message says why."""


def format_for_path(path: str) -> SourceFormat | None:
    """The reader for ``path`` by its (case-insensitive) extension, or ``None`` if we do not ingest it."""
    lower = path.lower()
    if lower.endswith(MIDI_EXTENSIONS):
        return SourceFormat.MIDI
    if lower.endswith(MUSICXML_EXTENSIONS):
        return SourceFormat.MUSICXML
    if lower.endswith(ABC_EXTENSIONS):
        return SourceFormat.ABC
    return None


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sequence_id(fmt: SourceFormat, collection: str, digest: str, tune: str | None = None) -> str:
    """Stable id from the file's content: the same bytes get the same id wherever they live.

    Shaped like Magenta's ``/id/<format>/<collection>/<hash>`` so downstream tools recognise it.
    """
    base = f"/id/{fmt.value}/{collection}/{digest}"
    return base if tune is None else f"{base}_{tune}"


@dataclass(frozen=True)
class ConvertedFile:
    """Serialized NoteSequences from one file, plus per-tune failures of a multi-tune ABC book."""

    sequences: tuple[bytes, ...]
    ids: tuple[str, ...]
    tune_errors: tuple[str, ...] = ()


def preload_readers() -> None:
    """Import note-seq's readers (a second) so that per-file time limits measure parsing only."""
    from note_seq import abc_parser, midi_io, musicxml_reader  # noqa: F401


def preload_midi_reader() -> None:
    """Load the compiled MIDI reader (half a second), which only MIDI files need."""
    from melodyflow.transforms.midi import compiled_reader

    compiled_reader.warm_up()


def _midi_to_sequences(data: bytes):
    from note_seq import midi_io

    if not data:
        raise ConversionError("empty file (0 bytes)")
    try:
        return [midi_io.midi_to_note_sequence(data)]
    except midi_io.MIDIConversionError as exc:
        raise ConversionError(f"MIDI decoding failed: {exc}") from exc


def _musicxml_to_sequences(data: bytes, suffix: str):
    from note_seq import musicxml_reader

    if not data:
        raise ConversionError("empty file (0 bytes)")
    # note-seq's MusicXML reader only opens paths (it unzips .mxl itself).
    fd, tmp = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return [musicxml_reader.musicxml_file_to_sequence_proto(tmp)]
    except musicxml_reader.MusicXMLConversionError as exc:
        raise ConversionError(f"MusicXML decoding failed: {exc}") from exc
    finally:
        os.unlink(tmp)


def _decode_text(data: bytes) -> str:
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any bytes")


def _abc_to_sequences(data: bytes):
    """Parse every tune of an ABC tunebook; Magenta passed bytes here and failed on Python 3."""
    from note_seq import abc_parser

    text = _decode_text(data)
    if not text.strip():
        raise ConversionError("empty ABC file")
    tunes, exceptions = abc_parser.parse_abc_tunebook(text)
    errors = tuple(f"{type(e).__name__}: {e}" for e in exceptions)
    # A file header (text before the first X: field) comes back as a tune without notes.
    tunes = {idx: tune for idx, tune in tunes.items() if tune.notes}
    if not tunes:
        detail = "; ".join(errors[:3]) or "no tunes found"
        raise ConversionError(f"no ABC tune could be parsed ({detail})")
    return [(str(idx), tunes[idx]) for idx in sorted(tunes)], errors


def convert_midi_compiled(data: bytes, *, relative_path: str, collection: str, digest: str) -> ConvertedFile | None:
    """The compiled MIDI reader alone: note-seq's exact result, or ``None`` for files it leaves to note-seq.

    Its time and memory are linear in the file's size (no tick tables, no unbounded loops), which is why
    ingestion may run it outside the isolated parser process for small files.
    """
    from melodyflow.transforms.midi.compiled_reader import midi_to_sequence_bytes

    sid = sequence_id(SourceFormat.MIDI, collection, digest)
    fast = midi_to_sequence_bytes(data, sequence_id=sid, filename=relative_path, collection=collection)
    return None if fast is None else ConvertedFile(sequences=(fast,), ids=(sid,))


def convert_file(
    data: bytes, fmt: SourceFormat, *, relative_path: str, collection: str, digest: str
) -> ConvertedFile:
    """Convert one file's bytes; raises :class:`ConversionError` (or a reader's own error) on failure.

    Every sequence gets ``filename`` (path relative to the corpus root), ``collection_name`` and an id
    derived from ``digest``, the file's content hash.
    """
    tune_errors: tuple[str, ...] = ()
    if fmt is SourceFormat.MIDI:
        fast = convert_midi_compiled(data, relative_path=relative_path, collection=collection, digest=digest)
        if fast is not None:
            return fast
        named = [(None, seq) for seq in _midi_to_sequences(data)]
    elif fmt is SourceFormat.MUSICXML:
        suffix = os.path.splitext(relative_path)[1].lower() or ".xml"
        named = [(None, seq) for seq in _musicxml_to_sequences(data, suffix)]
    elif fmt is SourceFormat.ABC:
        named, tune_errors = _abc_to_sequences(data)
    else:  # pragma: no cover - enum is closed
        raise ConversionError(f"unsupported format {fmt!r}")
    out, ids = [], []
    for tune, seq in named:
        seq.filename = relative_path
        seq.collection_name = collection
        seq.id = sequence_id(fmt, collection, digest, tune)
        out.append(seq.SerializeToString(deterministic=True))
        ids.append(seq.id)
    return ConvertedFile(sequences=tuple(out), ids=tuple(ids), tune_errors=tune_errors)


@dataclass(frozen=True)
class ConversionRequest:
    """One file's bytes and naming, as sent to the isolated parser process."""

    data: bytes
    fmt: SourceFormat
    relative_path: str
    collection: str
    digest: str


def convert_request(request: ConversionRequest) -> ConvertedFile:
    """:func:`convert_file` for a request."""
    return convert_file(request.data, request.fmt, relative_path=request.relative_path,
                        collection=request.collection, digest=request.digest)


def convert_files(requests: list[ConversionRequest]) -> list[ConvertedFile | tuple[str, str]]:
    """Convert many files in one call; a file's failure is returned as ``(error type, message)``.

    Why: one round trip to the isolated parser costs about as much as parsing a small MIDI file with
    ``transforms.midi.compiled_reader``, so files travel in batches.  A hang or crash still loses only this call: the caller
    then retries the batch's files one by one.
    """
    out: list[ConvertedFile | tuple[str, str]] = []
    for r in requests:
        try:
            out.append(convert_request(r))
        except Exception as exc:  # noqa: BLE001 - reported per file, like a failed isolated call
            out.append((type(exc).__name__, str(exc)[:2000]))
    return out
