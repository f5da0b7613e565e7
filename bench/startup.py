"""Benchmark: small jobs, as a new user runs them — whole processes, start-up included, side by side.

    .venv/bin/python bench/startup.py [CORPUS] [--magenta-venv DIR] [--files 100] [--repeat 3]
                                      [--worker-sizes 100,3089,12356,49424] [--worker-repeat 2]
                                      [--compare-with OTHER_MELODYFLOW] [--skip-cold]

CORPUS defaults to ../shared/corpora/nottingham. Everything runs in a scratch directory with its own
PREFECT_HOME (so the user's ~/.prefect is left alone and the first command really starts the local
server), without PREFECT_API_URL, and with default options unless a row says otherwise.

- *ingest + dataset, FILES files*: `melodyflow ingest` then `melodyflow dataset` into a fresh DATA_ROOT,
  against Magenta 2.1.4's `convert_dir_to_note_sequences` then `melody_rnn_create_dataset` (with
  ``--magenta-venv``, a venv made by ../shared/tools/magenta-reference/setup.sh), interleaved per repeat;
- *1 new file*: `melodyflow ingest` of one file into a new DATA_ROOT, and of one file added to the corpus
  into the DATA_ROOT that already holds it;
- *no-op ingest* and *`melodyflow run` re-run*: every stage finds its outputs complete (the run's DATA_ROOT
  is prepared once, before the timed repeats, with ``--num-training-steps 20``; a re-run's cost does not
  depend on the step count);
- *cold*: the first command with a new PREFECT_HOME (database created, server started), and the first one
  after `melodyflow server stop` (server started on an existing database);
- ``--compare-with EXE``: the same small-job rows for another `melodyflow` executable (say, the main
  checkout's, before this work), interleaved with the others;
- *workers*: ingest + dataset with the default worker count, 1 worker and 2 workers, on corpora of each
  size (distinct copies beyond the corpus's own size), and whether all three wrote the same bytes.

Medians of ``--repeat`` runs; the load average is printed with each table, because the machine may be
shared. CPU seconds are shown too: user + system of the command's processes plus what the shared Prefect
server spent meanwhile. On a busy machine they are the steadier figure, and on an idle one the wall time
comes close to them (the command and the server mostly wait for each other, not run side by side).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

import _harness as h



REFERENCE_RUNNER = os.path.join(h.MAGENTA_REFERENCE, "run")
DEFAULT_CORPUS = h.NOTTINGHAM
MELODYFLOW = os.path.join(os.path.dirname(sys.executable), "melodyflow")


class Runner:
    """Runs commands in the bench's environment and records wall and child CPU seconds."""

    def __init__(self, scratch: str, exe: str = MELODYFLOW):
        self.exe = exe
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("PREFECT_API_URL", "MELODYFLOW_PREFECT_SERVER", "PREFECT_PROFILE")}
        # Its own Prefect home per executable: a side's database is never shared with another's server.
        self.env["PREFECT_HOME"] = os.path.join(scratch, "prefect-home" if exe == MELODYFLOW else "prefect-home-2")

    def server_cpu(self) -> float:
        """CPU seconds the bench's shared Prefect server has used so far (0 when none runs)."""
        try:
            with open(os.path.join(self.env["PREFECT_HOME"], "melodyflow-server.json")) as fh:
                pid = json.load(fh)["pid"]
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError, KeyError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __call__(self, cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
        """Wall seconds, CPU seconds (the command's processes and the shared server's share), stdout."""
        before, server_before = resource.getrusage(resource.RUSAGE_CHILDREN), self.server_cpu()
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env or self.env)
        wall = time.perf_counter() - started
        after, server_after = resource.getrusage(resource.RUSAGE_CHILDREN), self.server_cpu()
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return wall, cpu + max(0.0, server_after - server_before), proc.stdout

    def melodyflow(self, *args: str, env: dict | None = None) -> tuple[float, float, dict]:
        wall, cpu, out = self([self.exe, *args, "--json"], env)
        return wall, cpu, json.loads(out)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def first_files(corpus: str, count: int, dest: str) -> str:
    """The first ``count`` score files of ``corpus`` (distinct copies beyond its own size) in ``dest``."""
    if not h.score_files(corpus):
        raise SystemExit(f"no score files in {corpus}")
    copies = h.copies_for(corpus, count)
    staged = h.scaled_corpus(corpus, copies, dest + ".all") if copies > 1 else corpus
    chosen = h.score_files(staged)[:count]
    for rel in chosen:
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copyfile(os.path.join(staged, rel), os.path.join(dest, rel))
    if staged != corpus:
        h.remove(staged)
    return dest


