"""A score for every generated melody, so ``generate`` can rank candidates and keep the best.

    score = 1.0 · log_likelihood + 1.0 · closeness − 2.0 · copy − 1.0 · repetition

- ``log_likelihood``: mean log-probability per generated step under the model (nats, ≤ 0; the
  primer's steps are given, not generated), at temperature 1 whatever the sampling temperature.
- ``closeness`` ∈ [0, 1]: how typical the melody's features are of the training melodies. For each
  scalar feature, ``1 − |2·F(x) − 1|`` where F is the training melodies' (mid-)distribution function:
  1 at their median, 0 outside everything they span; for the note-length histogram, ``1 − F(d)`` of
  its L1 distance ``d`` to their mean histogram. The mean over the features the melody defines.
- ``copy`` ∈ [0, 1]: ``(s − 16) / 16`` clipped, ``s`` the longest span (steps) of the generated part
  also found in a training melody: free up to one bar, full penalty from two bars.
- ``repetition`` ∈ [0, 1]: ``stall + loop`` clipped, the generated part's share of steps more than a
  bar after the last note start, and its share of bars that are the third identical bar in a row.

A candidate that starts no note after the primer (``silent``) or copies two bars or more of a training
melody (``copied``) has a *problem*; ``--keep-best`` never keeps one. The training corpus' profile is
computed once per process from the bundle's dataset; without it closeness and copy are 0 (and said so).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from melodyflow.models.evaluation.copy_index import CopyIndex, CopySpan
from melodyflow.models.evaluation.features import (FEATURES, feature_table, loop_share, melody_features,
                                                    stall_share)

COPY_FREE_STEPS = 16
COPY_STEPS = 32
QUANTILES = np.linspace(0.0, 1.0, 201)
PROFILE_SAMPLE = 20_000  # training melodies whose features make the profile (drawn with seed 0)


@dataclass(frozen=True)
class ScoreWeights:
    log_likelihood: float = 1.0
    closeness: float = 1.0
    copy: float = -2.0
    repetition: float = -1.0

    def formula(self) -> str:
        return " ".join(f"{'+' if w >= 0 else '-'} {abs(w):g}·{name}" for name, w in asdict(self).items()).lstrip("+ ")


@dataclass(frozen=True)
class FeatureProfile:
    """Quantiles of each scalar feature over the training melodies, and their note-length histograms'
    mean and the quantiles of each melody's L1 distance to it."""

    quantiles: dict[str, np.ndarray]
    mean_histogram: np.ndarray
    histogram_distance_quantiles: np.ndarray

    @classmethod
    def of(cls, melodies: Sequence[np.ndarray]) -> FeatureProfile:
        if len(melodies) > PROFILE_SAMPLE:
            pick = np.sort(np.random.default_rng(0).choice(len(melodies), PROFILE_SAMPLE, replace=False))
            melodies = [melodies[i] for i in pick]
        table = feature_table(melodies)
        quantiles = {}
        for f in FEATURES:
            if not f.vector:
                values = table[f.name][np.isfinite(table[f.name])]
                if values.size:
                    quantiles[f.name] = np.quantile(values, QUANTILES)
        hist = table["note_length_histogram"]
        hist = hist[np.isfinite(hist).all(axis=1)]
        mean = hist.mean(axis=0) if len(hist) else np.zeros(hist.shape[1])
        distances = np.abs(hist - mean).sum(axis=1) if len(hist) else np.zeros(1)
        return cls(quantiles, mean, np.quantile(distances, QUANTILES))


def _mid_cdf(sorted_quantiles: np.ndarray, x: float) -> float:
    """The share of the distribution below ``x``, counting ties half (robust to repeated quantiles)."""
    left = np.searchsorted(sorted_quantiles, x, side="left")
    right = np.searchsorted(sorted_quantiles, x, side="right")
    return float((left + right) / 2 / sorted_quantiles.size)


def closeness(features: dict, profile: FeatureProfile) -> float:
    scores = []
    for name, q in profile.quantiles.items():
        x = features[name]
        if np.isfinite(x):
            scores.append(1.0 - abs(2.0 * _mid_cdf(q, x) - 1.0))
    hist = features["note_length_histogram"]
    if np.isfinite(hist).all():
        d = float(np.abs(hist - profile.mean_histogram).sum())
        scores.append(1.0 - _mid_cdf(profile.histogram_distance_quantiles, d))
    return float(np.mean(scores)) if scores else 0.0


