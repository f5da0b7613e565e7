"""One primer's generation job: primer file → melodies → MIDI, piano roll PNG and WAV per output.

Output layout: ``OUT/<primer-id>/<nnn>.mid`` (and ``.png``, ``.wav``), the primer itself as
``OUT/primers/<primer-id>.mid`` (and ``.png``, ``.wav``), so a primer's directory holds its outputs only; the caller
writes ``OUT/index.json`` from the entries returned here. Names never depend on time, so parallel runs cannot
collide (primer ids end in a hash, so none is ``primers``).
"""

from __future__ import annotations

import io
from typing import Any

from melodyflow.models.generation.audio import AudioError, Synthesizer, render_wav
from melodyflow.models.generation.sampling import GenerationError, GenerationOptions, MelodyGenerator
from melodyflow.transforms.io import storage
from melodyflow.models.generation.primers import Primer, PrimerError, PrimerWindow, primer_from_midi

PRIMERS = "primers"  # OUT/primers/<primer-id>.mid: the primers as they were read, beside their outputs


def melody_to_sequence(melody, qpm: float, program: int, primer_steps: int, continuation_only: bool):
    from note_seq.melodies_lib import Melody

    if continuation_only:
        melody = Melody(list(melody)[primer_steps:])
    return melody.to_sequence(velocity=100, instrument=0, program=program, qpm=qpm)


def piano_roll_png(sequence, primer_end: float, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3))
    for note in sequence.notes:
        color = "tab:gray" if note.start_time < primer_end else "tab:blue"
        ax.add_patch(plt.Rectangle((note.start_time, note.pitch - 0.4), note.end_time - note.start_time, 0.8,
                                   color=color))
    pitches = [n.pitch for n in sequence.notes] or [60]
    ax.set_xlim(0, max(sequence.total_time, 1.0))
    ax.set_ylim(min(pitches) - 2, max(pitches) + 2)
    ax.set(xlabel="seconds", ylabel="MIDI pitch", title=title)
    if primer_end > 0:
        ax.axvline(primer_end, color="tab:red", linewidth=0.8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def write_files(directory: str, relative: str, base: str, sequence, png: bytes, audio: Synthesizer | None) -> dict:
    """Write ``<base>.mid``, ``<base>.png`` and (with ``audio``) ``<base>.wav``; paths in the result are relative
    to the output root (``relative`` is the primer's directory name). A synthesizer failure costs only the WAV."""
    import note_seq

    midi = io.BytesIO()
    note_seq.note_sequence_to_pretty_midi(sequence).write(midi)
    storage.write_bytes(storage.child(directory, f"{base}.mid"), midi.getvalue())
    storage.write_bytes(storage.child(directory, f"{base}.png"), png)
    files: dict = {"midi": f"{relative}/{base}.mid", "png": f"{relative}/{base}.png", "wav": None}
    if audio is not None:
        try:
            storage.write_bytes(storage.child(directory, f"{base}.wav"), render_wav(midi.getvalue(), audio))
            files["wav"] = f"{relative}/{base}.wav"
        except AudioError as exc:
            files["audio_error"] = str(exc)
    return files


def generate_for_primer(generator: MelodyGenerator, primer_id: str, primer: Primer | None, out_root: str,
                        options: GenerationOptions, *, source: str, qpm: float | None = None,
                        continuation_only: bool = False, seed_offset: int = 0, error: str | None = None,
                        audio: Synthesizer | None = None) -> dict:
    """Generate and write every output of one primer; a bad primer returns an entry with ``error``.

    ``audio`` renders a WAV beside each MIDI (``None``: no WAVs).
    """
    entry: dict[str, Any] = {"id": primer_id, "source": source, "status": "error", "outputs": []}
    if error is not None or primer is None:
        return {**entry, "error": storage.redact(error or "no primer")}
    try:
        results = generator.generate(primer.melody, options, seed_offset=seed_offset)
    except GenerationError as exc:
        return {**entry, "error": storage.redact(str(exc))}
    tempo = qpm or primer.qpm
    step_seconds = 60.0 / tempo / generator.config.steps_per_quarter
    directory = storage.child(out_root, primer_id)
    primer_sequence = primer.melody.to_sequence(velocity=100, instrument=0, program=primer.program, qpm=tempo)
    entry["primer_files"] = write_files(storage.child(out_root, PRIMERS), PRIMERS, primer_id, primer_sequence,
                                        piano_roll_png(primer_sequence, primer_sequence.total_time,
                                                       f"{primer_id}: primer"), audio)
    for n, result in enumerate(results):
        sequence = melody_to_sequence(result.melody, tempo, primer.program, result.primer_steps, continuation_only)
        primer_end = 0.0 if continuation_only else result.primer_steps * step_seconds
        png = piano_roll_png(sequence, primer_end, f"{primer_id} #{n} (ll {result.log_likelihood:.1f})")
        entry["outputs"].append({
            **write_files(directory, primer_id, f"{n:03d}", sequence, png, audio),
            "log_likelihood": result.log_likelihood, "steps": len(result.melody),
            "primer_steps": result.primer_steps, "notes": len(sequence.notes),
        })
    return {**entry, "status": "ok", "qpm": tempo, "primer_steps": results[0].primer_steps if results else 0}


def load_primer(url: str, window: PrimerWindow | None = None) -> Primer:
    """Read and parse one primer (or a window of it); the size limit is checked before the file is
    downloaded."""
    from melodyflow.models.generation.primers import MAX_PRIMER_BYTES

    try:
        size = storage.size(url)
        if size > MAX_PRIMER_BYTES:
            raise PrimerError(f"the primer is {size} bytes, over the {MAX_PRIMER_BYTES}-byte limit")
        data = storage.read_bytes(url)
    except (FileNotFoundError, IsADirectoryError):
        raise PrimerError(f"primer not found: {url}") from None
    return primer_from_midi(data, window=window)
