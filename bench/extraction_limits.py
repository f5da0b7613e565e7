"""Benchmark: what the per-sequence time limit costs the dataset build, measured side by side.

    .venv/bin/python bench/extraction_limits.py [CORPUS] [--workers 1,2] [--scale K] [--repeats R] [--no-job]

CORPUS (default: the demo corpus) is ingested once at 1x and at K distinct copies.  Then, per worker count
and repeat, in fresh interpreters and interleaved, the dataset job (``run_dataset_pipeline``, basic_rnn) runs
with the limit on (the default: each worker extracts in an isolated child, forked from the job's
template, watched through a shared progress slot) and off (``sequence_timeout_s=0``: extraction in the
worker itself, as before the limit existed).  Reported per mode: the marginal rate (sequences per second
added between 1x and Kx) by wall time and by CPU time (user + system of the job and every process it
started and waited for: Beam's workers, the template and, reaped by it, the extraction children), the
start-up (what the 1x run costs beyond its marginal work), the ratio on/off, and peak memory.  On a
shared machine, wall times move with the load of others; CPU time is what to compare then.
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
import resource
cpu = sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                             resource.getrusage(resource.RUSAGE_CHILDREN)))
rss = peak_rss_mb()
shutil.rmtree(plan.out_dir)
info = result["info"]
json.dump({"sequences": sum(info["sequences"].values()), "examples": sum(info["counts"].values()),
           "wall_s": wall, "cpu_s": cpu, "rss": rss}, open(out, "w"))
"""

# The unit work alone, both ways on the same units, alternating unit by unit: CPU time of this process
# plus (limit on) that of the extraction child, read from /proc/PID/schedstat (nanoseconds on the CPU).
_STAGE = r"""
import json, os, sys, time
data, repeats, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
from melodyflow.transforms.melodies import units
from melodyflow.transforms.melodies.configs import get_config
from melodyflow.transforms.melodies.dataset import SPLITS, DatasetSettings, plan_dataset
from melodyflow.transforms.melodies.guard import UnitGuard
from melodyflow.transforms.melodies.job import plan_units
from melodyflow.transforms.sandbox.fork_template import ParserTemplate
plan = plan_dataset(data, DatasetSettings(config=get_config("basic_rnn")))
job = units.unit_job(plan.settings, os.path.join(data, "stage-out"), {s: plan.num_shards(s) for s in SPLITS})
work = plan_units(plan)

def child_cpu(pid):
    with open(f"/proc/{pid}/schedstat") as fh:
        return int(fh.read().split()[0]) / 1e9

units.prepare_child()
cpu = {"off": 0.0, "on": 0.0}
wall = {"off": 0.0, "on": 0.0}
with ParserTemplate([units.prepare_child], start_now=True) as template:
    guard = UnitGuard(job, template.address)
    guard.run(work[0])  # start the child
    pid = guard._worker._proc.pid
    for _ in range(repeats):
        for unit in work:
            c, w = time.process_time(), time.perf_counter()
            units.extract_unit(unit, job)
            cpu["off"] += time.process_time() - c
            wall["off"] += time.perf_counter() - w
            c, k, w = time.process_time(), child_cpu(pid), time.perf_counter()
            guard.run(unit)
            cpu["on"] += time.process_time() - c + child_cpu(pid) - k
            wall["on"] += time.perf_counter() - w
    guard.close()
n = plan.num_sequences * repeats
json.dump({"sequences": n, "cpu": cpu, "wall": wall}, open(out, "w"))
"""

MODES = {"on": "60", "off": "0"}


