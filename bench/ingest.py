"""Benchmark: score files → NoteSequences, note-seq (the reference) against melodyflow, in one run.

    .venv/bin/python bench/ingest.py [CORPUS] [--workers 1,2] [--no-job]

CORPUS defaults to the demo corpus; ../shared/corpora/nottingham gives the figures in
docs/performance.md. For each worker count it runs, each in a fresh interpreter:
- reference: note-seq's readers (``midi_to_note_sequence`` for MIDI) over every score file in a
  ``multiprocessing.Pool`` of that many processes — on the corpus, and on the corpus plus a distinct copy;
- melodyflow stage: melodyflow's per-file work (read, hash, compiled MIDI reader with note-seq fallback)
  in the same kind of pool;
- melodyflow job: the real ingestion job (``run_ingest_pipeline``: Beam, isolated parser for what the
  compiled reader leaves, shards, manifest, marker) on the corpus and on ``--scale`` copies of it (default: about 120,000 files).
It prints files/s and notes/s per stage (work only, per core; whole passes over the corpus until at least
2 s of work, so a small corpus is not timed in milliseconds) and per whole process (marginal rates,
start-up shown apart), peak RSS at 1x and Kx, the ratios, and how many NoteSequences are
byte-identical between the reference and melodyflow's job output.
"""

from __future__ import annotations

import argparse
import os

import _harness as h

# Per-file work of both pool runs; ``KIND`` picks the reference (note-seq) or melodyflow.
_POOL = r"""
import hashlib, json, os, sys, time
started = time.perf_counter()
kind, corpus, workers, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
EXT = (".mid", ".midi", ".kar", ".abc", ".xml", ".mxl", ".musicxml")

def warm(_=None):
    import warnings
    warnings.simplefilter("ignore")
    if kind == "reference":
        from note_seq import abc_parser, midi_io, musicxml_reader  # noqa: F401
    else:
        from melodyflow.transforms.ingest.convert import preload_midi_reader, preload_readers
        preload_readers()  # note-seq for ABC/MusicXML and the MIDI fallback
        preload_midi_reader()
    return os.getpid()

def convert(rel):
    from melodyflow.transforms.ingest.convert import content_hash, format_for_path, sequence_id, convert_file, SourceFormat
    with open(os.path.join(corpus, rel), "rb") as fh:
        data = fh.read()
    digest = content_hash(data)
    fmt = format_for_path(rel)
    try:
        if kind == "reference" and fmt is SourceFormat.MIDI:
            from note_seq import midi_io
            seq = midi_io.midi_to_note_sequence(data)
            seq.id, seq.filename, seq.collection_name = sequence_id(fmt, "bench", digest), rel, "bench"
            blobs = [seq.SerializeToString(deterministic=True)]
        else:  # melodyflow; and the reference for ABC/MusicXML, which melodyflow leaves to note-seq too
            blobs = list(convert_file(data, fmt, relative_path=rel, collection="bench", digest=digest).sequences)
    except Exception:
        return rel, None
    return rel, blobs

if __name__ == "__main__":
    from multiprocessing import Pool
    paths = sorted(os.path.relpath(os.path.join(d, f), corpus) for d, _, fs in os.walk(corpus) for f in fs
                   if f.lower().endswith(EXT))
    with Pool(workers, initializer=warm) as pool:
        pool.map(warm, range(workers * 4), chunksize=1)
        results, work, repeats_s = timed_passes(lambda: pool.map(convert, paths, chunksize=8))
    wall = time.perf_counter() - started - repeats_s  # one pass: the whole-process rates need that
    from note_seq import NoteSequence
    notes, digests = 0, {}
    for rel, blobs in results:
        for blob in blobs or ():
            notes += len(NoteSequence.FromString(blob).notes)
            digests.setdefault(rel, []).append(hashlib.sha256(blob).hexdigest())
    json.dump({"files": len(paths), "work_s": work, "wall_s": wall, "notes": notes, "digests": digests,
               "rss": peak_rss_mb()}, open(out, "w"))
"""

