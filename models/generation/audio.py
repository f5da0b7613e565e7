"""WAV audio for generated melodies, from the best synthesizer this machine has.

Best first:

1. ``fluidsynth``: the FluidSynth program (Debian: ``apt install fluidsynth fluid-soundfont-gm``) playing a General
   MIDI soundfont (``MELODYFLOW_SOUNDFONT``, else a system GM font, else pretty_midi's ``TimGM6mb.sf2``): every
   SoundFont 2 modulator, plus reverb and chorus.
2. ``tinysoundfont``: pyTinySoundFont (MIT), a dependency of this package where it ships a wheel (x86-64 Linux),
   playing pretty_midi's ``TimGM6mb.sf2``: the same sampled General MIDI instruments without effects, with nothing
   installed beyond ``pip install``.
3. ``additive``: a numpy voice (decaying harmonics, 5 ms attack), everywhere else.

The other pip-only routes do not work here: the ``tinysoundfont`` package requires ``pyaudio``, which has no Linux
wheel and needs PortAudio's headers to build; symusic 0.6's synthesizer fails with numpy 2.4; pyfluidsynth needs
the libfluidsynth system library; pretty_midi's ``synthesize`` sums bare sine waves that click at every note.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import tempfile
import wave
from dataclasses import asdict, dataclass

import numpy as np

SYNTHESIZERS = ("fluidsynth", "tinysoundfont", "additive")
SYSTEM_SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2",
                     "/usr/share/soundfonts/default.sf2")
SAMPLE_RATE = 22050
TAIL_SECONDS = 1.0  # kept after the last note ends, for its release
PEAK = 10 ** (-1 / 20)  # every file is normalized to a -1 dBFS peak, so outputs play equally loud
# pyTinySoundFont's low-pass biquad is unstable when a region's cut-off (up to 13,500 cents, 19.9 kHz) lies above
# Nyquist: at 22.05 kHz a fifth of the General MIDI programs render NaN. It renders at 44.1 kHz, then decimates.
_TSF_RATE = 44100
_FLUIDSYNTH_TIMEOUT_S = 120


class AudioError(RuntimeError):
    """A synthesizer failed on one file; the MIDI stays valid, only its WAV is missing."""


@dataclass(frozen=True)
class Synthesizer:
    """Which synthesizer renders WAVs, with what soundfont, at what sample rate."""

    name: str
    soundfont: str | None = None
    executable: str | None = None
    sample_rate: int = SAMPLE_RATE

    def describe(self) -> str:
        font = f" with {os.path.basename(self.soundfont)}" if self.soundfont else ""
        return f"{self.name}{font}, {self.sample_rate} Hz"

    def to_dict(self) -> dict:
        return asdict(self)


def bundled_soundfont() -> str:
    """pretty_midi's General MIDI soundfont (TimGM6mb, 6 MB, GPL-2), installed with note-seq."""
    import pretty_midi

    return os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")


def _tinysoundfont_installed() -> bool:
    try:
        import pyTinySoundFont  # noqa: F401
    except ImportError:
        return False
    return True


def choose_synthesizer(name: str | None = None, sample_rate: int = SAMPLE_RATE) -> Synthesizer:
    """The best synthesizer available (``name=None``), or the one named; unavailable names raise ``AudioError``."""
    if name is not None and name not in SYNTHESIZERS:
        raise ValueError(f"unknown synthesizer {name!r}; choose one of {', '.join(SYNTHESIZERS)}")
    exe = shutil.which("fluidsynth")
    if name in (None, "fluidsynth") and exe:
        font = os.environ.get("MELODYFLOW_SOUNDFONT") or next(
            (f for f in SYSTEM_SOUNDFONTS if os.path.exists(f)), bundled_soundfont())
        if not os.path.exists(font):
            raise AudioError(f"MELODYFLOW_SOUNDFONT names a missing file: {font}")
        return Synthesizer("fluidsynth", soundfont=font, executable=exe, sample_rate=sample_rate)
    if name in (None, "tinysoundfont") and _tinysoundfont_installed():
        return Synthesizer("tinysoundfont", soundfont=bundled_soundfont(), sample_rate=sample_rate)
    if name in (None, "additive"):
        return Synthesizer("additive", sample_rate=sample_rate)
    raise AudioError(f"synthesizer {name!r} is not installed")


