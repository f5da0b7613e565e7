"""One primer's generation job: primer file → melodies → MIDI, piano roll PNG, optional WAV.

Output layout: ``OUT/<primer-id>/<nnn>.mid`` (and ``.png``, ``.wav``); the caller writes ``OUT/index.json``
from the entries returned here. Names never depend on time, so parallel runs cannot collide.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from typing import Any

from melodyflow.models.generation.sampling import GenerationError, GenerationOptions, MelodyGenerator
from melodyflow.transforms.io import storage
from melodyflow.models.generation.primers import Primer, PrimerError, primer_from_midi

SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2",
              "/usr/share/soundfonts/default.sf2")


def synthesizer() -> tuple[str, str] | None:
    """``(fluidsynth, soundfont)`` when both are installed; WAV output is skipped otherwise."""
    exe = shutil.which("fluidsynth")
    font = os.environ.get("MELODYFLOW_SOUNDFONT") or next((f for f in SOUNDFONTS if os.path.exists(f)), None)
    return (exe, font) if exe and font and os.path.exists(font) else None


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


def _wav(midi: bytes) -> bytes | None:
    synth = synthesizer()
    if synth is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = os.path.join(tmp, "x.mid"), os.path.join(tmp, "x.wav")
        with open(mid, "wb") as fh:
            fh.write(midi)
        subprocess.run([synth[0], "-ni", "-F", wav, "-r", "22050", synth[1], mid], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        with open(wav, "rb") as fh:
            return fh.read()


def generate_for_primer(generator: MelodyGenerator, primer_id: str, primer: Primer | None, out_root: str,
                        options: GenerationOptions, *, source: str, qpm: float | None = None,
                        continuation_only: bool = False, seed_offset: int = 0, error: str | None = None,
                        scorer: Callable[[list], list] | None = None, keep_best: int | None = None) -> dict:
    """Generate, score and rank one primer's candidates; write the kept ones. A bad primer returns an
    entry with ``error``.

    ``scorer`` maps the generator's results to ``CandidateScore``s (``models/evaluation/ranking``);
    outputs are listed best first with ``score``, ``score_components`` and ``rank`` (1 = best). With
    ``keep_best`` K only the K best candidates without problems are written, and a primer whose every
    candidate has a problem is an error that lists them. Files are named by candidate number
    (``<nnn>.mid``), so a candidate keeps its name whatever ``keep_best`` is.
    """
    entry: dict[str, Any] = {"id": primer_id, "source": source, "status": "error", "outputs": []}
    if error is not None:
        return {**entry, "error": storage.redact(error)}
    assert primer is not None  # a primer that could not be read comes with its error
    try:
        results = generator.generate(primer.melody, options, seed_offset=seed_offset)
    except GenerationError as exc:
        return {**entry, "error": storage.redact(str(exc))}
    tempo = qpm or primer.qpm
    if scorer is None:
        if keep_best is not None:
            raise ValueError("keep_best needs a scorer")
        for n, result in enumerate(results):
            entry["outputs"].append(_write_output(generator, primer_id, primer, out_root, result, n, tempo,
                                                  continuation_only, rank=None))
        return {**entry, "status": "ok", "qpm": tempo, "primer_steps": results[0].primer_steps}
    from melodyflow.models.evaluation.ranking import ranking_order

    scores = scorer(results)
    order = ranking_order(scores)
    kept = order if keep_best is None else [i for i in order if not scores[i].problems][:keep_best]
    entry["candidates"] = len(results)
    entry["discarded"] = [{"candidate": i, "score": scores[i].score, "problems": scores[i].problems}
                          for i in order if i not in kept]
    _remove_files_of(storage.child(out_root, primer_id), [d["candidate"] for d in entry["discarded"]])
    if not kept:
        problems = sorted({p.split(":", 1)[0] for i in order for p in scores[i].problems})
        return {**entry, "error": f"all {len(results)} candidates were rejected ({', '.join(problems)}); "
                                  "see 'discarded'"}
    for rank, n in enumerate(kept, start=1):
        output = _write_output(generator, primer_id, primer, out_root, results[n], n, tempo, continuation_only, rank)
        output.update(score=scores[n].score, score_components=scores[n].components, rank=rank,
                      problems=scores[n].problems)
        entry["outputs"].append(output)
    return {**entry, "status": "ok", "qpm": tempo, "primer_steps": results[0].primer_steps}


def _remove_files_of(directory: str, candidates: list[int]) -> None:
    """Files an earlier run into the same OUT wrote for candidates this run discards."""
    for n in candidates:
        for ext in ("mid", "png", "wav"):
            storage.remove_tree(storage.child(directory, f"{n:03d}.{ext}"))


def _write_output(generator: MelodyGenerator, primer_id: str, primer: Primer, out_root: str, result, n: int,
                  tempo: float, continuation_only: bool, rank: int | None) -> dict:
    """Write candidate ``n``'s MIDI, piano roll and (when a synthesizer exists) WAV; its index entry."""
    import note_seq

    step_seconds = 60.0 / tempo / generator.config.steps_per_quarter
    directory = storage.child(out_root, primer_id)
    sequence = melody_to_sequence(result.melody, tempo, primer.program, result.primer_steps, continuation_only)
    midi = io.BytesIO()
    note_seq.note_sequence_to_pretty_midi(sequence).write(midi)
    base = f"{n:03d}"
    storage.write_bytes(storage.child(directory, f"{base}.mid"), midi.getvalue())
    primer_end = 0.0 if continuation_only else result.primer_steps * step_seconds
    title = f"{primer_id} #{n}" + (f", rank {rank}" if rank is not None else "") + f" (ll {result.log_likelihood:.1f})"
    storage.write_bytes(storage.child(directory, f"{base}.png"), piano_roll_png(sequence, primer_end, title))
    wav = _wav(midi.getvalue())
    if wav is not None:
        storage.write_bytes(storage.child(directory, f"{base}.wav"), wav)
    return {
        "candidate": n, "midi": f"{primer_id}/{base}.mid", "png": f"{primer_id}/{base}.png",
        "wav": f"{primer_id}/{base}.wav" if wav is not None else None,
        "log_likelihood": result.log_likelihood, "steps": len(result.melody),
        "primer_steps": result.primer_steps, "notes": len(sequence.notes),
    }


def load_primer(url: str) -> Primer:
    """Read and parse one primer; the size limit is checked before the file is downloaded."""
    from melodyflow.models.generation.primers import MAX_PRIMER_BYTES

    try:
        size = storage.size(url)
        if size > MAX_PRIMER_BYTES:
            raise PrimerError(f"the primer is {size} bytes, over the {MAX_PRIMER_BYTES}-byte limit")
        data = storage.read_bytes(url)
    except (FileNotFoundError, IsADirectoryError):
        raise PrimerError(f"primer not found: {url}") from None
    return primer_from_midi(data)
