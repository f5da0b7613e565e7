"""Benchmark: NoteSequences → melody training examples, note-seq/Magenta semantics against melodyflow.

    .venv/bin/python bench/dataset.py [CORPUS] [--workers 1,2] [--config basic_rnn] [--no-job]

CORPUS (default: the demo corpus; ../shared/corpora/nottingham for docs/performance.md) is ingested once
with melodyflow (its NoteSequences equal note-seq's; bench/ingest.py checks that), then, per worker count
and each in a fresh interpreter:
- reference: split on time changes → quantize → extract melodies → squash → encode → SequenceExample,
  with note-seq's own objects as Magenta's melody_rnn pipeline composes them
  (``reference_sequence_examples``), in a ``multiprocessing.Pool``;
- melodyflow stage: ``sequence_examples`` (compiled extraction, vectorized encoders) in the same pool
  (both stages: whole passes over the sequences until at least 2 s of work, so a small corpus is not
  timed in milliseconds);
- melodyflow job: ``run_dataset_pipeline`` (Beam, staging, sharded writes, stats, marker) on the data
  ingested from the corpus and from ``--scale`` copies of it (default: about 120,000 files): marginal rate, and peak RSS at 1x/Kx.
Both stage runs write Magenta's SequenceExample format, so their records are compared byte for byte
(the job writes the default compact format; tests check it encodes the same examples).
"""

from __future__ import annotations

import argparse
import os

import _harness as h

_INGEST = r"""
import json, sys
corpus, data, out = sys.argv[1], sys.argv[2], sys.argv[3]
from melodyflow.transforms.ingest.batches import completed_batches, plan_ingest, read_sequences
from melodyflow.transforms.ingest.files import IngestSettings
from melodyflow.transforms.ingest.job import run_ingest_pipeline
from melodyflow.transforms.beam.runners import RunnerConfig
from melodyflow.transforms.io.tfrecord import encode_records
plan = plan_ingest(corpus, data, IngestSettings(collection="bench"))
run_ingest_pipeline(plan, RunnerConfig(workers=1))
sequences = [s for b in completed_batches(data) for s in read_sequences(b)]
with open(data + ".sequences.tfrecord", "wb") as fh:
    fh.write(encode_records(sequences))
json.dump({"sequences": len(sequences)}, open(out, "w"))
"""

_POOL = r"""
import hashlib, json, sys, time
started = time.perf_counter()
kind, source, config, workers, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]

def warm(_=None):
    global SETTINGS, FN
    import warnings
    warnings.simplefilter("ignore")
    from melodyflow.transforms.melodies.configs import get_config
    from melodyflow.transforms.melodies import dataset
    SETTINGS = dataset.DatasetSettings(config=get_config(config), format="sequence-example")
    if kind == "reference":
        import note_seq  # noqa: F401
        FN = dataset.reference_sequence_examples
    else:
        from melodyflow.transforms.melodies import extraction_compiled
        extraction_compiled.warm_up()
        FN = dataset.sequence_examples
        FN(WARM, SETTINGS)
    return 0

def examples(serialized):
    split, records, stats, _ = FN(serialized, SETTINGS)
    return len(records), hashlib.sha256(b"".join(k.encode() + r for k, r in records)).hexdigest()

if __name__ == "__main__":
    from multiprocessing import Pool
    from melodyflow.transforms.io.tfrecord import iter_records
    sequences = list(iter_records(open(source, "rb").read()))
    WARM = sequences[0]
    with Pool(workers, initializer=warm) as pool:
        pool.map(warm, range(workers * 4), chunksize=1)
        results, work, repeats_s = timed_passes(lambda: pool.map(examples, sequences, chunksize=16))
    wall = time.perf_counter() - started - repeats_s  # one pass: the whole-process rates need that
    json.dump({"sequences": len(sequences), "melodies": sum(n for n, _ in results), "work_s": work,
               "wall_s": wall, "digests": [d for _, d in results], "rss": peak_rss_mb()}, open(out, "w"))
"""

