"""WAV rendering: which synthesizer is chosen, and that each one plays the right notes at the right times."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pretty_midi
import pytest
from note_seq.protobuf import music_pb2  # at collection: note_seq's first import must not happen inside a test

from melodyflow.models.generation.audio import (PEAK, TAIL_SECONDS, AudioError, Synthesizer, choose_synthesizer,
                                                read_wav, render_wav)
from melodyflow.models.generation.outputs import write_files

PIP_SYNTHS = ("tinysoundfont", "additive")


def _midi(notes: list[tuple[int, float, float]], program: int = 0, drums: bool = False) -> bytes:
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(program=program, is_drum=drums)
    inst.notes = [pretty_midi.Note(velocity=100, pitch=p, start=s, end=e) for p, s, e in notes]
    pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
    mono = samples.mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.argmax(spectrum) * rate / len(mono))


def test_without_fluidsynth_the_default_is_the_pip_soundfont_synth(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH: no fluidsynth program
    synth = choose_synthesizer()
    assert synth.name == "tinysoundfont" and synth.soundfont.endswith("TimGM6mb.sf2")
    assert "TimGM6mb.sf2" in synth.describe()
    with pytest.raises(AudioError, match="not installed"):
        choose_synthesizer("fluidsynth")
    with pytest.raises(ValueError, match="unknown synthesizer"):
        choose_synthesizer("timidity")


@pytest.mark.parametrize("name", PIP_SYNTHS)
def test_a4_sounds_at_440_hz_when_it_starts_and_ends_with_the_tail(name):
    synth = choose_synthesizer(name)
    samples, rate = read_wav(render_wav(_midi([(69, 0.5, 1.5)]), synth))
    assert rate == synth.sample_rate and samples.shape[1] == 1
    assert len(samples) / rate == pytest.approx(1.5 + TAIL_SECONDS, abs=0.01)
    assert np.abs(samples).max() == pytest.approx(PEAK, abs=0.01)  # normalized to -1 dBFS
    start = int(0.5 * rate)
    assert np.abs(samples[: start - int(0.01 * rate)]).max() < 1e-3  # silent until the note starts
    assert np.abs(samples[start: start + int(0.1 * rate)]).max() > 0.3
    assert _dominant_hz(samples[start: start + rate // 2], rate) == pytest.approx(440.0, abs=4.0)


def test_every_general_midi_program_and_the_drum_kit_render_finite_sound():
    """pyTinySoundFont's filter diverges (NaN) for a fifth of the programs at 22.05 kHz; rendering at 44.1 kHz
    and decimating must keep every program audible."""
    synth = choose_synthesizer("tinysoundfont")
    for program in range(128):
        samples, _ = read_wav(render_wav(_midi([(60, 0.0, 0.3)], program=program), synth))
        assert np.abs(samples).max() > 0.5, f"program {program} is silent"
    samples, _ = read_wav(render_wav(_midi([(38, 0.0, 0.2)], drums=True), synth))
    assert np.abs(samples).max() > 0.5


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="the fluidsynth program is not installed")
def test_fluidsynth_is_preferred_when_installed_and_plays_the_note():
    synth = choose_synthesizer()
    assert synth.name == "fluidsynth"
    samples, rate = read_wav(render_wav(_midi([(69, 0.0, 1.0)]), synth))
    assert _dominant_hz(samples[: rate // 2], rate) == pytest.approx(440.0, abs=4.0)


def test_a_broken_synthesizer_costs_only_the_wav(tmp_path):
    sequence = music_pb2.NoteSequence(ticks_per_quarter=220, total_time=1.0)
    sequence.notes.add(pitch=60, velocity=80, start_time=0.0, end_time=1.0)
    broken = Synthesizer("fluidsynth", soundfont=str(tmp_path / "missing.sf2"), executable=str(tmp_path / "nope"))
    files = write_files(str(tmp_path / "out" / "p"), "p", "000", sequence, b"\x89PNG fake", broken)
    assert files["wav"] is None and "fluidsynth failed" in files["audio_error"]
    assert (tmp_path / "out" / "p" / "000.mid").read_bytes()[:4] == b"MThd"
    assert not (tmp_path / "out" / "p" / "000.wav").exists()
    with pytest.raises(AudioError, match="unreadable MIDI"):
        render_wav(b"MThd garbage", choose_synthesizer("additive"))
