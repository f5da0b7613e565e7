"""Benchmark: MIDI → NoteSequence, the note-seq reference against melodyflow's ingestion, in one run.

    .venv/bin/python bench/ingest.py [CORPUS] [--workers 1,2]

CORPUS defaults to the demo corpus (built or taken from the cache). For each worker count it times
- the reference: note-seq's ``midi_to_note_sequence`` over every MIDI file, in ``workers`` processes
  (``multiprocessing.Pool``), reading and parsing only;
- melodyflow: ``run_ingest_pipeline`` (Beam FnApiRunner, isolated parser processes, shards, manifest,
  read-back check, marker) into a fresh DATA_ROOT, in its own process;
and prints files/s, notes/s and peak RSS (largest single process) for both, the ratio, and how many
of melodyflow's NoteSequences equal the reference's field for field (ids and collection aside).
Each side runs in a fresh interpreter so imports and start-up are counted the same way for both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

_REFERENCE = r"""
import json, os, resource, sys, time, warnings
from multiprocessing import Pool
warnings.filterwarnings("ignore")
corpus, workers, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def parse(path):
    import note_seq
    from note_seq import midi_io
    try:
        with open(path, "rb") as fh:
            seq = midi_io.midi_to_note_sequence(fh.read())
    except Exception:
        return path, None, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return path, seq.SerializeToString(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

if __name__ == "__main__":
    started = time.perf_counter()
    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(corpus) for f in fs
                   if f.lower().endswith((".mid", ".midi", ".kar")))
    with Pool(workers) as pool:
        results = pool.map(parse, paths, chunksize=16)
    wall = time.perf_counter() - started
    from note_seq import NoteSequence
    notes, peak, sequences = 0, 0, {}
    for path, blob, rss in results:
        peak = max(peak, rss)
        if blob is not None:
            seq = NoteSequence.FromString(blob)
            notes += len(seq.notes)
            sequences[os.path.relpath(path, corpus)] = blob.hex()
    json.dump({"wall": wall, "files": len(paths), "notes": notes, "peak_mb": peak / 1024,
               "sequences": sequences}, open(out, "w"))
"""

_MELODYFLOW = r"""
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[4])
corpus, workers, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
started = time.perf_counter()
from transforms.batches import completed_batches, plan_ingest
from transforms.ingest_files import IngestSettings
from transforms.ingest_pipeline import run_ingest_pipeline
from transforms.runners import RunnerConfig
import tempfile
data = tempfile.mkdtemp()
plan = plan_ingest(corpus, data, IngestSettings(collection="bench"))
report = run_ingest_pipeline(plan, RunnerConfig(workers=workers))
wall = time.perf_counter() - started
from note_seq import NoteSequence
from transforms.batches import read_sequences
notes, sequences = 0, {}
for batch in completed_batches(data):
    for blob in read_sequences(batch):
        seq = NoteSequence.FromString(blob)
        notes += len(seq.notes)
        rel = seq.filename
        seq.id = seq.collection_name = seq.filename = ""
        seq.source_info.Clear()
        sequences[rel] = seq.SerializeToString().hex()
peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
json.dump({"wall": wall, "files": report["counts"]["found"], "notes": notes, "peak_mb": peak / 1024,
           "sequences": sequences}, open(out, "w"))
"""


def _run(script: str, *args: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        proc = subprocess.run([sys.executable, "-c", script, *args[:2], out.name, *args[2:]],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        return json.load(open(out.name))


def _comparable(hex_blob: str) -> bytes:
    from note_seq import NoteSequence

    seq = NoteSequence.FromString(bytes.fromhex(hex_blob))
    seq.id = seq.collection_name = seq.filename = ""
    seq.source_info.Clear()
    return seq.SerializeToString(deterministic=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", nargs="?", default=None, help="corpus directory (default: the demo corpus)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default: 1,2)")
    args = parser.parse_args()
    corpus = args.corpus
    if corpus is None:
        sys.path.insert(0, ROOT)
        from transforms.demo_corpus import build_demo_corpus, default_cache_dir

        corpus = default_cache_dir()
        build_demo_corpus(corpus)
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        ref = _run(_REFERENCE, corpus, str(workers))
        ours = _run(_MELODYFLOW, corpus, str(workers), ROOT)
        common = set(ref["sequences"]) & set(ours["sequences"])
        equal = sum(_comparable(ref["sequences"][k]) == _comparable(ours["sequences"][k]) for k in common)
        rows.append((workers, ref, ours, equal, len(common)))
    print(f"corpus: {corpus}")
    print(f"{'workers':>7} {'path':<22} {'files':>6} {'wall s':>8} {'files/s':>9} {'notes/s':>10} {'peak MB':>8}")
    for workers, ref, ours, equal, common in rows:
        for name, r in (("note-seq reference", ref), ("melodyflow ingest", ours)):
            print(f"{workers:>7} {name:<22} {r['files']:>6} {r['wall']:>8.2f} {r['files'] / r['wall']:>9.1f} "
                  f"{r['notes'] / r['wall']:>10.0f} {r['peak_mb']:>8.0f}")
        print(f"{'':>7} ratio melodyflow/reference (files/s): {ref['wall'] / ours['wall']:.2f}x; "
              f"identical NoteSequences: {equal}/{common}")


if __name__ == "__main__":
    main()
