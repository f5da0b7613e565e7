"""The compiled MIDI reader against note-seq itself, byte for byte, on files built to hit each rule.

Each named test builds a file where a naive parser (symusic, or a plain MIDI reader) differs from
note-seq, checks the bytes equal note-seq's, and checks the rule itself so the test cannot pass by both
sides being empty.  The random tests then mix every event kind, and mutate the files: whenever the fast
reader answers at all, note-seq must give exactly the same bytes.
"""

from __future__ import annotations

import os
import random
import struct
import warnings

import pytest

import midi_factory
from midi_factory import vlq
from melodyflow.transforms.midi.compiled_reader import midi_to_sequence_bytes

FUZZ = int(os.environ.get("MELODYFLOW_FUZZ_EXAMPLES", "300"))


def _track(events: list[tuple[int, bytes]], end: bool = True) -> bytes:
    """``[(delta, raw event bytes)]`` → an MTrk chunk."""
    body = b"".join(vlq(d) + e for d, e in events)
    if end:
        body += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + body


def _file(tracks: list[bytes], tpq: int = 480, fmt: int = 1) -> bytes:
    return b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks), tpq) + b"".join(tracks)


def _meta(kind: int, payload: bytes) -> bytes:
    return bytes([0xFF, kind]) + vlq(len(payload)) + payload


def tempo(us: int) -> bytes:
    return _meta(0x51, us.to_bytes(3, "big"))


def time_sig(num: int, den_pow: int) -> bytes:
    return _meta(0x58, bytes([num, den_pow, 24, 8]))


def key_sig(sharps: int, minor: int) -> bytes:
    return _meta(0x59, bytes([sharps & 0xFF, minor]))


def on(ch, pitch, vel=80):
    return bytes([0x90 | ch, pitch, vel])


def off(ch, pitch):
    return bytes([0x80 | ch, pitch, 0])


def program(ch, prog):
    return bytes([0xC0 | ch, prog])


def cc(ch, number, value):
    return bytes([0xB0 | ch, number, value])


def bend(ch, value):
    value += 8192
    return bytes([0xE0 | ch, value & 0x7F, value >> 7])


def _reference(data: bytes):
    from note_seq import midi_io

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            seq = midi_io.midi_to_note_sequence(data)
        except midi_io.MIDIConversionError:
            return None
    seq.id, seq.filename, seq.collection_name = "/id/midi/c/x", "dir/f.mid", "c"
    return seq


def _check(data: bytes):
    """Fast bytes must equal note-seq's; returns note-seq's sequence for rule checks."""
    fast = midi_to_sequence_bytes(data, sequence_id="/id/midi/c/x", filename="dir/f.mid", collection="c")
    ref = _reference(data)
    assert fast is not None, "a well-formed file must take the fast path"
    assert ref is not None
    assert fast == ref.SerializeToString(deterministic=True)
    return ref


def test_tempo_time_and_key_signatures_come_from_the_first_track_only():
    conductor = _track([(0, tempo(600_000)), (0, time_sig(3, 2)), (0, key_sig(-2, 1)),
                        (960, tempo(450_000)), (0, time_sig(6, 3)), (0, key_sig(3, 0))])
    melody = _track([(0, tempo(300_000)), (0, time_sig(5, 2)), (0, key_sig(1, 0)), (0, on(0, 60)),
                     (480, off(0, 60)), (960, tempo(250_000)), (0, on(0, 62)), (480, off(0, 62))])
    seq = _check(_file([conductor, melody]))
    assert [t.qpm for t in seq.tempos] == [100.0, pytest.approx(133.333, abs=1e-3)]
    assert [(t.numerator, t.denominator) for t in seq.time_signatures] == [(3, 4), (6, 8)]
    assert [(k.key, k.mode) for k in seq.key_signatures] == [(7, 1), (9, 0)]  # G minor (two flats), A major


def test_seconds_are_float64_through_many_tempo_changes():
    changes = [(97, tempo(612_345 + 1001 * i)) for i in range(40)]
    conductor = _track([(0, tempo(499_999))] + changes)
    notes = []
    for i in range(200):
        notes += [(37 if i else 0, on(0, 50 + i % 30)), (53, off(0, 50 + i % 30))]
    seq = _check(_file([conductor, _track(notes)], tpq=384))
    assert len(seq.tempos) == 41 and len(seq.notes) == 200
    assert any(repr(n.end_time) != repr(float(f"{n.end_time:.6g}")) for n in seq.notes)  # full precision


