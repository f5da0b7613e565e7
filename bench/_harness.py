"""What every benchmark here shares: corpora (scaled with distinct copies), fresh-interpreter runs, tables.

Speed is reported two ways, as ../shared/NOTES-ENV.md asks:
- *stage* rate: the per-file work alone, timed inside warmed-up worker processes (imports and pool
  start excluded), so the reference and melodyflow are compared per core on the same files;
- *marginal* rate of a whole process: run on the corpus and on K distinct copies of it, and divide the
  added files by the added wall time; start-up (imports, Prefect, Beam's harness) is what the first run
  costs beyond that and is reported separately.  The reference uses K = 2 (it is slow enough for that to
  be precise); melodyflow uses enough copies for about 120,000 files by default (39 of Nottingham, 239
  of the demo corpus), which also shows peak memory at 1x against Kx.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _shared() -> str:
    """The project's shared directory: the nearest ``shared/`` beside the checkout or above it (a git
    worktree sits one level deeper than the main checkout)."""
    here = ROOT
    while os.path.dirname(here) != here:
        here = os.path.dirname(here)
        if os.path.isdir(os.path.join(here, "shared", "corpora")):
            return os.path.join(here, "shared")
    return os.path.join(ROOT, "..", "shared")


SHARED = _shared()
MAGENTA_REFERENCE = os.path.join(SHARED, "tools", "magenta-reference")  # its setup.sh and run script
NOTTINGHAM = os.path.join(SHARED, "corpora", "nottingham")
SCORE_EXTENSIONS = (".mid", ".midi", ".kar", ".abc", ".xml", ".mxl", ".musicxml")


def default_corpus() -> str:
    """The demo corpus the README's first command uses (built once, then cached)."""
    from melodyflow.transforms.ingest.demo_corpus import build_demo_corpus, default_cache_dir

    corpus = default_cache_dir()
    build_demo_corpus(corpus)
    return corpus


# Files in melodyflow's larger run. The two commands' fixed costs (imports, Prefect's ephemeral API, Beam's
# workers) move by 1-3 s per pair from run to run. At 30,000 files the 2-worker marginal time was only
# 7-9 s, and runs of the same code gave 1.55-2.07x for two workers against one (1.69x and 2.07x on
# Nottingham); at about 120,000 it is 30-34 s, and three interleaved repeats agreed within 0.1.
MARGINAL_FILES = 120_000


def copies_for(corpus: str, files: int) -> int:
    """Copies of ``corpus`` that make at least ``files`` files."""
    return -(-files // max(1, len(score_files(corpus))))


def default_scale(corpus: str) -> int:
    """Copies of ``corpus`` that make about :data:`MARGINAL_FILES` files (at least 2)."""
    return max(2, copies_for(corpus, MARGINAL_FILES))


def score_files(corpus: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), corpus) for d, _, fs in os.walk(corpus) for f in fs
                  if f.lower().endswith(SCORE_EXTENSIONS))


def _distinct(data: bytes, path: str, copy: int) -> bytes:
    """The same score with different bytes, so content-hash deduplication does not skip the copy.

    Readers ignore what is appended: bytes after a MIDI file's last declared track, an ABC comment, an XML
    comment after the root element.  Zipped MusicXML (.mxl) is copied unchanged.
    """
    lower = path.lower()
    if lower.endswith((".mid", ".midi", ".kar")):
        return data + b"\0" * copy
    if lower.endswith(".abc"):
        return data + f"\n% copy {copy}\n".encode()
    if lower.endswith((".xml", ".musicxml")):
        return data + f"\n<!-- copy {copy} -->\n".encode()
    return data


def scaled_corpus(corpus: str, copies: int, dest: str) -> str:
    """``copies`` distinct copies of ``corpus`` under ``dest`` (copy 0 is the corpus itself)."""
    for rel in score_files(corpus):
        with open(os.path.join(corpus, rel), "rb") as fh:
            data = fh.read()
        for k in range(copies):
            out = os.path.join(dest, f"copy{k:03d}", rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "wb") as fh:
                fh.write(_distinct(data, rel, k))
    return dest


# Prepended to every benchmark script: the peak resident set of this process and of its descendants.
# Not getrusage(): Linux carries ru_maxrss across fork and exec, so a child of a large benchmark process
# would report the parent's peak.  VmHWM (per address space) is exact for this process; descendants
# (Beam SDK workers, parser children) are read the same way by a thread every 50 ms while they live.
PEAK_RSS = """
import os as _os, threading as _threading, time as _time
_children_peak_kb = [0]

def _vm_hwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

def _descendants(pid):
    found = []
    try:
        tids = _os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids = [int(k) for k in fh.read().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid] + _descendants(kid)
    return found

def _watch_children():
    me = _os.getpid()
    while True:
        for kid in _descendants(me):
            _children_peak_kb[0] = max(_children_peak_kb[0], _vm_hwm_kb(kid))
        _time.sleep(0.05)

_threading.Thread(target=_watch_children, daemon=True).start()

def peak_rss_mb():
    return {"self_mb": _vm_hwm_kb("self") / 1024, "children_mb": _children_peak_kb[0] / 1024}
"""