def render_wav(midi: bytes, synth: Synthesizer) -> bytes:
    """A 16-bit PCM WAV of ``midi``, peak-normalized, ending ``TAIL_SECONDS`` after its last note."""
    import pretty_midi

    try:
        pm = pretty_midi.PrettyMIDI(io.BytesIO(midi))
    except Exception as exc:  # pretty_midi raises anything from mido's parser
        raise AudioError(f"unreadable MIDI: {exc}") from exc
    notes = [(inst.program, inst.is_drum, n.pitch, n.velocity, n.start, n.end)
             for inst in pm.instruments for n in inst.notes if n.end > n.start]
    if synth.name == "fluidsynth":
        samples = _render_fluidsynth(midi, synth)
    elif synth.name == "tinysoundfont":
        samples = _render_tinysoundfont(notes, synth)
    else:
        samples = _render_additive(notes, synth.sample_rate)
    end = max((n[5] for n in notes), default=0.0) + TAIL_SECONDS
    return wav_bytes(samples[: int(end * synth.sample_rate)], synth.sample_rate)


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """``samples`` (frames, or frames × channels, float) as a 16-bit WAV normalized to ``PEAK``."""
    if not np.isfinite(samples).all():
        raise AudioError("the synthesizer produced non-finite samples")
    frames = samples.reshape(len(samples), -1)
    peak = float(np.abs(frames).max()) if frames.size else 0.0
    pcm = np.round(frames * (PEAK / peak if peak > 0 else 0.0) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(frames.shape[1])
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return buf.getvalue()


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """``(frames × channels float in [-1, 1], sample rate)`` of a 16-bit PCM WAV."""
    with wave.open(io.BytesIO(data), "rb") as src:
        if src.getsampwidth() != 2:
            raise AudioError(f"expected 16-bit PCM, got {8 * src.getsampwidth()}-bit")
        raw = np.frombuffer(src.readframes(src.getnframes()), dtype="<i2")
        return raw.reshape(-1, src.getnchannels()).astype(np.float32) / 32768.0, src.getframerate()


def _render_fluidsynth(midi: bytes, synth: Synthesizer) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="melodyflow-audio-") as tmp:
        mid, out = os.path.join(tmp, "in.mid"), os.path.join(tmp, "out.wav")
        with open(mid, "wb") as fh:
            fh.write(midi)
        cmd = [synth.executable or "fluidsynth", "-ni", "-q", "-T", "wav", "-O", "s16", "-F", out,
               "-r", str(synth.sample_rate), str(synth.soundfont), mid]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=_FLUIDSYNTH_TIMEOUT_S)
            with open(out, "rb") as fh:
                return read_wav(fh.read())[0]
        except (OSError, subprocess.SubprocessError, wave.Error) as exc:
            raise AudioError(f"fluidsynth failed: {exc}") from exc


@functools.lru_cache(maxsize=2)
def _soundfont(path: str) -> tuple[object, dict[tuple[int, int], dict]]:
    """The soundfont's sample data and its presets by ``(bank, program)``; loaded once per process."""
    import pyTinySoundFont as tsf

    sf2 = tsf.LoadSF2(path)
    return sf2[1], {(p["bank"], p["preset"]): p for p in tsf.LoadPresets(sf2)}


@functools.lru_cache(maxsize=256)  # ≈1.5 s of float32 at 44.1 kHz each: at most ≈70 MB
def _tinysoundfont_note(path: str, bank: int, program: int, pitch: int, velocity: int, length: int) -> np.ndarray:
    """One note, sustained for ``length`` samples, with its release; melodies repeat notes, so renders are cached."""
    import pyTinySoundFont as tsf

    samples, presets = _soundfont(path)
    preset = presets.get((bank, program)) or presets.get((bank, 0)) or presets[min(presets)]
    _count, buf = tsf.SynthNote(samples, preset, pitch, max(velocity, 1) / 127, length, tsf.MONO, _TSF_RATE)
    voice = np.frombuffer(buf, dtype=np.float32) if buf is not None else np.zeros(0, np.float32)
    voice.flags.writeable = False
    return voice


def _render_tinysoundfont(notes: list[tuple], synth: Synthesizer) -> np.ndarray:
    from scipy.signal import resample_poly

    end = max((n[5] for n in notes), default=0.0) + TAIL_SECONDS
    mix = np.zeros(int(end * _TSF_RATE) + 1, dtype=np.float32)
    for program, is_drum, pitch, velocity, start, stop in notes:
        voice = _tinysoundfont_note(str(synth.soundfont), 128 if is_drum else 0, 0 if is_drum else program, pitch,
                                    velocity, max(1, int((stop - start) * _TSF_RATE)))
        at = int(start * _TSF_RATE)
        voice = voice[: len(mix) - at]
        mix[at: at + len(voice)] += voice
    if synth.sample_rate == _TSF_RATE:
        return mix
    divisor = np.gcd(synth.sample_rate, _TSF_RATE)
    return resample_poly(mix, synth.sample_rate // divisor, _TSF_RATE // divisor).astype(np.float32)


def _render_additive(notes: list[tuple], sample_rate: int) -> np.ndarray:
    """Each note: harmonics 1..6 at 1/k^1.3, each decaying faster than the one below, 5 ms attack, 80 ms release."""
    end = max((n[5] for n in notes), default=0.0) + TAIL_SECONDS
    mix = np.zeros(int(end * sample_rate) + 1, dtype=np.float32)
    release = 0.08
    for _program, is_drum, pitch, velocity, start, stop in notes:
        if is_drum:
            continue
        duration = stop - start
        t = np.arange(int((duration + 5 * release) * sample_rate)) / sample_rate
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        env = (1 - np.exp(-t / 0.005)) * np.where(t < duration, 1.0, np.exp(-(t - duration) / release))
        voice = np.zeros_like(t)
        for k in range(1, 7):
            if k * f0 < sample_rate / 2:
                voice += np.sin(2 * np.pi * k * f0 * t) * np.exp(-t * (1.0 + 1.5 * k)) / k ** 1.3
        at = int(start * sample_rate)
        part = (voice * env * velocity / 127).astype(np.float32)[: len(mix) - at]
        mix[at: at + len(part)] += part
    return mix