def test_same_pitch_started_twice_ends_both_at_the_first_note_off():
    seq = _check(_file([_track([(0, on(0, 60, 90)), (240, on(0, 60, 70)), (240, off(0, 60)),
                                (240, off(0, 60)), (0, on(0, 64)), (480, off(0, 64))])]))
    assert [(n.pitch, n.velocity, n.start_time, n.end_time) for n in seq.notes] == [
        (60, 90, 0.0, 0.5), (60, 70, 0.25, 0.5), (64, 80, 0.75, 1.25)]


def test_zero_length_notes_stay_open_or_are_dropped():
    # on/off on one tick: dropped.  A note-on on the tick of a note-off that closes an older note of the
    # same pitch stays open and ends at the next note-off.
    seq = _check(_file([_track([(0, on(0, 60)), (0, off(0, 60)), (0, on(0, 62)), (480, on(0, 62)),
                                (0, off(0, 62)), (480, off(0, 62))])]))
    assert [(n.pitch, n.start_time, n.end_time) for n in seq.notes] == [(62, 0.0, 0.5), (62, 0.5, 1.0)]


def test_program_is_the_one_current_at_the_note_off():
    seq = _check(_file([_track([(0, program(0, 5)), (0, on(0, 60)), (240, program(0, 40)), (240, off(0, 60)),
                                (0, on(0, 62)), (480, off(0, 62))])]))
    assert [(n.pitch, n.program, n.instrument) for n in seq.notes] == [(60, 40, 0), (62, 40, 0)]


def test_controls_before_the_first_note_are_shared_by_every_instrument_on_the_channel():
    events = [(0, cc(0, 7, 100)), (0, bend(0, -300)), (0, program(0, 1)), (0, on(0, 60)), (240, off(0, 60)),
              (0, cc(0, 10, 20)), (0, program(0, 2)), (0, cc(0, 11, 30)), (0, on(0, 61)), (240, off(0, 61)),
              (0, cc(0, 64, 127)), (0, on(1, 40)), (0, cc(1, 1, 1)), (240, off(1, 40)), (0, cc(3, 5, 5))]
    seq = _check(_file([_track(events), _track([(0, cc(0, 7, 1)), (0, on(0, 70)), (10, off(0, 70))])]))
    by_instrument = {}
    for c in seq.control_changes:
        by_instrument.setdefault(c.instrument, []).append(c.control_number)
    # Instruments 0 and 1 (programs 1 and 2 on channel 0) were both created from the channel's early
    # list, so each holds every CC sent on the channel, whichever program was current.
    assert by_instrument[0] == by_instrument[1] == [7, 10, 11, 64]
    assert [b.bend for b in seq.pitch_bends] == [-300, -300]
    assert by_instrument[2] == [1]  # sent while channel 1's first note sounded, before its instrument
    assert 5 not in sum(by_instrument.values(), [])  # channel 3 never closes a note: its CC is lost


def test_track_names_running_status_velocity_zero_drums_and_sysex():
    events = [(0, _meta(0x03, "Fiddle é".encode("latin-1"))), (0, b"\xf0\x03\x7e\x7f\xf7"), (0, on(9, 36)),
              (0, b"\x38\x60"), (120, b"\x24\x00"), (0, b"\x38\x00"), (0, _meta(0x03, b"Later")),
              (0, on(2, 70)), (120, bytes([0x92, 70, 0])), (0, _meta(0x01, b"text")), (0, bytes([0xA2, 70, 3]))]
    seq = _check(_file([_track(events)], tpq=96, fmt=0))
    assert [i.name for i in seq.instrument_infos] == ["Fiddle é", "Later"]
    assert [n.is_drum for n in seq.notes] == [True, True, False]


def test_files_outside_the_subset_are_left_to_note_seq():
    good = midi_factory.random_midi(3)
    hostile = [midi_factory.truncated(good), midi_factory.header_only_truncated_track(),
               midi_factory.format2_file(), midi_factory.running_status_abuse(), midi_factory.zero_and_max_tempo(),
               midi_factory.absurd_delta_time(), b"", b"MThd", _file([_track([(0, time_sig(0, 2))])]),
               _file([_track([(0, key_sig(9, 0))])]), _file([_track([], end=False)]),
               _file([_track([(0, b"\xf2\x01\x02")])]), _file([_track([(0, on(0, 60, 200))])])]
    for data in hostile:
        fast = midi_to_sequence_bytes(data)
        if fast is not None:  # answered: then it must be note-seq's answer
            ref = _reference(data)
            assert ref is not None and fast == _with_ids(ref, "", "", "")
    assert midi_to_sequence_bytes(_file([_track([(0, key_sig(9, 0))])])) is None
    assert midi_to_sequence_bytes(_file([_track([(0, on(0, 60, 200))])])) is None