_JOB = r"""
import json, shutil, sys, time
started = time.perf_counter()
data, config, workers, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
from melodyflow.transforms.melodies.job import run_dataset_pipeline
from melodyflow.transforms.melodies.configs import get_config
from melodyflow.transforms.melodies.dataset import DatasetSettings, plan_dataset
from melodyflow.transforms.beam.runners import RunnerConfig
plan = plan_dataset(data, DatasetSettings(config=get_config(config)))
result = run_dataset_pipeline(plan, RunnerConfig(workers=workers))
wall = time.perf_counter() - started
rss = peak_rss_mb()
shutil.rmtree(plan.out_dir)
info = result["info"]
json.dump({"sequences": sum(info["sequences"].values()), "melodies": sum(info["counts"].values()),
           "wall_s": wall, "rss": rss}, open(out, "w"))
"""


def measure(corpus: str, workers: list[int], config: str, job: bool, scale: int) -> dict:
    scratch = h.scratch_dir()
    try:
        doubled = h.scaled_corpus(corpus, 2, os.path.join(scratch, "x2"))
        data1, data2, datak = (os.path.join(scratch, name) for name in ("data1", "data2", "datak"))
        h.run_python(_INGEST, corpus, data1)
        h.run_python(_INGEST, doubled, data2)
        if job:
            h.run_python(_INGEST, h.scaled_corpus(corpus, scale, os.path.join(scratch, f"x{scale}")), datak)
        seqs1, seqs2 = data1 + ".sequences.tfrecord", data2 + ".sequences.tfrecord"
        rows = []
        for w in workers:
            row = {"workers": w,
                   "ref": h.run_python(_POOL, "reference", seqs1, config, str(w)),
                   "ref2": h.run_python(_POOL, "reference", seqs2, config, str(w)),
                   "stage": h.run_python(_POOL, "melodyflow", seqs1, config, str(w))}
            if job:
                row["job"] = h.run_python(_JOB, data1, config, str(w))
                row["jobk"] = h.run_python(_JOB, datak, config, str(w))
                row["scale"] = scale
            same = sum(a == b for a, b in zip(row["ref"]["digests"], row["stage"]["digests"]))
            row["identical"] = (same, len(row["ref"]["digests"]))
            rows.append(row)
        return {"rows": rows, "config": config}
    finally:
        h.remove(scratch)


def report(corpus: str, result: dict) -> str:
    rows = result["rows"]
    ref0 = rows[0]["ref"]
    n, mel = ref0["sequences"], ref0["melodies"]
    out = [f"corpus: {corpus} ({n} NoteSequences, {mel} melodies, config {result['config']})", "",
           *h.stage_report(rows, n, "reference", "seq/s", "melodies")]
    if "job" in rows[0]:
        out += h.marginal_report(rows, n, "reference", "seq/s", "dataset build")
    for r in rows:
        same, total = r["identical"]
        out.append(f"\nworkers={r['workers']}: sequences whose examples are byte-identical, reference vs "
                   f"melodyflow: {same}/{total}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", nargs="?", default=None, help="corpus directory (default: the demo corpus)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default: 1,2)")
    parser.add_argument("--config", default="basic_rnn", help="melody config (default: basic_rnn)")
    parser.add_argument("--no-job", action="store_true", help="stage comparison only (skip the Beam job runs)")
    parser.add_argument("--scale", type=int, default=None, help="copies of the corpus for melodyflow's marginal "
                                                                "rate and memory check (default: enough for "
                                                                "about 120,000 files)")
    args = parser.parse_args()
    corpus = args.corpus or h.default_corpus()
    result = measure(corpus, [int(w) for w in args.workers.split(",")], args.config, job=not args.no_job,
                     scale=args.scale or h.default_scale(corpus))
    print(report(corpus, result))


if __name__ == "__main__":
    main()
