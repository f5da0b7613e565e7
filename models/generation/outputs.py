"""One primer's generation job: primer file → melodies → MIDI, piano roll PNG and WAV per output.

Output layout: ``OUT/<primer-id>/<nnn>.mid`` (and ``.png``, ``.wav``), the primer itself as
``OUT/primers/<primer-id>.mid`` (and ``.png``, ``.wav``), so a primer's directory holds its outputs only; the caller
writes ``OUT/index.json`` from the entries returned here. Names never depend on time, so parallel runs cannot
collide (primer ids end in a hash, so none is ``primers``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
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
                        audio: Synthesizer | None = None, scorer: Callable[[list], list] | None = None,
                        keep_best: int | None = None) -> dict:
    """Generate, score and rank one primer's candidates; write the kept ones. A bad primer returns an
    entry with ``error``.

    ``scorer`` maps the generator's results to ``CandidateScore``s (``models/evaluation/ranking``);
    outputs are listed best first with ``score``, ``score_components`` and ``rank`` (1 = best). With
    ``keep_best`` K only the K best candidates without problems are written, and a primer whose every
    candidate has a problem is an error that lists them. Files are named by candidate number
    (``<nnn>.mid``), so a candidate keeps its name whatever ``keep_best`` is. ``audio`` renders a WAV
    beside each MIDI (``None``: no WAVs).
    """
    entry: dict[str, Any] = {"id": primer_id, "source": source, "status": "error", "outputs": []}
    if error is not None or primer is None:
        return {**entry, "error": storage.redact(error or "no primer")}
    try:
        results = generator.generate(primer.melody, options, seed_offset=seed_offset)
    except GenerationError as exc:
        return {**entry, "error": storage.redact(str(exc))}
    tempo = qpm or primer.qpm
    writer = _OutputWriter(generator, primer_id, primer, out_root, tempo, continuation_only, audio)
    entry["primer_files"] = writer.write_primer()
    if scorer is None:
        if keep_best is not None:
            raise ValueError("keep_best needs a scorer")
        entry["outputs"] = [writer.write(result, n, rank=None) for n, result in enumerate(results)]
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
        output = writer.write(results[n], n, rank)
        output.update(score=scores[n].score, score_components=scores[n].components, rank=rank,
                      problems=scores[n].problems)
        entry["outputs"].append(output)
    return {**entry, "status": "ok", "qpm": tempo, "primer_steps": results[0].primer_steps}


def clear_output(out_root: str, primer_ids: list[str]) -> None:
    """Make ``OUT`` ready for a run that writes these primers' files: unpublish it first (``index.json``, the
    marker, then the gallery), then remove what an earlier or killed run left for these primers (their
    directories, ``OUT/primers/``, temporary files), so a re-run after a kill writes exactly what a clean
    run writes and no index ever vouches for files being rewritten."""
    from melodyflow.models.generation.gallery import GALLERY, INDEX

    storage.remove_tree(storage.join(out_root, INDEX))
    storage.remove_tree(storage.join(out_root, GALLERY))
    for primer_id in primer_ids:
        storage.remove_tree(storage.child(out_root, primer_id))
    storage.remove_tree(storage.child(out_root, PRIMERS))
    storage.remove_temporaries(out_root)


def _remove_files_of(directory: str, candidates: list[int]) -> None:
    """Files an earlier run into the same OUT wrote for candidates this run discards."""
    for n in candidates:
        for ext in ("mid", "png", "wav"):
            storage.remove_tree(storage.child(directory, f"{n:03d}.{ext}"))


class _OutputWriter:
    """Writes one primer's files: the primer itself under ``OUT/primers/`` and each kept candidate."""

    def __init__(self, generator: MelodyGenerator, primer_id: str, primer: Primer, out_root: str, tempo: float,
                 continuation_only: bool, audio: Synthesizer | None):
        self.primer_id, self.primer, self.out_root, self.tempo = primer_id, primer, out_root, tempo
        self.continuation_only, self.audio = continuation_only, audio
        self.step_seconds = 60.0 / tempo / generator.config.steps_per_quarter

    def write_primer(self) -> dict:
        sequence = self.primer.melody.to_sequence(velocity=100, instrument=0, program=self.primer.program,
                                                  qpm=self.tempo)
        png = piano_roll_png(sequence, sequence.total_time, f"{self.primer_id}: primer")
        return write_files(storage.child(self.out_root, PRIMERS), PRIMERS, self.primer_id, sequence, png, self.audio)

    def write(self, result, n: int, rank: int | None) -> dict:
        """Candidate ``n``'s MIDI, piano roll and WAV, and its index entry."""
        sequence = melody_to_sequence(result.melody, self.tempo, self.primer.program, result.primer_steps,
                                      self.continuation_only)
        primer_end = 0.0 if self.continuation_only else result.primer_steps * self.step_seconds
        title = (f"{self.primer_id} #{n}" + (f", rank {rank}" if rank is not None else "")
                 + f" (ll {result.log_likelihood:.1f})")
        files = write_files(storage.child(self.out_root, self.primer_id), self.primer_id, f"{n:03d}", sequence,
                            piano_roll_png(sequence, primer_end, title), self.audio)
        return {"candidate": n, **files, "log_likelihood": result.log_likelihood, "steps": len(result.melody),
                "primer_steps": result.primer_steps, "notes": len(sequence.notes)}


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