def _with_ids(seq, sid, filename, collection) -> bytes:
    seq.id, seq.filename, seq.collection_name = sid, filename, collection
    return seq.SerializeToString(deterministic=True)


def _random_file(rng: random.Random) -> bytes:
    """Every event kind, few pitches and channels (to collide), many same-tick events."""
    tracks = []
    for _track_number in range(rng.randint(1, 4)):
        events, status = [], None
        for _ in range(rng.randint(1, 80)):
            delta = rng.choice([0, 0, 0, 1, 60, 120, 480, rng.randint(0, 5000)])
            ch = rng.choice([0, 0, 1, 9])
            roll = rng.random()
            if roll < 0.3:
                raw = on(ch, rng.choice([60, 62, 64]), rng.choice([0, 1, 64, 127]))
            elif roll < 0.5:
                raw = off(ch, rng.choice([60, 62, 64]))
            elif roll < 0.57:
                raw = program(ch, rng.choice([0, 1, 2, 127]))
            elif roll < 0.65:
                raw = cc(ch, rng.randint(0, 127), rng.randint(0, 127))
            elif roll < 0.7:
                raw = bend(ch, rng.randint(-8192, 8191))
            elif roll < 0.74:
                raw = tempo(rng.choice([1, 250_000, 500_000, 500_000, 0xFFFFFF]))
            elif roll < 0.77:
                raw = time_sig(rng.randint(1, 13), rng.randint(0, 5))
            elif roll < 0.8:
                raw = key_sig(rng.randint(-7, 7), rng.randint(0, 1))
            elif roll < 0.83:
                raw = _meta(0x03, bytes(rng.randint(32, 255) for _ in range(rng.randint(0, 6))))
            elif roll < 0.86:
                raw = _meta(rng.choice([0x01, 0x06, 0x7F, 0x21, 0x60]), bytes(rng.randint(0, 3)))
            elif roll < 0.88:
                raw = b"\xf0" + vlq(2) + b"\x01\xf7"
                status = None
            else:
                raw = rng.choice([bytes([0xA0 | ch, 5, 6]), bytes([0xD0 | ch, 5])])  # aftertouch
            if raw[0] < 0xF0 and raw[0] == status and rng.random() < 0.5:
                raw = raw[1:]  # running status
            elif raw[0] < 0xF0:
                status = raw[0]
            events.append((delta, raw))
        tracks.append(_track(events, end=rng.random() < 0.9))
    return _file(tracks, tpq=rng.choice([1, 96, 480, 960]), fmt=rng.choice([0, 1, 1, 2]))


def test_random_files_match_note_seq_exactly():
    rng = random.Random(20261126)
    answered = 0
    for _ in range(FUZZ):
        data = _random_file(rng)
        fast = midi_to_sequence_bytes(data, sequence_id="/id/midi/c/x", filename="dir/f.mid", collection="c")
        ref = _reference(data)
        if fast is None:
            continue
        answered += 1
        assert ref is not None and fast == ref.SerializeToString(deterministic=True)
    assert answered > 0.8 * FUZZ  # the generator writes valid files: nearly all take the fast path


def test_mutated_files_never_disagree_with_note_seq():
    rng = random.Random(7)
    for i in range(FUZZ):
        data = bytearray(_random_file(rng))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        fast = midi_to_sequence_bytes(bytes(data))
        if fast is not None:
            ref = _reference(bytes(data))
            assert ref is not None and fast == _with_ids(ref, "", "", ""), i


def test_mido_quirks_unknown_meta_loses_its_delta_and_checked_values_fall_back():
    # mido builds an unknown meta event without its delta time: the first note-off lands on its note-on's
    # tick (a zero-length note, dropped) and everything after moves 0.5 s earlier.
    seq = _check(_file([_track([(0, on(0, 60)), (480, _meta(0x60, b"\x00")), (0, off(0, 60)),
                                (480, on(0, 62)), (480, off(0, 62))])]))
    assert [(n.pitch, n.start_time, n.end_time) for n in seq.notes] == [(62, 0.5, 1.0)]
    # mido refuses these while reading: the fast reader must leave them to note-seq.
    refused = [_file([_track([(0, b"\xf0\x03\x01\x80\xf7")])]),  # a sysex data byte over 127
               _file([_track([(0, time_sig(4, 29))])]),  # 2**29: math.log(2**29, 2) is not an integer
               _file([_track([(0, _meta(0x54, bytes([0xE0, 0, 0, 0, 0])))])])]  # bad SMPTE frame rate
    for data in refused:
        assert midi_to_sequence_bytes(data) is None and _reference(data) is None
