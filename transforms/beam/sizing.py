"""How many local workers a job is worth on the direct runner.

Beam's multi-processing mode costs seconds that one in-process worker does not pay: starting and
stopping its SDK worker processes and their gRPC planes. Below a few seconds of single-worker work, two
workers finish later than one; above it, they finish sooner (1.76x for ingestion, 1.88x for datasets on
large inputs). So the default worker count is one for small jobs and the CPU count for large ones, from
an estimate of the single-worker work made before the job starts.

Figures, measured with ``bench/pipeline.py`` and ``bench/startup.py`` (``docs/performance.md``):
the extra start-up of two workers over one is 2.7 s for ingestion and 4.1 s for a dataset build; one
worker converts about 10 MB/s of MIDI through the compiled reader (Nottingham: 4,859 files/s of 2.1 KB)
and 0.46 MB/s through note-seq, and builds melodies from about 28 MB/s of NoteSequences. The estimates
err towards one worker: a job they misjudge as small runs at one worker's speed, never slower.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class LocalScaling:
    """What extra local workers cost and give for one kind of job."""

    extra_start_s: float  # start-up of the multi-process harness, per extra worker, over one in-process worker
    speedup_per_extra_worker: float  # 2 workers run ``1 + this`` times as fast as 1 on large inputs
    margin: float = 1.5  # the saving must exceed the extra start-up this many times over

    def workers_for(self, single_worker_s: float, cpus: int) -> int:
        """``cpus`` when the time saved beats the extra start-up with margin, else 1."""
        if cpus <= 1:
            return 1
        speedup = 1 + (cpus - 1) * self.speedup_per_extra_worker
        saved = single_worker_s * (1 - 1 / speedup)
        return cpus if saved > self.margin * self.extra_start_s * (cpus - 1) else 1


INGEST = LocalScaling(extra_start_s=2.7, speedup_per_extra_worker=0.76)
DATASET = LocalScaling(extra_start_s=4.1, speedup_per_extra_worker=0.88)

COMPILED_MIDI_BYTES_PER_S = 10e6
NOTE_SEQ_BYTES_PER_S = 0.46e6
NOTESEQUENCE_BYTES_PER_S = 28e6


def cpu_count() -> int:
    return max(1, os.cpu_count() or 1)


def ingest_seconds(compiled_bytes: int, isolated_bytes: int) -> float:
    """Single-worker conversion time of a batch: bytes for the in-worker compiled reader, bytes for the
    isolated note-seq parser."""
    return compiled_bytes / COMPILED_MIDI_BYTES_PER_S + isolated_bytes / NOTE_SEQ_BYTES_PER_S


def dataset_seconds(notesequence_bytes: int) -> float:
    return notesequence_bytes / NOTESEQUENCE_BYTES_PER_S


@dataclass(frozen=True)
class Execution:
    """How a job runs: on how many workers, whether in this process without Beam, and why."""

    workers: int
    in_process: bool
    why: str

    def describe(self, runner: str) -> str:
        if self.in_process:
            return f"in this process, without Beam ({self.why})"
        return f"on Beam's {runner} runner with {self.workers} worker(s) ({self.why})"


def plan_execution(requested: int | None, runner: str, single_worker_s: float, scaling: LocalScaling,
                   cpus: int | None = None) -> Execution:
    """As requested, else one worker for a job too small to gain from more processes and every CPU for
    a larger one. A small job on one local worker runs in this process without Beam: importing and
    starting Beam costs about a second, more than such a job's work."""
    cpus = cpus or cpu_count()
    small = scaling.workers_for(single_worker_s, max(2, cpus)) == 1
    if runner != "direct":
        return Execution(requested or cpus, False, "as requested" if requested else "the number of CPUs")
    if requested:
        return Execution(requested, requested == 1 and small, "as requested")
    if small:
        return Execution(1, True, f"about {single_worker_s:.1f} s of work: too little to gain from Beam's "
                                  "worker processes; --workers N overrides")
    return Execution(cpus, cpus == 1, f"about {single_worker_s:.0f} s of single-worker work")
