"""Benchmark: what the per-sequence time limit costs the dataset build, measured side by side.

    .venv/bin/python bench/extraction_limits.py [CORPUS] [--workers 1,2] [--scale K] [--repeats R]

CORPUS (default: the demo corpus) is ingested once at 1x and at K distinct copies.  Then, per worker count
and repeat, in fresh interpreters and interleaved, the dataset job (``run_dataset_pipeline``, basic_rnn) runs
with the limit on (the default: each worker extracts in an isolated child, forked from the job's
template, watched through a shared progress slot) and off (``sequence_timeout_s=0``: extraction in the
worker itself, as before the limit existed).  Reported: the marginal rate (sequences per second added
between 1x and Kx), the start-up (what the 1x run costs beyond that), the ratio on/off, and peak memory.
"""

from __future__ import annotations

import argparse
import os

import _harness as h
from dataset import _INGEST

_JOB = r"""
import json, shutil, sys, time
started = time.perf_counter()
data, workers, timeout, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
from melodyflow.transforms.melodies.job import run_dataset_pipeline
from melodyflow.transforms.melodies.configs import get_config
from melodyflow.transforms.melodies.dataset import DatasetSettings, plan_dataset
from melodyflow.transforms.beam.runners import RunnerConfig
plan = plan_dataset(data, DatasetSettings(config=get_config("basic_rnn"), sequence_timeout_s=timeout))
result = run_dataset_pipeline(plan, RunnerConfig(workers=workers))
wall = time.perf_counter() - started
rss = peak_rss_mb()
shutil.rmtree(plan.out_dir)
info = result["info"]
json.dump({"sequences": sum(info["sequences"].values()), "examples": sum(info["counts"].values()),
           "wall_s": wall, "rss": rss}, open(out, "w"))
"""

MODES = {"on": "60", "off": "0"}


def measure(corpus: str, workers: list[int], scale: int, repeats: int) -> dict:
    scratch = h.scratch_dir()
    try:
        data1, datak = os.path.join(scratch, "data1"), os.path.join(scratch, "datak")
        n = h.run_python(_INGEST, corpus, data1)["sequences"]
        h.run_python(_INGEST, h.scaled_corpus(corpus, scale, os.path.join(scratch, f"x{scale}")), datak)
        runs: dict = {}
        for w in workers:
            for _ in range(repeats):
                for size, data in (("1x", data1), ("kx", datak)):
                    for mode, timeout in MODES.items():
                        runs.setdefault((w, mode, size), []).append(h.run_python(_JOB, data, str(w), timeout))
        return {"sequences": n, "scale": scale, "runs": runs, "workers": workers, "repeats": repeats}
    finally:
        h.remove(scratch)


def report(corpus: str, result: dict) -> str:
    n, k = result["sequences"], result["scale"]
    rows = []
    for w in result["workers"]:
        rates = {}
        for mode in MODES:
            pairs = zip(result["runs"][(w, mode, "1x")], result["runs"][(w, mode, "kx")])
            marginals = [h.Marginal(n, one["wall_s"], many["wall_s"], k) for one, many in pairs]
            rates[mode] = marginals
            peak = max(max(r["rss"]["self_mb"], r["rss"]["children_mb"]) for r in result["runs"][(w, mode, "kx")])
            rows.append([str(w), mode, " / ".join(f"{m.rate:.0f}" for m in marginals),
                         " / ".join(f"{m.startup:.1f}" for m in marginals), f"{peak:.0f}"])
        ratio = [on.rate / off.rate for on, off in zip(rates["on"], rates["off"])]
        rows.append([str(w), "on / off", " / ".join(f"**{r:.3f}**" for r in ratio), "", ""])
    header = ["workers", "limit", "marginal seq/s (each repeat)", "start-up s", "peak MB (largest process)"]
    return "\n".join([f"corpus: {corpus} ({n} NoteSequences; 1x and {k}x, interleaved, limit on = 60 s, "
                      f"off = 0)", "", h.table(header, rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", nargs="?", default=None, help="corpus directory (default: the demo corpus)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default: 1,2)")
    parser.add_argument("--scale", type=int, default=10,
                        help="copies of the corpus for the marginal rate (default: 10)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats per worker count (default: 2)")
    args = parser.parse_args()
    corpus = args.corpus or h.default_corpus()
    print(report(corpus, measure(corpus, [int(w) for w in args.workers.split(",")], args.scale, args.repeats)))


if __name__ == "__main__":
    main()
