"""Benchmark: judging 1,000 melodies against a 10,000-melody reference set, on one core.

    .venv/bin/python bench/evaluate_speed.py [--judged 1000] [--reference 10000] [--dataset URL]

Reference: ``--reference`` training melodies (the copy index) and as many eval melodies (the feature
reference), either synthetic tunes (stepwise diatonic phrases with repeats, 7-32 bars) or, with
``--dataset DATA_ROOT/melodies/<config>``, a real dataset's melodies drawn with replacement. Judged:
``--judged`` melodies of 8-16 bars, a tenth of them copied from the training melodies.

What is timed is ``melodyflow evaluate``'s judging, from decoded events to the comparison: features of
both sets, the copy index, the copy check of both sets, and the set comparison. The baseline, in the
same run, is the copy check done by pairwise comparison: the longest common run of the same tokens by
dynamic programming (compiled with numba), for a sample of judged melodies against every training
melody, extrapolated to all of them; the two must agree on the sample. The process is pinned to one
core when the OS allows it.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from numba import njit


def _tune(rng: np.random.Generator, bars: int) -> np.ndarray:
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    root = int(rng.integers(55, 67))
    phrase: list[int] = []
    degree = int(rng.integers(0, 7))
    while len(phrase) < 4 * 16:
        degree = int(np.clip(degree + rng.integers(-2, 3), -3, 10))
        phrase += [root + 12 * (degree // 7) + int(scale[degree % 7])] + [-2] * int(rng.choice([0, 1, 1, 3, 5]))
    events = []
    while len(events) < bars * 16:
        events += phrase[:64] if rng.random() < 0.5 or not events else _tune_phrase(rng, root)
    return np.array(events[: bars * 16], dtype=np.int64)


def _tune_phrase(rng: np.random.Generator, root: int) -> list[int]:
    out: list[int] = []
    while len(out) < 64:
        out += [root + int(rng.integers(-5, 13))] + [-2] * int(rng.choice([1, 1, 3]))
    return out[:64]


def _sets(args, rng):
    if args.dataset:
        from melodyflow.models.evaluation.corpus import load_corpus

        corpus = load_corpus(args.dataset)
        train = [corpus.train.events[i] for i in rng.integers(0, len(corpus.train), args.reference)]
        evaluation = [corpus.eval.events[i] for i in rng.integers(0, len(corpus.eval), args.reference)]
        fresh = [corpus.eval.events[i][: 16 * int(rng.integers(8, 17))]
                 for i in rng.integers(0, len(corpus.eval), args.judged)]
    else:
        train = [_tune(rng, int(rng.integers(7, 33))) for _ in range(args.reference)]
        evaluation = [_tune(rng, int(rng.integers(7, 33))) for _ in range(args.reference)]
        fresh = [_tune(rng, int(rng.integers(8, 17))) for _ in range(args.judged)]
    copies = [train[i][:256] for i in rng.integers(0, len(train), args.judged // 10)]
    return train, evaluation, copies + fresh[len(copies):]


@njit(cache=True)
def _pairwise_lcs_steps(q, qpos, qhold, r):
    """Longest common run of tokens (in steps of the query) by dynamic programming over one pair."""
    best = 0
    prev = np.zeros(r.size + 1, np.int64)
    cur = np.zeros(r.size + 1, np.int64)
    for i in range(q.size):
        for j in range(r.size):
            if q[i] == r[j]:
                cur[j + 1] = prev[j] + 1
                k = cur[j + 1]
                steps = qpos[i] + qhold[i] - qpos[i - k + 1]
                if steps > best:
                    best = steps
            else:
                cur[j + 1] = 0
        prev, cur = cur, prev
    return best


def _timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judged", type=int, default=1000)
    parser.add_argument("--reference", type=int, default=10000)
    parser.add_argument("--dataset", default=None, help="DATA_ROOT/melodies/<config> of a built dataset")
    parser.add_argument("--baseline-sample", type=int, default=40, help="judged melodies the baseline checks")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    from melodyflow.models.evaluation.copy_index import CopyIndex, tokens_of
    from melodyflow.models.evaluation.features import ALL_FEATURES, COPIED_SPAN, feature_table
    from melodyflow.models.evaluation.set_comparison import compare_sets

    rng = np.random.default_rng(0)
    train, evaluation, judged = _sets(args, rng)
    CopyIndex(train[:20]).longest_copy(judged[0])  # compile (numba caches on disk) before timing
    _pairwise_lcs_steps(*tokens_of(judged[0]), tokens_of(train[0])[0])
    rows = []
    ref_table, t = _timed(lambda: feature_table(evaluation))
    rows.append((f"features of {len(evaluation)} reference melodies", t))
    judged_table, t = _timed(lambda: feature_table(judged))
    rows.append((f"features of {len(judged)} judged melodies", t))
    index, t = _timed(lambda: CopyIndex(train))
    rows.append((f"copy index over {len(train)} training melodies", t))
    spans, t = _timed(lambda: [index.longest_copy(m).steps for m in judged])
    rows.append((f"copy check of {len(judged)} judged melodies", t))
    ref_spans, t = _timed(lambda: [index.longest_copy(m).steps for m in evaluation])
    rows.append((f"copy check of {len(evaluation)} reference melodies", t))
    judged_table[COPIED_SPAN.name] = np.array(spans, float)
    ref_table[COPIED_SPAN.name] = np.array(ref_spans, float)
    _, t = _timed(lambda: compare_sets(judged_table, ref_table, ALL_FEATURES))
    rows.append((f"set comparison, {len(ALL_FEATURES)} features", t))
    total = sum(t for _, t in rows)

    picked = np.linspace(0, len(judged) - 1, min(args.baseline_sample, len(judged))).astype(int)
    sample = [judged[i] for i in picked]
    train_tokens = [tokens_of(m)[0] for m in train]

    def pairwise():
        out = []
        for m in sample:
            q, pos, hold = tokens_of(m)
            out.append(max(_pairwise_lcs_steps(q, pos, hold, r) for r in train_tokens))
        return out

    baseline, t_base = _timed(pairwise)
    agree = baseline == [spans[i] for i in picked]
    per_melody = t_base / len(sample)
    copy_time = rows[3][1]
    print(f"{len(judged)} judged vs {len(train)} training + {len(evaluation)} reference melodies "
          f"({'dataset ' + args.dataset if args.dataset else 'synthetic tunes'}); one core "
          f"(affinity {sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else 'n/a'})")
    print("stage | seconds")
    print("--- | ---")
    for name, t in rows:
        print(f"{name} | {t:.2f}")
    print(f"**total (judging {len(judged)} melodies)** | **{total:.2f}**")
    print()
    print("copy check of the judged melodies | seconds | per melody (ms) | agrees with the index")
    print("--- | --- | --- | ---")
    print(f"hashed n-gram index (this code) | {copy_time:.2f} | {1000 * copy_time / len(judged):.2f} | -")
    print(f"pairwise DP over {len(train)} melodies, {len(sample)} measured, extrapolated to {len(judged)} | "
          f"{per_melody * len(judged):.1f} | {1000 * per_melody:.1f} | {'yes' if agree else 'NO'}")
    print(f"speed-up of the copy check: {per_melody * len(judged) / max(copy_time, 1e-9):.0f}x")


if __name__ == "__main__":
    main()
