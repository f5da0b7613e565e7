"""Melodies sampled from a bundle for judging, primed with the opening bar of unseen melodies.

Sample ``i`` continues the first bar (16 steps) of eval melody ``m_i`` and is judged on what the model
added, cut to a target length. The eval melodies and target lengths are drawn with the seed: without
``num_steps``, the target of sample ``i`` is the length of another eval melody drawn for it, so judged
and reference sets have the same length distribution (range, distinct pitches and bar statistics
depend on length); with ``num_steps``, every sample is that long. ``per_primer`` samples share one
primer, so they are generated together in batched steps (temperature sampling, as ``generate`` does
by default). The primer bar never counts: it is real data the model was given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRIMER_STEPS = 16


@dataclass(frozen=True)
class SampleSettings:
    num_samples: int = 64
    num_steps: int | None = None  # judged steps per sample; None: the lengths of drawn eval melodies
    per_primer: int = 8
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_samples < 1 or self.per_primer < 1:
            raise ValueError("--num-samples must be at least 1")
        if self.num_steps is not None and self.num_steps < 1:
            raise ValueError("--num-steps must be at least 1")


@dataclass(frozen=True)
class Sample:
    events: np.ndarray  # primer bar + judged continuation
    primer_steps: int
    primer_source: str  # id of the eval melody whose first bar primed it


def plan_samples(eval_sizes: list[int], settings: SampleSettings) -> list[tuple[int, int]]:
    """``(eval melody giving the primer, judged steps)`` per sample, drawn with the seed."""
    if not eval_sizes:
        raise ValueError("the eval split is empty: there is nothing to prime samples with")
    rng = np.random.default_rng(settings.seed)
    groups = -(-settings.num_samples // settings.per_primer)
    primers = rng.permutation(np.resize(rng.permutation(len(eval_sizes)), groups))
    lengths = np.asarray(eval_sizes)[rng.integers(0, len(eval_sizes), settings.num_samples)]
    if settings.num_steps is not None:
        lengths = np.full(settings.num_samples, settings.num_steps)
    return [(int(primers[i // settings.per_primer]), int(max(lengths[i], 1))) for i in range(settings.num_samples)]


def sample_melodies(generator, eval_events: list[np.ndarray], eval_ids: list[str],
                    settings: SampleSettings) -> list[Sample]:
    """Generate ``settings.num_samples`` melodies from ``generator`` (a loaded bundle)."""
    from note_seq.melodies_lib import Melody

    from melodyflow.models.generation.sampling import GenerationOptions

    plan = plan_samples([e.size for e in eval_events], settings)
    samples: list[Sample] = []
    for start in range(0, len(plan), settings.per_primer):
        group = plan[start: start + settings.per_primer]
        source = group[0][0]
        primer = Melody([int(e) for e in eval_events[source][:PRIMER_STEPS]])
        options = GenerationOptions(num_outputs=len(group), num_steps=len(primer) + max(n for _, n in group),
                                    temperature=settings.temperature, seed=settings.seed)
        results = generator.generate(primer, options, seed_offset=start)
        for (_, steps), result in zip(group, results):
            events = np.asarray(list(result.melody), dtype=np.int64)[: result.primer_steps + steps]
            samples.append(Sample(events=events, primer_steps=result.primer_steps, primer_source=eval_ids[source]))
    return samples