def measure(corpus: str, workers: list[int], scale: int, repeats: int, job: bool = True) -> dict:
    scratch = h.scratch_dir()
    try:
        data1, datak = os.path.join(scratch, "data1"), os.path.join(scratch, "datak")
        n = h.run_python(_INGEST, corpus, data1)["sequences"]
        stage = h.run_python(_STAGE, data1, str(3 * repeats))
        if not job:
            return {"sequences": n, "scale": scale, "runs": {}, "workers": [], "repeats": repeats, "stage": stage}
        h.run_python(_INGEST, h.scaled_corpus(corpus, scale, os.path.join(scratch, f"x{scale}")), datak)
        runs: dict = {}
        for w in workers:
            for _ in range(repeats):
                for size, data in (("1x", data1), ("kx", datak)):
                    for mode, timeout in MODES.items():
                        runs.setdefault((w, mode, size), []).append(h.run_python(_JOB, data, str(w), timeout))
        return {"sequences": n, "scale": scale, "runs": runs, "workers": workers, "repeats": repeats,
                "stage": stage}
    finally:
        h.remove(scratch)


def report(corpus: str, result: dict) -> str:
    n, k = result["sequences"], result["scale"]
    rows = []
    for w in result["workers"]:
        rates: dict = {}
        for mode in MODES:
            runs = list(zip(result["runs"][(w, mode, "1x")], result["runs"][(w, mode, "kx")]))
            wall = [h.Marginal(n, one["wall_s"], many["wall_s"], k) for one, many in runs]
            cpu = [h.Marginal(n, one["cpu_s"], many["cpu_s"], k) for one, many in runs]
            rates[mode] = (wall, cpu)
            peak = max(max(r["rss"]["self_mb"], r["rss"]["children_mb"]) for r in result["runs"][(w, mode, "kx")])
            rows.append([str(w), mode, " / ".join(f"{m.rate:.0f}" for m in wall),
                         " / ".join(f"{m.startup:.1f}" for m in wall), " / ".join(f"{m.rate:.0f}" for m in cpu),
                         " / ".join(f"{m.startup:.1f}" for m in cpu), f"{peak:.0f}"])
        ratios = [[on.rate / off.rate for on, off in zip(rates["on"][i], rates["off"][i])] for i in (0, 1)]
        rows.append([str(w), "on / off", " / ".join(f"**{r:.3f}**" for r in ratios[0]), "",
                     " / ".join(f"**{r:.3f}**" for r in ratios[1]), "", ""])
    header = ["workers", "limit", "marginal seq/s, wall (each repeat)", "start-up wall s",
              "marginal seq per CPU-s", "start-up CPU-s", "peak MB (largest process)"]
    stage = result["stage"]
    per = {mode: {kind: 1e6 * stage[kind][mode] / stage["sequences"] for kind in ("cpu", "wall")} for mode in MODES}
    stage_rows = [[mode, f"{per[mode]['cpu']:.1f}", f"{per[mode]['wall']:.1f}"] for mode in ("off", "on")]
    stage_rows.append(["on / off", f"**{per['on']['cpu'] / per['off']['cpu']:.3f}**",
                       f"{per['on']['wall'] / per['off']['wall']:.3f}"])
    return "\n".join([f"corpus: {corpus} ({n} NoteSequences)", "",
                      f"Unit work alone, the same units alternating, {stage['sequences']} sequences each way:", "",
                      h.table(["limit", "CPU µs per sequence (both processes)", "wall µs per sequence"], stage_rows),
                      *(["", f"Dataset job, 1x and {k}x, interleaved, limit on = 60 s, off = 0:", "",
                         h.table(header, rows)] if rows else [])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", nargs="?", default=None, help="corpus directory (default: the demo corpus)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default: 1,2)")
    parser.add_argument("--scale", type=int, default=10,
                        help="copies of the corpus for the marginal rate (default: 10)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats per worker count (default: 2)")
    parser.add_argument("--no-job", action="store_true", help="the unit-work comparison only (no Beam job runs)")
    args = parser.parse_args()
    corpus = args.corpus or h.default_corpus()
    print(report(corpus, measure(corpus, [int(w) for w in args.workers.split(",")], args.scale, args.repeats,
                                 job=not args.no_job)))


if __name__ == "__main__":
    main()
