"""Benchmark: WAV rendering per 8-second melody, for each synthesizer, and how close each sounds to FluidSynth.

    .venv/bin/python bench/audio_synths.py [--melodies 16] [--fluidsynth PATH]

Melodies are like generated outputs: 64 sixteenth-note steps at 120 qpm (8 s), notes of 1-4 steps from C major,
piano (program 0). "first" is the first melody in a fresh process (imports and soundfont loading included);
"per melody" the mean over the rest, as a generation run renders them. "similarity" correlates log-magnitude
spectrograms with FluidSynth's rendering of the same soundfont (1.0 = identical), when FluidSynth is found (on
PATH or ``--fluidsynth``). The baseline row is pretty_midi's own ``synthesize`` (sine waves), the pip-only option
before. FluidSynth writes stereo, the others mono.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import time

import numpy as np

STEPS = 64  # sixteenth notes at 120 qpm: 8 seconds


def melody_midi(seed: int) -> bytes:
    import pretty_midi

    rng = random.Random(seed)
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(program=0)
    step, t = 0.125, 0
    while t < STEPS:
        length = rng.choice([1, 2, 2, 4])
        if rng.random() > 0.15:  # some rests
            pitch = 60 + rng.choice([0, 2, 4, 5, 7, 9, 11, 12, 14])
            inst.notes.append(pretty_midi.Note(velocity=100, pitch=pitch, start=t * step,
                                               end=min(t + length, STEPS) * step))
        t += length
    pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def _log_spectrogram(samples: np.ndarray, rate: int) -> np.ndarray:
    from scipy.signal import stft

    mono = samples.reshape(len(samples), -1).mean(axis=1)
    return np.log1p(100 * np.abs(stft(mono, fs=rate, nperseg=1024)[2]))


def similarity(a: np.ndarray, b: np.ndarray, rate: int) -> float:
    x, y = _log_spectrogram(a, rate), _log_spectrogram(b, rate)
    n = min(x.shape[1], y.shape[1])
    return float(np.corrcoef(x[:, :n].ravel(), y[:, :n].ravel())[0, 1])


def sine_baseline(midi: bytes, rate: int) -> bytes:
    import pretty_midi

    from melodyflow.models.generation.audio import wav_bytes

    return wav_bytes(pretty_midi.PrettyMIDI(io.BytesIO(midi)).synthesize(fs=rate).astype(np.float32), rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--melodies", type=int, default=16)
    parser.add_argument("--fluidsynth", default=shutil.which("fluidsynth"), help="the fluidsynth program")
    args = parser.parse_args()

    from melodyflow.models.generation.audio import (SAMPLE_RATE, Synthesizer, bundled_soundfont,
                                                    choose_synthesizer, read_wav, render_wav)

    melodies = [melody_midi(i) for i in range(args.melodies)]
    candidates: list[tuple[str, object]] = []
    if args.fluidsynth:
        candidates.append(("fluidsynth + TimGM6mb", Synthesizer("fluidsynth", soundfont=bundled_soundfont(),
                                                                 executable=args.fluidsynth)))
    candidates += [("tinysoundfont + TimGM6mb", choose_synthesizer("tinysoundfont")),
                   ("additive (numpy)", choose_synthesizer("additive")),
                   ("baseline: pretty_midi sine", None)]
    renders: dict[str, list[np.ndarray]] = {}
    rows = []
    for label, synth in candidates:
        times, sizes, outs = [], [], []
        for midi in melodies:
            started = time.perf_counter()
            wav = render_wav(midi, synth) if synth is not None else sine_baseline(midi, SAMPLE_RATE)
            times.append(time.perf_counter() - started)
            sizes.append(len(wav))
            outs.append(read_wav(wav)[0])
        renders[label] = outs
        rows.append((label, times[0], float(np.mean(times[1:] or times)), np.mean(sizes) / 1024))
    reference = renders.get("fluidsynth + TimGM6mb")
    print(f"{args.melodies} melodies of 8 s, {SAMPLE_RATE} Hz 16-bit WAV\n")
    print(f"{'synthesizer':<28} {'first (ms)':>11} {'per melody (ms)':>16} {'WAV (KB)':>9} {'similarity':>11}")
    for label, first, mean, kb in rows:
        sim = "-"
        if reference is not None:
            sim = f"{np.mean([similarity(a, b, SAMPLE_RATE) for a, b in zip(renders[label], reference)]):.3f}"
        print(f"{label:<28} {first * 1000:>11.0f} {mean * 1000:>16.1f} {kb:>9.0f} {sim:>11}")


if __name__ == "__main__":
    main()