def copy_penalty(steps: int) -> float:
    return float(np.clip((steps - COPY_FREE_STEPS) / (COPY_STEPS - COPY_FREE_STEPS), 0.0, 1.0))


def repetition_penalty(events: np.ndarray, start: int) -> float:
    return float(min(1.0, stall_share(events, start) + loop_share(events, start)))


@dataclass
class RankingReference:
    """What ranking compares with: the training corpus' feature profile and copy index."""

    profile: FeatureProfile
    copy_index: CopyIndex
    ids: list[str]
    dataset_url: str

    @classmethod
    def of_corpus(cls, corpus) -> RankingReference:
        return cls(FeatureProfile.of(corpus.train.events), CopyIndex(corpus.train.events), corpus.train.ids,
                   corpus.info["url"])


@dataclass
class CandidateScore:
    score: float
    components: dict[str, float]
    problems: list[str] = field(default_factory=list)


def score_candidate(events: np.ndarray, primer_steps: int, log_likelihood: float,
                    reference: RankingReference | None, weights: ScoreWeights = ScoreWeights()) -> CandidateScore:
    """Score one generated melody (primer included in ``events``) by the formula above."""
    problems = []
    if not (np.asarray(events[primer_steps:]) >= 0).any():
        problems.append("silent: no note starts after the primer")
    close, copied = 0.0, 0.0
    if reference is not None:
        close = closeness(melody_features(events), reference.profile)
        span: CopySpan = reference.copy_index.longest_copy(events, primer_steps)
        copied = copy_penalty(span.steps)
        if span.steps >= COPY_STEPS:
            problems.append(f"copied: {span.steps} steps of training melody {reference.ids[span.reference]}")
    components = {
        "log_likelihood": round(float(log_likelihood) if np.isfinite(log_likelihood) else 0.0, 6),
        "closeness": round(close, 6),
        "copy": round(copied, 6),
        "repetition": round(repetition_penalty(events, primer_steps), 6),
    }
    score = sum(getattr(weights, name) * value for name, value in components.items())
    return CandidateScore(score=round(score, 6), components=components, problems=problems)


def ranking_order(scores: Sequence[CandidateScore]) -> list[int]:
    """Candidate indices best first: higher score first, ties to the earlier candidate."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i].score, i))


_REFERENCES: dict[tuple[str, str], tuple[RankingReference | None, str | None]] = {}
_LOCK = threading.Lock()


def reference_for_bundle(meta: dict) -> tuple[RankingReference | None, str | None]:
    """The ranking reference of the bundle's training dataset, built once per process; or ``(None,
    why)`` when that dataset is gone or has changed since training."""
    from melodyflow.models.evaluation.corpus import load_corpus
    from melodyflow.transforms.melodies.dataset import IncompleteDatasetError

    dataset = meta.get("dataset") or {}
    url, fingerprint = dataset.get("url"), dataset.get("fingerprint")
    if not url or not fingerprint:
        return None, "the bundle does not record its training dataset"
    with _LOCK:  # an answer, found or not, is kept: every primer task of the run asks
        key = (url, fingerprint)
        if key not in _REFERENCES:
            try:
                corpus = load_corpus(url)
            except (IncompleteDatasetError, FileNotFoundError) as exc:
                _REFERENCES[key] = (None, f"the training dataset cannot be read: {exc}")
            else:
                _REFERENCES[key] = ((RankingReference.of_corpus(corpus), None) if corpus.fingerprint == fingerprint
                                    else (None, f"the dataset at {url} was rebuilt since training"))
        return _REFERENCES[key]


def score_generated(generator, results: Sequence, reference: RankingReference | None,
                    weights: ScoreWeights = ScoreWeights()) -> list[CandidateScore]:
    """Scores of one primer's candidates (``MelodyGenerator.generate`` results), model pass batched."""
    from melodyflow.models.evaluation.likelihood import mean_log_likelihoods

    melodies = [np.asarray(list(r.melody), dtype=np.int64) for r in results]
    starts = [r.primer_steps for r in results]
    in_model_space = [np.asarray(r.model_events(), dtype=np.int64) for r in results]
    lls = mean_log_likelihoods(generator.model, generator.config, in_model_space, starts)
    return [score_candidate(m, s, ll, reference, weights) for m, s, ll in zip(melodies, starts, lls)]
