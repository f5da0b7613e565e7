"""Generate MIDI test fixtures: valid multi-feature files and hostile ones. Nothing is downloaded."""

from __future__ import annotations

import io
import random
import struct
import zipfile

import mido


def _track(events: list[tuple[int, mido.Message | mido.MetaMessage]]) -> mido.MidiTrack:
    """Absolute-tick events → a track with delta times."""
    track = mido.MidiTrack()
    now = 0
    for tick, msg in sorted(events, key=lambda e: e[0]):
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def random_midi(seed: int, *, tracks: int = 2, notes_per_track: int = 40, meta_on_track1: bool = False,
                drums: bool = False) -> bytes:
    """A type-1 MIDI file with tempos, time/key signatures, programs, velocities and overlapping notes.

    ``meta_on_track1`` repeats tempo/time-signature events on track 1 (like the Nottingham files);
    ``drums`` puts the last track on channel 10.
    """
    rng = random.Random(seed)
    tpq = rng.choice([96, 220, 480])
    mid = mido.MidiFile(type=1, ticks_per_beat=tpq)
    meta = [
        (0, mido.MetaMessage("set_tempo", tempo=rng.choice([400000, 500000, 600000]))),
        (0, mido.MetaMessage("time_signature", numerator=rng.choice([3, 4, 6]), denominator=rng.choice([4, 8]))),
        (0, mido.MetaMessage("key_signature", key=rng.choice(["C", "G", "D", "F", "Bb", "Am", "Em"]))),
    ]
    if rng.random() < 0.5:
        meta.append((tpq * 16, mido.MetaMessage("set_tempo", tempo=rng.choice([300000, 700000]))))
    if rng.random() < 0.3:
        meta.append((tpq * 24, mido.MetaMessage("time_signature", numerator=2, denominator=4)))
    mid.tracks.append(_track(meta))
    for t in range(tracks):
        channel = 9 if drums and t == tracks - 1 else t
        events: list = [(0, mido.Message("program_change", channel=channel, program=rng.randrange(128)))]
        if meta_on_track1 and t == 0:
            events += [(tick, m) for tick, m in meta if m.type != "key_signature"]
        tick = 0
        for _ in range(notes_per_track):
            pitch = rng.randrange(36, 96)
            dur = rng.choice([tpq // 4, tpq // 2, tpq, tpq * 2])
            events.append((tick, mido.Message("note_on", channel=channel, note=pitch, velocity=rng.randrange(1, 128))))
            events.append((tick + dur, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
            tick += rng.choice([0, tpq // 4, tpq // 2, tpq])
        mid.tracks.append(_track(events))
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: max(14, int(len(data) * keep))]


def bit_flipped(data: bytes, seed: int, flips: int = 8) -> bytes:
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(flips):
        i = rng.randrange(14, len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def header_only_truncated_track() -> bytes:
    """Valid MThd, then an MTrk that claims 1000 bytes but holds 3."""
    return b"MThd" + struct.pack(">IHHH", 6, 1, 1, 96) + b"MTrk" + struct.pack(">I", 1000) + b"\x00\x90\x3c"


def zip_named_mid() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("song.txt", "not a midi file")
    return buf.getvalue()


def vlq(n: int) -> bytes:
    """A MIDI variable-length quantity (big-endian groups of 7 bits)."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def absurd_delta_time(tpq: int = 1) -> bytes:
    """A note after the largest legal delta time (0x0FFFFFFF ticks) at 1 tick per quarter.

    pretty_midi allocates a tick→time table as long as the file: gigabytes of memory.
    """
    body = (vlq(0) + b"\x90\x3c\x40" + vlq(0x0FFFFFFF) + b"\x80\x3c\x00" + vlq(0) + b"\xff\x2f\x00")
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, tpq) + b"MTrk" + struct.pack(">I", len(body)) + body


ABC_TUNEBOOK = """X:1
T:First Tune
M:4/4
L:1/8
K:G
GABc dedB|dedB dedB|c2ec B2dB|c2A2 A2BA|
GABc dedB|dedB dedB|c2ec B2dB|A2F2 G4|]

X:2
T:Second Tune
M:3/4
L:1/8
K:D
d2 fd Ad|f2 af ed|c2 ec Ac|e2 ge dc|
d2 fd Ad|f2 af ed|c2 ec Ac|d6|]
"""

MUSICXML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 3.0 Partwise//EN" "http://www.musicxml.org/dtds/partwise.dtd">
<score-partwise version="3.0">
  <part-list><score-part id="P1"><part-name>Melody</part-name></score-part></part-list>
  <part id="P1">
    <measure number="1">
      <attributes><divisions>1</divisions><key><fifths>0</fifths></key>
        <time><beats>4</beats><beat-type>4</beat-type></time></attributes>
      <note><pitch><step>C</step><octave>4</octave></pitch><duration>1</duration><type>quarter</type></note>
      <note><pitch><step>E</step><octave>4</octave></pitch><duration>1</duration><type>quarter</type></note>
      <note><pitch><step>G</step><octave>4</octave></pitch><duration>1</duration><type>quarter</type></note>
      <note><pitch><step>C</step><octave>5</octave></pitch><duration>1</duration><type>quarter</type></note>
    </measure>
  </part>
</score-partwise>
"""


def melodic_midi(seed: int) -> bytes:
    """A MIDI file with musical content for melody extraction.

    A monophonic lead of 8-20 bars over 5+ pitch classes, sometimes a chordal (polyphonic) track, a
    drum track, a bass line, a rest of two bars, or a tempo change.
    """
    import note_seq
    from note_seq.protobuf import music_pb2

    rng = random.Random(seed)
    qpm = rng.choice([90.0, 100.0, 120.0, 140.0])
    step = 60.0 / qpm / 4
    seq = music_pb2.NoteSequence(ticks_per_quarter=220)
    seq.tempos.add(qpm=qpm)
    seq.time_signatures.add(numerator=rng.choice([3, 4]), denominator=4)
    scale = [0, 2, 4, 5, 7, 9, 11]
    root = rng.randrange(48, 66)

    def lead(instrument, program, bars, start_step=0, rest_at=None):
        t = start_step
        end = start_step + bars * 16
        while t < end:
            if rest_at is not None and t >= rest_at:
                t += 32
                rest_at = None
                continue
            dur = rng.choice([1, 2, 2, 4])
            pitch = root + scale[rng.randrange(7)] + 12 * rng.choice([0, 0, 1])
            seq.notes.add(pitch=pitch, velocity=rng.randrange(40, 120), start_time=t * step,
                          end_time=(t + dur) * step, instrument=instrument, program=program)
            t += dur

    lead(0, rng.randrange(80), rng.randrange(8, 21), rest_at=(rng.randrange(64, 100) if rng.random() < 0.3 else None))
    if rng.random() < 0.5:  # chords: polyphonic track
        for bar in range(8):
            for offset in (0, 4, 7):
                seq.notes.add(pitch=root - 12 + offset, velocity=60, start_time=bar * 16 * step,
                              end_time=(bar + 1) * 16 * step, instrument=1, program=0)
    if rng.random() < 0.5:
        lead(2, 33, 9)
    if rng.random() < 0.4:
        for i in range(64):
            seq.notes.add(pitch=rng.choice([36, 38, 42]), velocity=100, start_time=i * 2 * step,
                          end_time=(i * 2 + 1) * step, instrument=9, is_drum=True)
    if rng.random() < 0.25:
        seq.tempos.add(qpm=qpm * 0.75, time=64 * step)
    seq.total_time = max(n.end_time for n in seq.notes)
    midi = note_seq.note_sequence_to_pretty_midi(seq)
    buf = io.BytesIO()
    midi.write(buf)
    return buf.getvalue()


def _raw_midi(fmt: int, tpq: int, tracks: list[bytes]) -> bytes:
    out = b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks), tpq)
    for body in tracks:
        out += b"MTrk" + struct.pack(">I", len(body)) + body
    return out


def format2_file() -> bytes:
    """A format-2 file (independent patterns), rare and often mishandled."""
    body = b"\x00\x90\x3c\x40\x60\x80\x3c\x00\x00\xff\x2f\x00"
    return _raw_midi(2, 96, [body, body])


def running_status_abuse() -> bytes:
    """Data bytes with no status byte at all, then running status across a meta event."""
    body = b"\x00\x3c\x40" + b"\x00\x90\x3c\x40\x10\xff\x01\x01a\x10\x3c\x00\x00\xff\x2f\x00"
    return _raw_midi(0, 96, [body])


def zero_and_max_tempo() -> bytes:
    """set_tempo 0 µs/quarter (infinite speed), then the largest tempo, with notes around them."""
    body = (b"\x00\xff\x51\x03\x00\x00\x00" + b"\x00\x90\x3c\x40\x60\x80\x3c\x00"
            + b"\x00\xff\x51\x03\xff\xff\xff" + b"\x00\x90\x3e\x40\x60\x80\x3e\x00\x00\xff\x2f\x00")
    return _raw_midi(0, 96, [body])


def negative_and_zero_length_notes() -> bytes:
    """A note-off before its note-on and a note that ends where it starts."""
    body = (b"\x00\x80\x3c\x00" + b"\x00\x90\x3e\x40\x00\x80\x3e\x00" + b"\x10\x90\x40\x40\x20\x80\x40\x00"
            + b"\x00\xff\x2f\x00")
    return _raw_midi(0, 96, [body])


def huge_file(tracks: int = 16, notes: int = 100_000, *, song_position: bool = False) -> bytes:
    """``tracks`` × ``notes`` notes: stresses time and memory limits.

    ``song_position`` starts each track with a system-common message, which sends the file down
    note-seq's slow path (the compiled reader leaves such files to note-seq).
    """
    note = b"\x00\x90\x3c\x40\x01\x80\x3c\x00"
    body = (b"\x00\xf2\x00\x00" if song_position else b"") + note * notes + b"\x00\xff\x2f\x00"
    return _raw_midi(1, 480, [body] * tracks)


def crash_test_corpus(tunes: int, noise: int, noise_seed: int) -> dict[str, bytes]:
    """The mixed corpus the kill tests run on: melodic tunes, multi-track random files, two broken files and
    one byte-identical copy (relative path → bytes)."""
    files = {f"tunes/t{i:03d}.mid": melodic_midi(i) for i in range(tunes)}
    files.update({f"noise/r{i:02d}.mid": random_midi(noise_seed + i, tracks=2) for i in range(noise)})
    files.update({"bad/empty.mid": b"", "bad/text.mid": b"not a midi file\n", "tunes/t000 copy.mid":
                  files["tunes/t000.mid"]})
    return files