_JOB = r"""
import hashlib, json, os, sys, tempfile, time
started = time.perf_counter()
corpus, workers, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
from melodyflow.transforms.ingest.batches import completed_batches, plan_ingest, read_sequences
from melodyflow.transforms.ingest.files import IngestSettings
from melodyflow.transforms.ingest.job import run_ingest_pipeline
from melodyflow.transforms.beam.runners import RunnerConfig
data = tempfile.mkdtemp(prefix="melodyflow-bench-data-")
plan = plan_ingest(corpus, data, IngestSettings(collection="bench"))
report = run_ingest_pipeline(plan, RunnerConfig(workers=workers))
wall = time.perf_counter() - started
rss = peak_rss_mb()
from note_seq import NoteSequence
notes, digests = 0, {}
for batch in completed_batches(data):
    for blob in read_sequences(batch):
        seq = NoteSequence.FromString(blob)
        notes += len(seq.notes)
        digests.setdefault(seq.filename, []).append(hashlib.sha256(blob).hexdigest())
import shutil
shutil.rmtree(data)
json.dump({"files": report["counts"]["found"], "wall_s": wall, "notes": notes, "digests": digests,
           "counts": report["counts"], "rss": rss}, open(out, "w"))
"""


def _identical(ref: dict, ours: dict) -> tuple[int, int]:
    """Files whose sequences are byte-identical, of the files both sides converted."""
    common = set(ref["digests"]) & set(ours["digests"])
    return sum(sorted(ref["digests"][k]) == sorted(ours["digests"][k]) for k in common), len(common)


def measure(corpus: str, workers: list[int], job: bool, scale: int) -> list[dict]:
    scratch = h.scratch_dir()
    try:
        doubled = h.scaled_corpus(corpus, 2, os.path.join(scratch, "x2"))
        scaled = h.scaled_corpus(corpus, scale, os.path.join(scratch, f"x{scale}")) if job else None
        rows = []
        for w in workers:
            row = {"workers": w}
            row["ref"] = h.run_python(_POOL, "reference", corpus, str(w))
            row["ref2"] = h.run_python(_POOL, "reference", doubled, str(w))
            row["stage"] = h.run_python(_POOL, "melodyflow", corpus, str(w))
            if job:
                row["job"] = h.run_python(_JOB, corpus, str(w))
                row["jobk"] = h.run_python(_JOB, scaled, str(w))
                row["scale"] = scale
                row["identical"] = _identical(row["ref"], row["job"])
            else:
                row["identical"] = _identical(row["ref"], row["stage"])
            rows.append(row)
        return rows
    finally:
        h.remove(scratch)


def report(corpus: str, rows: list[dict]) -> str:
    files = rows[0]["ref"]["files"]
    notes = rows[0]["ref"]["notes"]
    out = [f"corpus: {corpus} ({files} score files, {notes} notes by note-seq)", "",
           *h.stage_report(rows, files, "note-seq", "files/s", "notes")]
    if "job" in rows[0]:
        out += h.marginal_report(rows, files, "note-seq", "files/s", "ingestion")
    for r in rows:
        same, common = r["identical"]
        out.append(f"\nworkers={r['workers']}: byte-identical NoteSequences, reference vs melodyflow: "
                   f"{same}/{common} files")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", nargs="?", default=None, help="corpus directory (default: the demo corpus)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default: 1,2)")
    parser.add_argument("--no-job", action="store_true", help="stage comparison only (skip the Beam job runs)")
    parser.add_argument("--scale", type=int, default=None, help="copies of the corpus for melodyflow's marginal "
                                                                "rate and memory check (default: enough for "
                                                                "about 120,000 files)")
    args = parser.parse_args()
    corpus = args.corpus or h.default_corpus()
    rows = measure(corpus, [int(w) for w in args.workers.split(",")], job=not args.no_job,
                   scale=args.scale or h.default_scale(corpus))
    print(report(corpus, rows))


if __name__ == "__main__":
    main()