TIMED_PASSES = """
def timed_passes(run, min_s=2.0):
    # (first result, seconds per pass, seconds of the passes after the first): whole passes of run()
    # until at least min_s of work, so a small corpus is not timed in milliseconds.
    t0 = _time.perf_counter()
    first = run()
    first_done, passes = _time.perf_counter(), 1
    while _time.perf_counter() - t0 < min_s:
        run()
        passes += 1
    end = _time.perf_counter()
    return first, (end - t0) / passes, end - first_done
"""


def run_python(script: str, *args: str, python: str | None = None) -> dict:
    """Run ``script`` in a fresh interpreter; it writes a JSON result to the path given as its last argument."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        out_path = out.name
    proc = subprocess.run([python or sys.executable, "-c", PEAK_RSS + TIMED_PASSES + script, *args, out_path],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": ROOT, "PYTHONWARNINGS": "ignore"})
    try:
        if proc.returncode != 0:
            raise SystemExit(f"benchmark step failed:\n{proc.stderr[-4000:]}")
        with open(out_path, encoding="utf-8") as fh:
            return json.load(fh)
    finally:
        os.unlink(out_path)


@dataclass(frozen=True)
class Marginal:
    """Two whole-process runs: on N files, and on ``copies`` x N distinct files."""

    files: int
    wall_1x: float
    wall_kx: float
    copies: int = 2

    @property
    def rate(self) -> float:
        """Files per second added by the extra (copies - 1) x N files; NaN when the larger run was not
        slower (a corpus too small for its work to stand out from start-up noise: raise ``--scale``)."""
        added = self.wall_kx - self.wall_1x
        return self.files * (self.copies - 1) / added if added > 0 else float("nan")

    @property
    def startup(self) -> float:
        """What the 1x run cost beyond its marginal work."""
        return self.wall_1x - self.files / self.rate


def scratch_dir() -> str:
    return tempfile.mkdtemp(prefix="melodyflow-bench-")


def remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (paste-able into docs/performance.md)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def rss_cell(rss: dict) -> str:
    """Main process / largest child (Beam SDK workers with 2+ workers; the isolated parser if it ran)."""
    return f"{rss['self_mb']:.0f} / {rss['children_mb']:.0f}"


def stage_report(rows: list[dict], n: int, reference: str, unit: str, second: str) -> list[str]:
    """The per-core stage table of bench/ingest.py and bench/dataset.py.

    Each row holds ``ref`` and ``stage`` pool runs with ``work_s`` and the count ``second`` (notes,
    melodies); ``n`` is how many files or sequences each run processed.
    """
    body = []
    for r in rows:
        ref, st = r["ref"], r["stage"]
        body.append([str(r["workers"]), f"{n / ref['work_s']:.0f}", f"{ref[second] / ref['work_s']:.0f}",
                     f"{n / st['work_s']:.0f}", f"{st[second] / st['work_s']:.0f}",
                     f"**{ref['work_s'] / st['work_s']:.1f}x**"])
    return ["Stage (work only, warmed-up pool; per core = the 1-worker row):", "",
            table(["workers", f"{reference} {unit}", f"{reference} {second}/s", f"melodyflow {unit}",
                   f"melodyflow {second}/s", "ratio"], body)]


def marginal_report(rows: list[dict], n: int, reference: str, unit: str, job: str) -> list[str]:
    """The whole-process table of bench/ingest.py and bench/dataset.py, and the N-workers-vs-1 lines.

    Each row holds the reference's 1x/2x runs (``ref``, ``ref2``) and melodyflow's 1x/Kx job runs
    (``job``, ``jobk``, ``scale``), each with ``wall_s`` and ``rss``.
    """
    out = ["", f"Whole process (marginal rate: {reference} from 1x and 2x runs, melodyflow from 1x and Kx; "
               "start-up apart):", ""]
    body = []
    for r in rows:
        ref = Marginal(n, r["ref"]["wall_s"], r["ref2"]["wall_s"])
        ours = Marginal(n, r["job"]["wall_s"], r["jobk"]["wall_s"], r["scale"])
        body.append([str(r["workers"]), f"{r['ref']['wall_s']:.1f}", f"{ref.rate:.0f}", f"{ref.startup:.1f}",
                     f"{r['job']['wall_s']:.1f}", f"{ours.rate:.0f}", f"{ours.startup:.1f}",
                     f"**{ours.rate / ref.rate:.1f}x**",
                     f"{max(r['ref2']['rss']['self_mb'], r['ref2']['rss']['children_mb']):.0f}",
                     rss_cell(r["job"]["rss"]), rss_cell(r["jobk"]["rss"])])
    out.append(table(["workers", f"{reference} wall s", f"{reference} {unit}", "start-up s", "melodyflow wall s",
                      f"melodyflow {unit}", "start-up s", "ratio", f"{reference} peak MB",
                      "melodyflow peak MB 1x", f"melodyflow peak MB {rows[0]['scale']}x"], body))
    one = Marginal(n, rows[0]["job"]["wall_s"], rows[0]["jobk"]["wall_s"], rows[0]["scale"]).rate
    for r in rows[1:]:
        more = Marginal(n, r["job"]["wall_s"], r["jobk"]["wall_s"], r["scale"]).rate
        out.append(f"\nmelodyflow {job}, {r['workers']} workers vs 1: {more / one:.2f}x (marginal)")
    return out
