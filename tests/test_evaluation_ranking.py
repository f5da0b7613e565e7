"""The ranking score's components and formula on hand-made candidates."""

from __future__ import annotations

import numpy as np
import pytest

from melodyflow.models.evaluation.copy_index import CopyIndex
from melodyflow.models.evaluation.features import melody_features
from melodyflow.models.evaluation.ranking import (CandidateScore, FeatureProfile, RankingReference, ScoreWeights,
                                                  closeness, copy_penalty, ranking_order, repetition_penalty,
                                                  score_candidate)


def _tune(rng: np.random.Generator, bars: int = 8) -> np.ndarray:
    """Stepwise diatonic melodies in eighths and quarters: the 'training corpus' of these tests."""
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    events, degree = [], 3
    while len(events) < bars * 16:
        degree = int(np.clip(degree + rng.integers(-2, 3), 0, 7))
        events += [scale[degree]] + [-2] * int(rng.choice([1, 3]))
    return np.array(events[: bars * 16])


RNG = np.random.default_rng(0)
TRAINING = [_tune(RNG) for _ in range(300)]
REFERENCE = RankingReference(FeatureProfile.of(TRAINING), CopyIndex(TRAINING),
                             [f"train#{i}" for i in range(len(TRAINING))], "memory://dataset")


def test_closeness_prefers_a_typical_melody_to_a_chromatic_scramble():
    typical = melody_features(_tune(np.random.default_rng(1)))
    scramble = melody_features(np.array([60 + (7 * i) % 24 for i in range(128)]))
    assert closeness(typical, REFERENCE.profile) > 0.6 > closeness(scramble, REFERENCE.profile)
    assert 0.0 <= closeness(scramble, REFERENCE.profile) <= 1.0


def test_copy_penalty_is_free_to_one_bar_and_full_from_two():
    assert [copy_penalty(s) for s in (0, 16, 24, 32, 400)] == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_repetition_penalty_catches_held_notes_and_loops():
    held = np.array([60, -2, 62, -2] * 4 + [64] + [-2] * 63)
    assert repetition_penalty(held, 16) == pytest.approx(48 / 64)
    loop = np.array([60, -2, 62, -2] * 4 * 5)
    assert repetition_penalty(loop, 16) == pytest.approx(1.0)  # bars 3 and 4 of 4: the loop share is 2/2
    assert repetition_penalty(_tune(np.random.default_rng(2)), 16) < 0.2


def test_score_is_the_weighted_sum_of_rounded_components():
    melody = _tune(np.random.default_rng(3))
    result = score_candidate(melody, 16, -1.25, REFERENCE)
    c = result.components
    assert set(c) == {"log_likelihood", "closeness", "copy", "repetition"}
    w = ScoreWeights()
    expected = (w.log_likelihood * c["log_likelihood"] + w.closeness * c["closeness"] + w.copy * c["copy"]
                + w.repetition * c["repetition"])
    assert result.score == pytest.approx(expected, abs=1e-6) and c["log_likelihood"] == -1.25
    assert w.formula() == "1·log_likelihood + 1·closeness - 2·copy - 1·repetition"


def test_problems_name_silent_and_copied_candidates():
    silent = np.array([60, -2, 62, -2] * 4 + [-1] + [-2] * 47)
    assert any(p.startswith("silent") for p in score_candidate(silent, 16, -0.1, REFERENCE).problems)
    copied = score_candidate(np.concatenate([[65, -2] * 8, TRAINING[42]]), 16, -0.5, REFERENCE)
    assert copied.components["copy"] == 1.0
    assert any(p.startswith("copied") and "train#42" in p for p in copied.problems)
    fresh = score_candidate(_tune(np.random.default_rng(4)), 16, -0.5, REFERENCE)
    assert not fresh.problems


def test_without_a_reference_only_likelihood_and_repetition_count():
    result = score_candidate(_tune(np.random.default_rng(5)), 16, -2.0, None)
    assert result.components["closeness"] == 0.0 and result.components["copy"] == 0.0
    assert result.score == pytest.approx(-2.0 - result.components["repetition"])


def test_ranking_order_is_best_first_and_stable_on_ties():
    scores = [CandidateScore(s, {}) for s in (0.5, 1.0, 0.5, -3.0)]
    assert ranking_order(scores) == [1, 0, 2, 3]


def test_a_bundle_without_its_dataset_is_ranked_without_a_reference(tmp_path):
    from melodyflow.models.evaluation.ranking import reference_for_bundle

    reference, why = reference_for_bundle({"dataset": {"url": str(tmp_path / "gone"), "fingerprint": "f"}})
    assert reference is None and "cannot be read" in why
    assert reference_for_bundle({})[1] == "the bundle does not record its training dataset"
