"""Benchmark: the whole data plane as users run it — `melodyflow ingest` + `melodyflow dataset` — against
Magenta's two commands, and (with --all) the stage benchmarks too. One script, one run, one table.

    .venv/bin/python bench/pipeline.py [CORPUS] [--magenta-venv DIR] [--workers 1,2] [--scale K]
                              [--steady-from K1] [--all]

CORPUS defaults to the demo corpus. Each command runs in its own process, as a user would run it
(fresh DATA_ROOT, Prefect's ephemeral API, Beam, start-up included):
- melodyflow: ``melodyflow ingest`` then ``melodyflow dataset`` on the corpus and on ``--scale`` K
  distinct copies of it (default: enough for about 120,000 files: 39 for Nottingham, 239 for the
  demo corpus), with each worker count; ``--repeat`` (3) runs of each, the median counts, interleaved (each
  repeat runs every size with every worker count in turn, so a slow spell hits them all). Also on
  ``--steady-from`` copies (default: about 5,000 files), for the steady-state rate between two large
  runs, which every worker's one-off costs leave out;
- Magenta 2.1.4 (with ``--magenta-venv``, a venv made by ../shared/tools/magenta-reference/setup.sh):
  ``convert_dir_to_note_sequences`` then ``melody_rnn_create_dataset`` on the corpus and on enough
  copies of it to add at least 5,000 files (3 copies for Nottingham, 11 for the demo corpus).
It prints wall times, the marginal files/s of the two commands together (added files over added wall
time; start-up apart), melodies written, and the ratios. ``--all`` also prints the stage and job tables
of bench/ingest.py and bench/dataset.py for the same corpus, with the jobs' peak memory at 1x and Kx.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import _harness as h

REFERENCE_RUNNER = os.path.join(h.ROOT, "..", "shared", "tools", "magenta-reference", "run")


def _timed(cmd: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    return wall, proc.stdout


def _median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["ingest_s"] + r["dataset_s"])[len(runs) // 2]


def melodyflow(corpus: str, workers: int, config: str, scratch: str) -> dict:
    exe = os.path.join(os.path.dirname(sys.executable), "melodyflow")
    data = os.path.join(scratch, f"mf-{workers}-{abs(hash(corpus))}")
    wall_i, out = _timed([exe, "ingest", corpus, data, "--workers", str(workers), "--json"])
    ingest = json.loads(out)
    wall_d, out = _timed([exe, "dataset", data, "--config", config, "--workers", str(workers), "--json",
                          "--eval-ratio", "0"])
    dataset = json.loads(out)
    h.remove(data)
    return {"ingest_s": wall_i, "dataset_s": wall_d, "files": ingest["counts"]["found"],
            "sequences": ingest["counts"]["sequences"], "melodies": sum(dataset["info"]["counts"].values())}


def magenta(corpus: str, venv: str, config: str, scratch: str) -> dict:
    python = os.path.join(venv, "bin", "python")
    out = os.path.join(scratch, f"mg-{abs(hash(corpus))}")
    os.makedirs(out, exist_ok=True)
    ns = os.path.join(out, "ns.tfrecord")
    wall_i, _ = _timed([python, REFERENCE_RUNNER, "magenta.scripts.convert_dir_to_note_sequences",
                        f"--input_dir={corpus}", f"--output_file={ns}", "--recursive"])
    wall_d, _ = _timed([python, REFERENCE_RUNNER, "magenta.models.melody_rnn.melody_rnn_create_dataset",
                        f"--config={config}", f"--input={ns}", f"--output_dir={os.path.join(out, 'seqex')}",
                        "--eval_ratio=0.0"])
    from melodyflow.transforms.io.tfrecord import iter_records

    def count(path: str) -> int:
        with open(path, "rb") as fh:
            return sum(1 for _ in iter_records(fh.read()))

    result = {"ingest_s": wall_i, "dataset_s": wall_d, "files": len(h.score_files(corpus)),
              "sequences": count(ns), "melodies": count(os.path.join(out, "seqex", "training_melodies.tfrecord"))}
    h.remove(out)
    return result


def steady_report(runs: list[tuple[str, dict, dict]], files: int, base: int, scale: int) -> str:
    """The marginal rate between two large runs: from ``base`` to ``scale`` copies.

    Why: a cost paid once per worker (its own isolated parser's start, a second of imports) is paid by
    every worker of a large run, but at 1x only by the workers that happen to meet a file needing it;
    the 1x-based rate then charges it to the added files. From ``base`` copies up, every run pays it.
    """
    body, rates = [], []
    for name, more, at_base in runs:
        wall_b = at_base["ingest_s"] + at_base["dataset_s"]
        wall_k = more["ingest_s"] + more["dataset_s"]
        added = wall_k - wall_b
        rate = files * (scale - base) / added if added > 0 else float("nan")
        rates.append(rate)
        body.append([name, f"{wall_b:.1f}", f"{wall_k:.1f}", f"{rate:.0f}"])
    out = [f"\nSteady state, from {base}x to {scale}x ({files * (scale - base)} added files; "
           "every worker's one-off costs in both runs):\n",
           h.table(["run", f"total s at {base}x", f"total s at {scale}x", "files/s"], body)]
    out += [f"\n{runs[i][0]} vs {runs[0][0]}: {rates[i] / rates[0]:.2f}x (steady state)" for i in range(1, len(runs))]
    return "\n".join(out)


def repeat_report(files: int, scale: int, workers: list[int], runs: dict) -> str:
    """Each repeat's own ratio of the larger worker counts to the first, from its adjacent runs: how far
    a single pass of the benchmark can stray from the medians."""
    def rate(run_1x: dict, run_kx: dict) -> float:
        return h.Marginal(files, run_1x["ingest_s"] + run_1x["dataset_s"],
                          run_kx["ingest_s"] + run_kx["dataset_s"], scale).rate

    lines = []
    first = workers[0]
    for w in workers[1:]:
        ratios = [rate(runs[w, "1x"][i], runs[w, "kx"][i]) / rate(runs[first, "1x"][i], runs[first, "kx"][i])
                  for i in range(len(runs[w, "1x"]))]
        lines.append(f"\n{w} workers vs {first}, each repeat on its own (from 1x): "
                     + ", ".join(f"{r:.2f}x" for r in ratios))
    return "".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", nargs="?", default=None, help="corpus directory (default: the demo corpus)")
    parser.add_argument("--config", default="basic_rnn")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default: 1,2)")
    parser.add_argument("--scale", type=int, default=None, help="copies of the corpus for melodyflow's marginal "
                                                                "rate (default: enough for about 120,000 files)")
    parser.add_argument("--repeat", type=int, default=3, help="melodyflow runs per corpus size; the run with "
                                                              "the median total time counts (default: 3)")
    parser.add_argument("--steady-from", type=int, default=None,
                        help="copies of the corpus for the steady-state rate, measured from this many copies to "
                             "--scale (default: enough for about 5,000 files, at least 2)")
    parser.add_argument("--magenta-venv", default=None, help="venv made by magenta-reference/setup.sh")
    parser.add_argument("--all", action="store_true", help="also run bench/ingest.py and bench/dataset.py")
    args = parser.parse_args()
    corpus = args.corpus or h.default_corpus()
    scale = args.scale or h.default_scale(corpus)
    base = args.steady_from or max(2, h.copies_for(corpus, 5000))
    if not 1 < base < scale:
        parser.error(f"--steady-from must be between 2 and --scale - 1 ({scale - 1})")
    workers = [int(w) for w in args.workers.split(",")]
    scratch = h.scratch_dir()
    rows, steady = [], []
    try:
        scaled = h.scaled_corpus(corpus, scale, os.path.join(scratch, f"x{scale}"))
        based = h.scaled_corpus(corpus, base, os.path.join(scratch, f"x{base}"))
        if args.magenta_venv:
            # Enough added files (>= 5,000) that TensorFlow's variable start-up (±0.5 s) moves the rate by
            # a few per cent at most; with 1,500 the demo corpus's reference rate moved from 179 to 213 files/s.
            copies = h.copies_for(corpus, 5000) + 1  # the copies beyond the first add >= 5,000 files
            more_corpus = h.scaled_corpus(corpus, copies, os.path.join(scratch, f"ref-x{copies}"))
            one = magenta(corpus, args.magenta_venv, args.config, scratch)
            more = magenta(more_corpus, args.magenta_venv, args.config, scratch)
            rows.append(("Magenta 2.1.4 (one process)", one, more, copies))
        # Interleaved: each repeat runs every worker count on every size, one after the other, so a slow
        # spell of the machine (the same command moved by 1-3 s between minutes) lands on all of them
        # rather than on one worker count's whole series.
        runs = {(w, size): [] for w in workers for size in ("1x", "base", "kx")}
        for _ in range(args.repeat):
            for size, source in (("1x", corpus), ("base", based), ("kx", scaled)):
                for w in workers:
                    runs[w, size].append(melodyflow(source, w, args.config, scratch))
        for w in workers:
            # Median of --repeat runs: Prefect's ephemeral API and Beam's worker start-up move a single pair
            # of runs' marginal rate by 10-15%.
            rows.append((f"melodyflow, {w} worker{'s' if w > 1 else ''}", _median_run(runs[w, "1x"]),
                         _median_run(runs[w, "kx"]), scale))
            steady.append(_median_run(runs[w, "base"]))
    finally:
        h.remove(scratch)
    files = rows[0][1]["files"]
    print(f"corpus: {corpus} ({files} score files), config {args.config}\n")
    body, rates = [], {}
    for name, one, more, copies in rows:
        wall_1 = one["ingest_s"] + one["dataset_s"]
        wall_k = more["ingest_s"] + more["dataset_s"]
        m = h.Marginal(files, wall_1, wall_k, copies)
        rates[name] = m.rate
        body.append([name, f"{one['ingest_s']:.1f}", f"{one['dataset_s']:.1f}", f"{wall_1:.1f}",
                     f"{files / wall_1:.0f}", f"{m.rate:.0f}", f"{m.startup:.1f}", str(one["sequences"]),
                     str(one["melodies"])])
    print(h.table(["run", "ingest s", "dataset s", "total s", "files/s (whole)", "files/s (marginal)",
                   "start-up s", "sequences", "melodies"], body))
    names = list(rates)
    if args.magenta_venv:
        for name in names[1:]:
            print(f"\n{name} vs Magenta's two commands: **{rates[name] / rates[names[0]]:.1f}x** (marginal)")
    mf = [n for n in names if n.startswith("melodyflow")]
    for name in mf[1:]:
        print(f"\n{name} vs {mf[0]}: {rates[name] / rates[mf[0]]:.2f}x (marginal)")
    print(repeat_report(files, scale, workers, runs))
    print(steady_report([(name, more, at_base) for (name, _, more, _), at_base in zip(rows[-len(mf):], steady)],
                        files, base, scale))
    if args.all:
        import dataset
        import ingest

        print("\n## bench/ingest.py\n")
        print(ingest.report(corpus, ingest.measure(corpus, workers, job=True, scale=scale)))
        print("\n## bench/dataset.py\n")
        print(dataset.report(corpus, dataset.measure(corpus, workers, args.config, job=True, scale=scale)))


if __name__ == "__main__":
    main()