def magenta(run: Runner, corpus: str, venv: str, scratch: str) -> tuple[float, float]:
    python = os.path.join(venv, "bin", "python")
    out = os.path.join(scratch, "magenta-out")
    h.remove(out)
    os.makedirs(out)
    ns = os.path.join(out, "ns.tfrecord")
    wall_i, cpu_i, _ = run([python, REFERENCE_RUNNER, "magenta.scripts.convert_dir_to_note_sequences",
                            f"--input_dir={corpus}", f"--output_file={ns}", "--recursive"])
    wall_d, cpu_d, _ = run([python, REFERENCE_RUNNER, "magenta.models.melody_rnn.melody_rnn_create_dataset",
                            "--config=basic_rnn", f"--input={ns}", f"--output_dir={os.path.join(out, 'seqex')}"])
    h.remove(out)
    return wall_i + wall_d, cpu_i + cpu_d


def median_row(name: str, samples: list[tuple[float, float]], target: str = "") -> list[str]:
    walls, cpus = [s[0] for s in samples], [s[1] for s in samples]
    return [name, f"{statistics.median(walls):.1f}", f"{min(walls):.1f}–{max(walls):.1f}",
            f"{statistics.median(cpus):.1f}", target]


def outputs_digest(data_root: str) -> str:
    """SHA-256 over what a run must reproduce byte for byte: NoteSequence shards and manifests, dataset
    shards and counters (timings and absolute paths left out)."""
    import hashlib

    digest = hashlib.sha256()
    for base, _, names in sorted(os.walk(data_root)):
        for name in sorted(names):
            rel = os.path.relpath(os.path.join(base, name), data_root)
            if ".tfrecord-" in name or name in ("manifest.jsonl", "stats.json"):
                digest.update(rel.encode())
                with open(os.path.join(base, name), "rb") as fh:
                    digest.update(fh.read())
    return digest.hexdigest()


def ingest_and_dataset(run: Runner, corpus: str, data: str, *worker_args: str) -> tuple[float, float, dict]:
    h.remove(data)
    wall_i, cpu_i, ingest = run.melodyflow("ingest", corpus, data, *worker_args)
    wall_d, cpu_d, dataset = run.melodyflow("dataset", data, *worker_args)
    return wall_i + wall_d, cpu_i + cpu_d, {"workers": (ingest.get("workers"), dataset.get("workers")),
                                            "digest": outputs_digest(data)}


def cold_starts(run: Runner, one: str, scratch: str) -> list[list[str]]:
    """Commands that start a server: on a new PREFECT_HOME, after `server stop`, and Prefect's own
    temporary server (what every command paid before the shared server)."""
    rows = []
    wall, cpu, _ = run.melodyflow("ingest", one, os.path.join(scratch, "cold-1"))
    rows.append(["first command, new PREFECT_HOME (database created, server started)", f"{wall:.1f}", f"{cpu:.1f}"])
    run([MELODYFLOW, "server", "stop"])
    wall, cpu, _ = run.melodyflow("ingest", one, os.path.join(scratch, "cold-2"))
    rows.append(["first command after `melodyflow server stop`", f"{wall:.1f}", f"{cpu:.1f}"])
    wall, cpu, _ = run.melodyflow("ingest", one, os.path.join(scratch, "cold-3"),
                                  env={**run.env, "MELODYFLOW_PREFECT_SERVER": "ephemeral"})
    rows.append(["MELODYFLOW_PREFECT_SERVER=ephemeral (Prefect's temporary server, every command)",
                 f"{wall:.1f}", f"{cpu:.1f}"])
    return rows


