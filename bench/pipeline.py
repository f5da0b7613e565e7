"""Benchmark: ingestion and dataset build, whole process, with 1 and 2 workers (and Magenta if given).

    .venv/bin/python bench/pipeline.py CORPUS [--config basic_rnn] [--magenta-venv DIR]

Runs each command as a user would (``melodyflow ingest`` / ``melodyflow dataset``, fresh DATA_ROOT each
time) and prints a table: wall time, files/s, NoteSequences, melodies/s, peak RSS of the process tree's
largest process. With ``--magenta-venv`` (see ../shared/tools/magenta-reference) it also times Magenta's
``convert_dir_to_note_sequences`` + ``melody_rnn_create_dataset`` on the same corpus in the same run, and
prints the ratios. Start-up (imports, Prefect's ephemeral API, Beam's harness) is included: these are
whole-process figures, not marginal rates.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE_RUNNER = os.path.join(HERE, "..", "..", "shared", "tools", "magenta-reference", "run")


def _timed(cmd: list[str], env=None) -> tuple[float, int, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) // 1024, proc.stdout


def _count_files(corpus: str) -> int:
    from transforms.convert import format_for_path
    from transforms.storage import walk_files

    return sum(1 for path, _ in walk_files(corpus) if format_for_path(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus")
    parser.add_argument("--config", default="basic_rnn")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default: 1,2)")
    parser.add_argument("--magenta-venv", default=None, help="venv made by magenta-reference/setup.sh")
    args = parser.parse_args()
    exe = os.path.join(os.path.dirname(sys.executable), "melodyflow")
    files = _count_files(args.corpus)
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "data")
            wall_i, rss_i, out = _timed([exe, "ingest", args.corpus, data, "--workers", str(workers), "--json"])
            ingest = json.loads(out)
            wall_d, rss_d, out = _timed([exe, "dataset", data, "--config", args.config, "--workers",
                                         str(workers), "--json", "--eval-ratio", "0"])
            dataset = json.loads(out)
        melodies = dataset["info"]["counts"]["train"] + dataset["info"]["counts"]["eval"]
        rows.append((f"melodyflow, {workers} worker(s)", wall_i, files / wall_i, ingest["counts"]["sequences"],
                     wall_d, melodies, melodies / wall_d, max(rss_i, rss_d)))
    if args.magenta_venv:
        python = os.path.join(args.magenta_venv, "bin", "python")
        with tempfile.TemporaryDirectory() as tmp:
            ns = os.path.join(tmp, "ns.tfrecord")
            wall_i, rss_i, _ = _timed([python, REFERENCE_RUNNER, "magenta.scripts.convert_dir_to_note_sequences",
                                       f"--input_dir={args.corpus}", f"--output_file={ns}", "--recursive"])
            wall_d, rss_d, _ = _timed([python, REFERENCE_RUNNER, "magenta.models.melody_rnn.melody_rnn_create_dataset",
                                       f"--config={args.config}", f"--input={ns}",
                                       f"--output_dir={os.path.join(tmp, 'out')}", "--eval_ratio=0.0"])
            import tensorflow as tf  # only to count the reference outputs

            n_seq = sum(1 for _ in tf.data.TFRecordDataset(ns))
            mel = sum(1 for _ in tf.data.TFRecordDataset(os.path.join(tmp, "out", "training_melodies.tfrecord")))
        rows.append(("Magenta 2.1.4 (1 process)", wall_i, files / wall_i, n_seq, wall_d, mel, mel / wall_d,
                     max(rss_i, rss_d)))
    header = ("run", "ingest s", "files/s", "sequences", "dataset s", "melodies", "melodies/s", "peak RSS MB")
    print(f"corpus: {args.corpus} ({files} score files), config {args.config}")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for row in rows:
        print(" | ".join([row[0], f"{row[1]:.1f}", f"{row[2]:.1f}", str(row[3]), f"{row[4]:.1f}", str(row[5]),
                          f"{row[6]:.1f}", str(row[7])]))
    if len(rows) > 1:
        base = rows[0]
        for row in rows[1:]:
            print(f"{row[0]} takes {row[1] / base[1]:.2f}x the ingest time and {row[4] / base[4]:.2f}x "
                  f"the dataset time of {base[0]}")


if __name__ == "__main__":
    main()
