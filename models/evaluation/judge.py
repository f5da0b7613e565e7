"""Judge a set of melodies against a dataset: per-melody features, set comparison, copies.

The judged melodies are compared with the dataset's eval split (melodies no model trained on) and
checked for copies against its train split. Melodies from MIDI files get generation's primer rule
(the melody instrument of the file, ``models/generation/primers.py``), then the dataset's own
treatment: squashed into the config's key and range and cut at the dataset's longest melody (512
steps by default), so both sides went through the same steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from melodyflow.models.evaluation.copy_index import CopyIndex, CopySpan
from melodyflow.models.evaluation.features import ALL_FEATURES, COPIED_SPAN, feature_table
from melodyflow.models.evaluation.set_comparison import Comparison, compare_sets, similarity

COPY_THRESHOLD_STEPS = 32  # two 16-step bars
DEFAULT_MAX_STEPS = 512


@dataclass
class Judged:
    """Melodies to judge; each is judged from ``starts[i]`` on (a primer before it is context only)."""

    events: list[np.ndarray] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # {"name", "error"} of inputs that gave no melody

    def add(self, name: str, events: np.ndarray, start: int = 0) -> None:
        self.names.append(name)
        self.events.append(np.asarray(events, dtype=np.int64))
        self.starts.append(int(start))

    def judged_parts(self) -> list[np.ndarray]:
        return [e[s:] for e, s in zip(self.events, self.starts)]


def melody_from_midi(data: bytes, config, max_steps: int = DEFAULT_MAX_STEPS) -> np.ndarray:
    """A MIDI file's melody by generation's primer rule, squashed and cut like a dataset melody."""
    from melodyflow.models.generation.primers import PrimerError, primer_from_midi
    from melodyflow.transforms.melodies.encoding_compiled import squashed_events

    try:
        primer = primer_from_midi(data, config.steps_per_quarter)
    except PrimerError as exc:  # the rule's messages speak of "the primer"; here it is a judged file
        raise ValueError(str(exc).replace("the primer", "the file")) from None
    events = np.asarray(list(primer.melody), dtype=np.int64)
    return squashed_events(events, config.min_note, config.max_note, config.transpose_to_key)[:max_steps]


@dataclass
class Judgement:
    comparisons: dict[str, Comparison]
    similarity: float
    judged_spans: list[CopySpan]
    reference_spans: list[CopySpan]
    judged_table: dict[str, np.ndarray]
    reference_table: dict[str, np.ndarray]

    def copied(self, threshold: int = COPY_THRESHOLD_STEPS) -> dict:
        steps = np.array([s.steps for s in self.judged_spans], dtype=np.int64)
        ref = np.array([s.steps for s in self.reference_spans], dtype=np.int64)
        return {"fraction": round(float((steps >= threshold).mean()), 6) if steps.size else 0.0,
                "max_steps": int(steps.max()) if steps.size else 0,
                "count": int((steps >= threshold).sum()), "threshold_steps": threshold,
                "reference_fraction": round(float((ref >= threshold).mean()), 6) if ref.size else 0.0}


def _with_copy_feature(table: dict[str, np.ndarray], spans: Sequence[CopySpan]) -> dict[str, np.ndarray]:
    return {**table, COPIED_SPAN.name: np.array([s.steps for s in spans], dtype=np.float64)}


def judge(judged: Judged, reference_melodies: Sequence[np.ndarray], index: CopyIndex,
          reference_table: dict[str, np.ndarray] | None = None) -> Judgement:
    """Compare ``judged`` with ``reference_melodies`` (the eval split) and check it against ``index``
    (the train split). ``reference_table`` may hold the reference's features already."""
    judged_spans = index.longest_copies(judged.events, judged.starts)
    reference_spans = index.longest_copies(reference_melodies)
    judged_table = _with_copy_feature(feature_table(judged.judged_parts()), judged_spans)
    if reference_table is None:
        reference_table = feature_table(reference_melodies)
    reference_table = _with_copy_feature(reference_table, reference_spans)
    comparisons = compare_sets(judged_table, reference_table, ALL_FEATURES)
    # Style only: copying is reported on its own (copied.fraction), and a corpus whose eval split repeats
    # training tunes would otherwise reward copies.
    style = {name: c for name, c in comparisons.items() if name != COPIED_SPAN.name}
    return Judgement(comparisons=comparisons, similarity=similarity(style), judged_spans=judged_spans,
                     reference_spans=reference_spans, judged_table=judged_table, reference_table=reference_table)