def one_repeat(run: Runner, corpus: str, extra: str, data: str, rerun_root: str) -> dict[str, tuple[float, float]]:
    """One timed sample of every small-job row for one melodyflow executable."""
    out = {}
    wall, cpu, _ = ingest_and_dataset(run, corpus, data)
    out["pair"] = (wall, cpu)
    fresh = data + "-one-file"
    h.remove(fresh)
    wall, cpu, _ = run.melodyflow("ingest", os.path.dirname(extra), fresh)
    out["one-new-root"] = (wall, cpu)
    added = os.path.join(corpus, "zz-added-" + os.path.basename(extra))
    shutil.copyfile(extra, added)
    try:
        wall, cpu, result = run.melodyflow("ingest", corpus, data)
    finally:
        os.unlink(added)
    assert result["counts"]["found"] == 1, result["counts"]
    out["one-existing-root"] = (wall, cpu)
    wall, cpu, _ = run.melodyflow("ingest", corpus, data)
    out["noop-ingest"] = (wall, cpu)
    wall, cpu, result = run.melodyflow("run", corpus, rerun_root, "--num-training-steps", "20")
    assert result["training"]["status"] == "up_to_date" and result["generation"]["status"] == "up_to_date"
    out["rerun"] = (wall, cpu)
    return out


def small_jobs(sides: dict[str, Runner], corpus: str, extra: str, scratch: str, repeat: int,
               venv: str | None) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Timed samples per side (a melodyflow executable) and row, interleaved: each repeat runs every row
    of every side once, and Magenta's pair."""
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {label: {} for label in sides}
    for label, run in sides.items():  # prepared, not timed
        run.melodyflow("run", corpus, os.path.join(scratch, f"rerun-{label}"), "--num-training-steps", "20")
    for _ in range(repeat):
        if venv:
            samples.setdefault("magenta", {}).setdefault("pair", []).append(
                magenta(next(iter(sides.values())), corpus, venv, scratch))
        for label, run in sides.items():
            row = one_repeat(run, corpus, extra, os.path.join(scratch, f"small-{label}"),
                             os.path.join(scratch, f"rerun-{label}"))
            for key, sample in row.items():
                samples[label].setdefault(key, []).append(sample)
    return samples


def workers_table(run: Runner, corpus: str, sizes: list[int], scratch: str, repeat: int) -> list[list[str]]:
    """ingest + dataset with the default worker count, 1 and 2 workers, interleaved, per corpus size."""
    rows = []
    for size in sizes:
        source = first_files(corpus, size, os.path.join(scratch, f"w{size}"))
        samples: dict[str, list[tuple[float, float, dict]]] = {"default": [], "1": [], "2": []}
        for _ in range(repeat):
            for mode in samples:
                args = () if mode == "default" else ("--workers", mode)
                samples[mode].append(ingest_and_dataset(run, source, os.path.join(scratch, "wdata"), *args))
        med = {m: statistics.median(s[0] for s in runs) for m, runs in samples.items()}
        digests = {s[2]["digest"] for runs in samples.values() for s in runs}
        chosen = sorted({s[2]["workers"] for s in samples["default"]})
        rows.append([str(size), "/".join(f"{i}+{d}" for i, d in chosen), f"{med['default']:.1f}", f"{med['1']:.1f}",
                     f"{med['2']:.1f}", f"{med['1'] / med['default']:.2f}x",
                     "yes" if len(digests) == 1 else f"NO ({len(digests)} variants)"])
        h.remove(source)
    return rows


ROWS = {"one-new-root": ("ingest of 1 new file, new DATA_ROOT", 6.0),
        "one-existing-root": ("ingest of 1 new file into the DATA_ROOT holding the others", 6.0),
        "noop-ingest": ("ingest with nothing new", None),
        "rerun": ("`melodyflow run` re-run, every stage complete", 5.0)}


