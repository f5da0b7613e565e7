"""The hashed n-gram copy index against a brute-force longest common run, and on planted copies."""

from __future__ import annotations

import numpy as np

from melodyflow.models.evaluation.copy_index import CopyIndex, tokens_of


def _melody(rng: np.random.Generator, steps: int, low: int = 55, high: int = 75) -> np.ndarray:
    events, pitch = [], 65
    while len(events) < steps:
        pitch = int(np.clip(pitch + rng.integers(-3, 4), low, high))
        events.append(pitch)
        events += [-2] * int(rng.choice([0, 1, 1, 3]))
        if rng.random() < 0.1:
            events += [-1, -2]
    return np.array(events[:steps], dtype=np.int64)


def _brute_force_steps(query: np.ndarray, training: list[np.ndarray], start: int = 0) -> int:
    """Longest run of equal tokens between the query (from ``start``) and any one training melody, in steps."""
    tq, pq, hq = tokens_of(query, start)
    best = 0
    for melody in training:
        tr = tokens_of(melody)[0]
        for i in range(len(tq)):
            for j in range(len(tr)):
                k = 0
                while i + k < len(tq) and j + k < len(tr) and tq[i + k] == tr[j + k]:
                    k += 1
                if k:
                    best = max(best, int(pq[i + k - 1] + hq[i + k - 1] - pq[i]))
    return best


def test_tokens_code_intervals_and_holds():
    tokens, pos, hold = tokens_of([-2, -2, 60, -2, 62, -1, -2, -2, 59])
    assert pos.tolist() == [2, 4, 5, 8] and hold.tolist() == [2, 1, 3, 1]  # the leading rest makes no token
    same_shape = tokens_of([65, -2, 67, -1, -2, -2, 64])[0]  # a fifth higher, no leading rest
    assert tokens.tolist() == same_shape.tolist()


def test_matches_brute_force_on_random_melodies():
    rng = np.random.default_rng(7)
    training = [_melody(rng, int(rng.integers(16, 90))) for _ in range(25)]
    index = CopyIndex(training)
    for trial in range(60):
        query = _melody(rng, int(rng.integers(8, 80)))
        if trial % 3 == 0:  # plant a (possibly transposed) piece of a training melody
            source = training[int(rng.integers(len(training)))]
            a = int(rng.integers(0, len(source) - 4))
            piece = source[a: a + int(rng.integers(4, 40))]
            shift = int(rng.integers(-4, 5))
            query = np.concatenate([query[:10], np.where(piece >= 0, piece + shift, piece), query[10:20]])
        assert index.longest_copy(query).steps == _brute_force_steps(query, training), trial


def test_a_whole_copy_is_found_in_any_key_and_located():
    rng = np.random.default_rng(3)
    training = [_melody(rng, 128) for _ in range(50)]
    index = CopyIndex(training)
    target = training[17]
    first_note = int(np.flatnonzero(target >= 0)[0])
    for shift in (0, 5, -7):
        copy = np.where(target >= 0, target + shift, target)
        span = index.longest_copy(copy)
        assert span.steps == 128 - first_note and span.reference == 17
        assert span.start_step == first_note and span.reference_step == first_note
    unrelated = _melody(np.random.default_rng(99), 128, low=40, high=90)
    assert index.longest_copy(unrelated).steps < 32


def test_only_steps_from_start_step_count():
    rng = np.random.default_rng(5)
    training = [_melody(rng, 96) for _ in range(10)]
    index = CopyIndex(training)
    primer = training[3][:48]  # a primer cut from a training melody, then new material
    query = np.concatenate([primer, _melody(np.random.default_rng(11), 80, low=40, high=90)])
    assert index.longest_copy(query).steps >= 40
    after = index.longest_copy(query, start_step=48)
    assert after.steps < 16 and after.start_step >= 48
    assert after.steps == _brute_force_steps(query, training, start=48)


def test_runs_never_join_two_training_melodies():
    a = np.array([60, -2, 62, -2, 64, -2, 65, -2] * 2)
    b = np.array([67, -2, 69, -2, 71, -2, 72, -2] * 2)
    index = CopyIndex([a, b])
    joined = np.concatenate([a, b])
    assert index.longest_copy(joined).steps == 16  # all of a; b matches from its second note; never both


def test_empty_inputs():
    index = CopyIndex([np.array([60, -2, 62])])
    assert index.longest_copy(np.array([-2, -2])).steps == 0
    assert CopyIndex([]).longest_copy(np.array([60, 62])).steps == 0
    assert len(index) == 1
