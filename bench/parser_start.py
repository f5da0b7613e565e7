"""Benchmark: what an isolated parser costs to get, own interpreter (the baseline) against a fork of the
job's parser template, in one run.

    .venv/bin/python bench/parser_start.py [--restarts 5]

Each worker of an ingestion job parses ABC, MusicXML, large MIDI files and whatever the compiled MIDI
reader turns down in an isolated child, restarted after every crash or timeout. For both ways of getting
that child it prints the first start (ready to parse: note-seq's readers imported) and the median
restart after a crash, each timed from the worker's side as the wall time of a call. The template's own
start, paid once per job and overlapped with the workers' start-up, is shown apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import _harness as h

from melodyflow.transforms.ingest.convert import preload_readers  # noqa: E402
from melodyflow.transforms.sandbox.fork_template import ParserTemplate  # noqa: E402
from melodyflow.transforms.sandbox.isolated_worker import IsolatedWorker, Limits, WorkerCrashed  # noqa: E402


def _timed_call(worker: IsolatedWorker) -> float:
    started = time.perf_counter()
    worker.call(os.getpid)
    return time.perf_counter() - started


def _measure(worker: IsolatedWorker, restarts: int) -> tuple[float, float]:
    first = _timed_call(worker)
    times = []
    for _ in range(restarts):
        try:
            worker.call(os._exit, 1)
        except WorkerCrashed:
            pass
        times.append(_timed_call(worker))
    return first, statistics.median(times)


def _template_ready(address: str) -> float:
    """Wall time until the template hands out its first child (it imports note-seq first)."""
    started = time.perf_counter()
    with IsolatedWorker(Limits(), template=address) as probe:
        probe.call(os.getpid)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--restarts", type=int, default=5, help="crashes per way, for the median restart")
    args = parser.parse_args()
    limits = Limits(timeout_s=60, memory_mb=4096)
    with IsolatedWorker(limits, prepare=preload_readers) as own:
        own_first, own_restart = _measure(own, args.restarts)
        assert not own.forked
    with ParserTemplate([preload_readers], start_now=True) as template:
        template_start = _template_ready(template.address)
        with IsolatedWorker(limits, prepare=preload_readers, template=template.address) as forked:
            fork_first, fork_restart = _measure(forked, args.restarts)
            assert forked.forked
    ms = lambda s: f"{s * 1000:.0f}"  # noqa: E731
    print(h.table(["isolated parser", "first start ms", f"restart after a crash ms (median of {args.restarts})"],
                  [["own interpreter (baseline)", ms(own_first), ms(own_restart)],
                   ["forked from the job's template", ms(fork_first), ms(fork_restart)]]))
    print(f"\nfirst start {own_first / fork_first:.0f}x faster, restart {own_restart / fork_restart:.0f}x faster; "
          f"the template itself took {ms(template_start)} ms to hand out its first child (once per job, "
          f"on the driver's machine)")


if __name__ == "__main__":
    main()