def side_rows(label: str, samples: dict, magenta_s: float | None) -> list[list[str]]:
    pair = statistics.median(s[0] for s in samples["pair"])
    versus = f"**{magenta_s / pair:.2f}x** faster than Magenta (target ≥ 2x)" if magenta_s else ""
    rows = [median_row(f"{label}: ingest + dataset, default options", samples["pair"], versus)]
    for key, (name, limit) in ROWS.items():
        median = statistics.median(s[0] for s in samples[key])
        verdict = "" if limit is None else f"target ≤ {limit:g} s: {'met' if median <= limit else 'NOT met'}"
        rows.append(median_row(f"{label}: {name}", samples[key], verdict))
    return rows


def report(files: int, samples: dict, cold: list[list[str]], workers: list[list[str]], loads: dict) -> str:
    repeats = len(next(iter(samples.values()))["pair"])
    out = [f"\n## Small jobs: {files} files, medians of {repeats} interleaved repeats", f"({loads['small']})\n"]
    rows, magenta_s = [], None
    if "magenta" in samples:
        magenta_s = statistics.median(s[0] for s in samples["magenta"]["pair"])
        rows.append(median_row("Magenta 2.1.4: convert_dir_to_note_sequences + melody_rnn_create_dataset",
                               samples["magenta"]["pair"]))
    for label, side in samples.items():
        if label != "magenta":
            rows += side_rows(label, side, magenta_s)
    out.append(h.table(["whole process", "wall s (median)", "range", "CPU s", "target"], rows))
    if cold:
        out += [f"\n## Commands that start a Prefect server (1 run each; {loads['cold']})\n",
                h.table(["command: `melodyflow ingest` of 1 file", "wall s", "CPU s"], cold)]
    if workers:
        out += [f"\n## Default worker count against 1 and 2 workers: ingest + dataset ({loads['workers']})\n",
                h.table(["files", "default chose (ingest+dataset)", "default s", "1 worker s", "2 workers s",
                         "1 worker / default", "same bytes"], workers)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", default=DEFAULT_CORPUS)
    parser.add_argument("--magenta-venv", default=None, help="venv made by magenta-reference/setup.sh")
    parser.add_argument("--files", type=int, default=100, help="files of the small corpus (default: 100)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker-sizes", default="100,3089,12356,49424",
                        help="corpus sizes for the worker-count table, comma-separated ('' to skip); the "
                             "largest is past the break-even of two workers on Nottingham-like files")
    parser.add_argument("--worker-repeat", type=int, default=2, help="repeats per size of that table")
    parser.add_argument("--skip-cold", action="store_true", help="skip the server start-up rows")
    parser.add_argument("--compare-with", default=None, metavar="EXE",
                        help="another `melodyflow` executable (an older checkout's) for the same small-job rows")
    args = parser.parse_args()
    scratch = h.scratch_dir()
    run = Runner(scratch)
    sides = {"melodyflow": run}
    if args.compare_with:
        sides["compared"] = Runner(scratch, args.compare_with)
    loads = {}
    try:
        corpus = first_files(args.corpus, args.files + 1, os.path.join(scratch, "corpus"))
        extra = h.score_files(corpus)[-1]
        os.makedirs(os.path.join(scratch, "one"))
        extra_path = os.path.join(scratch, "one", os.path.basename(extra))
        shutil.move(os.path.join(corpus, extra), extra_path)
        loads["cold"] = load()
        cold = [] if args.skip_cold else cold_starts(run, os.path.dirname(extra_path), scratch)
        loads["small"] = load()
        samples = small_jobs(sides, corpus, extra_path, scratch, args.repeat, args.magenta_venv)
        loads["small"] += f" at the start; {load()} at the end"
        sizes = [int(s) for s in args.worker_sizes.split(",") if s]
        loads["workers"] = load()
        workers = workers_table(run, args.corpus, sizes, scratch, args.worker_repeat) if sizes else []
        loads["workers"] += f" at the start; {load()} at the end"
        print(report(args.files, samples, cold, workers, loads))
    finally:
        subprocess.run([MELODYFLOW, "server", "stop"], env=run.env, capture_output=True)
        h.remove(scratch)


if __name__ == "__main__":
    main()
