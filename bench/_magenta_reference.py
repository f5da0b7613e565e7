"""Magenta 2.1.4 trained and measured on melodyflow's own dataset: what bench/magenta_comparison.py and
bench/time_to_quality.py share.

melodyflow's ``dataset --format sequence-example`` shards are Magenta's SequenceExamples, and
``melody_rnn_train --sequence_example_file`` takes a glob (``tf.gfile.Glob``), so Magenta trains on
melodyflow's train split as it is (``DATA_ROOT/melodies/<config>/train.tfrecord-*``).  Its held-out loss on
melodyflow's eval split is measured twice, by two independent routes:

- **in Magenta's own session** (``_magenta_heldout_probe.py``, run in Magenta's venv): the saved ``.mag``
  loaded as ``melody_rnn_generate`` loads it, every eval record fed through once — any config;
- **through melodyflow**: ``melodyflow import-magenta X.mag DIR`` then ``melodyflow evaluate DATA_ROOT
  --bundle DIR`` (the import's equality with Magenta is bench/magenta_equality.py's proof) — every config
  but attention_rnn, which the import refuses.

Wall times are whole processes (interpreter start, imports, Prefect, TensorFlow set-up, the final
checkpoint and bundle).  *Training-only* time is read from each trainer's own step log (Magenta's
``Global Step = N`` lines, melodyflow's ``step N/M`` lines, both every 10 steps, both time-stamped): the time
from the first to the last step logged, scaled to the run's steps.  Magenta runs through
``../shared/tools/magenta-reference/run`` in the venv its ``setup.sh`` made (``--magenta-venv``, default
``$MAGENTA_VENV`` or ``../magenta-venv``).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

import _harness as h

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REFERENCE = h.MAGENTA_REFERENCE
NOTTINGHAM = h.NOTTINGHAM
DEFAULT_VENV = os.environ.get("MAGENTA_VENV", os.path.join(ROOT, "..", "magenta-venv"))

# absl's "I1201 18:22:33.123456 …] … Global Step = 11, Loss = …" and Prefect's "18:22:33.123 | INFO | … step 11/300".
_MAGENTA_STEP = re.compile(r"^[IWE]\d{4} (\d\d):(\d\d):(\d\d(?:\.\d+)?) .*Global Step = (\d+), Loss = ([\d.eE+-]+)")
_MELODYFLOW_STEP = re.compile(r"^(\d\d):(\d\d):(\d\d(?:\.\d+)?) \|.* step (\d+)/\S+ loss ([\d.]+)")
# The same, and its evaluations ("eval at step 50: loss 1.2345"): a run that stops on an eval loss ends there.
_MELODYFLOW_STEP_OR_EVAL = re.compile(
    r"^(\d\d):(\d\d):(\d\d(?:\.\d+)?) \|.* (?:step (?=\d+/)|eval at step )(\d+)(?:/\S+|:) loss ([\d.]+)")


@dataclass(frozen=True)
class Timing:
    """One trainer process: whole-process wall seconds, training-only seconds (scaled to ``steps``)."""

    steps: int
    wall_s: float
    train_s: float | None
    last_train_loss: float | None = None

    @property
    def steps_per_s(self) -> float | None:
        return self.steps / self.train_s if self.train_s else None


def check_venv(venv: str) -> str:
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        raise SystemExit(f"no Magenta venv at {venv}: run bash {REFERENCE}/setup.sh DIR and pass --magenta-venv DIR")
    return python


def run_logged(cmd: list[str], log: str, env: dict | None = None) -> tuple[str, list[str], float]:
    """Run ``cmd``; its stderr is appended to ``log``.  Returns (stdout, stderr lines, wall seconds)."""
    started = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    wall = time.monotonic() - started
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n{proc.stderr}")
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}) after {wall:.0f} s: {' '.join(cmd)}; see {log}")
    return proc.stdout, proc.stderr.splitlines(), wall


def training_seconds(lines: list[str], pattern: re.Pattern, steps: int) -> tuple[float | None, float | None]:
    """(training-only seconds scaled to ``steps``, last logged train loss) from a trainer's step log."""
    points = []
    for line in lines:
        m = pattern.search(line)
        if m:
            h, mi, s, step, loss = m.groups()
            points.append((int(h) * 3600 + int(mi) * 60 + float(s), int(step), float(loss)))
    if len(points) < 2 or points[-1][1] == points[0][1]:
        return None, points[-1][2] if points else None
    (t0, s0, _), (t1, s1, loss) = points[0], points[-1]
    elapsed = t1 - t0 + (86400 if t1 < t0 else 0)
    return elapsed * steps / (s1 - s0), loss


class Magenta:
    """Magenta 2.1.4's commands, each in its own process, logged to ``log``."""

    def __init__(self, venv: str, log: str):
        self.python = check_venv(venv)
        self.log = log

    def __call__(self, module: str, *flags: str, env: dict | None = None) -> tuple[str, list[str], float]:
        return run_logged([self.python, os.path.join(REFERENCE, "run"), module, *flags], self.log, env)

    def train(self, data_root: str, config: str, run_dir: str, hparams: str, steps: int) -> Timing:
        """``melody_rnn_train`` on melodyflow's train split (every shard, by glob)."""
        records = os.path.join(data_root, "melodies", config, "train.tfrecord-*")
        _, lines, wall = self("magenta.models.melody_rnn.melody_rnn_train", f"--config={config}",
                              f"--run_dir={run_dir}", f"--sequence_example_file={records}",
                              f"--num_training_steps={steps}", f"--hparams={hparams}", "--summary_frequency=10")
        train_s, loss = training_seconds(lines, _MAGENTA_STEP, steps)
        return Timing(steps=steps, wall_s=wall, train_s=train_s, last_train_loss=loss)

    def bundle(self, config: str, run_dir: str, hparams: str, mag: str) -> str:
        """The run's latest checkpoint as a generator bundle (``--save_generator_bundle``)."""
        self("magenta.models.melody_rnn.melody_rnn_generate", f"--config={config}", f"--run_dir={run_dir}",
             f"--hparams={hparams}", f"--bundle_file={mag}", "--save_generator_bundle",
             "--bundle_description=melodyflow bench/_magenta_reference.py")
        return mag

    def heldout(self, mag: str, data_root: str, config: str, out: str) -> dict:
        """Held-out metrics of ``mag`` on melodyflow's eval split, computed in Magenta's own session."""
        shards = sorted(glob.glob(os.path.join(data_root, "melodies", config, "eval.tfrecord-*")))
        self("_magenta_heldout_probe", mag, out, *shards, env={**os.environ, "PYTHONPATH": HERE})
        with open(out) as fh:
            return json.load(fh)

    def generate(self, mag: str, primers: list[str], out: str, num_outputs: int, num_steps: int) -> list[str]:
        """``num_outputs`` melodies per primer MIDI file (one ``melody_rnn_generate`` per primer, into its own
        folder: Magenta names files by timestamp); returns the MIDI files."""
        shutil.rmtree(out, ignore_errors=True)
        for primer in primers:
            folder = os.path.join(out, os.path.splitext(os.path.basename(primer))[0])
            self("magenta.models.melody_rnn.melody_rnn_generate", f"--bundle_file={mag}", f"--output_dir={folder}",
                 f"--num_outputs={num_outputs}", f"--num_steps={num_steps}", f"--primer_midi={primer}")
        return sorted(glob.glob(os.path.join(out, "*", "*.mid")))


def melodyflow(*args: str, log: str) -> tuple[dict, list[str], float]:
    """A ``melodyflow`` command in a fresh process: (its ``--json`` result, stderr lines, wall seconds)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    stdout, lines, wall = run_logged([sys.executable, "-m", "melodyflow.flows.cli", *args, "--json"], log, env)
    return json.loads(stdout), lines, wall


def melodyflow_train(data_root: str, config: str, run_dir: str, hparams: str, log: str,
                     steps: int | None = None, extra: tuple[str, ...] = (),
                     evals_count: bool = False) -> tuple[dict, Timing]:
    """``melodyflow train`` (``--num-training-steps steps`` when given; ``extra`` flags as they are).
    ``evals_count``: training-only time runs to the last evaluation logged (a run that must prove a held-out
    loss), not to the last step logged."""
    limit = ["--num-training-steps", str(steps)] if steps else []
    result, lines, wall = melodyflow("train", data_root, run_dir, "--config", config, "--hparams", hparams,
                                     *limit, *extra, log=log)
    train_s, loss = training_seconds(lines, _MELODYFLOW_STEP_OR_EVAL if evals_count else _MELODYFLOW_STEP,
                                     result["step"])
    return result, Timing(steps=result["step"], wall_s=wall, train_s=train_s, last_train_loss=loss)


def imported_heldout(mag: str, out: str, data_root: str, config: str, log: str,
                     generated: str | None = None) -> dict:
    """``import-magenta`` then ``evaluate --bundle`` (and ``--generated`` when given): the evaluate result."""
    shutil.rmtree(out, ignore_errors=True)  # import-magenta refuses a non-empty OUT; this is the bench's scratch
    melodyflow("import-magenta", mag, out, log=log)
    judged = ["--generated", generated] if generated else []
    result, _, _ = melodyflow("evaluate", data_root, "--config", config, "--bundle", out, *judged,
                              "--output", out + "-evaluation", log=log)
    return result


def write_primers(data_root: str, out: str, count: int, steps: int = 16, qpm: float = 120.0) -> list[str]:
    """The first ``steps`` events of the first ``count`` eval melodies (basic_rnn's dataset, in shard order)
    that start with a note and start at least 3 in that window, as one-track MIDI files: primers neither
    model trained on, readable by Magenta's generator (which fails on several tracks) and by melodyflow's.

    One bar by default, as ``evaluate --bundle`` primes its samples: an eval tune's opening may also open a
    training tune (most Nottingham tunes are in both splits), and a primer of two bars would then make every
    output a "copy" (32 steps) before the model wrote a note."""
    import note_seq
    from note_seq.melodies_lib import Melody

    from melodyflow.models.evaluation.reference import open_dataset_dir, read_split
    from melodyflow.transforms.melodies.configs import get_config

    info = open_dataset_dir(os.path.join(data_root, "melodies", "basic_rnn"))
    split = read_split(info, "eval", get_config("basic_rnn"))
    os.makedirs(out, exist_ok=True)
    paths = []
    for events in split.events:
        window = [int(e) for e in events[:steps]]
        if len(paths) == count:
            break
        if len(window) < steps or window[0] < 0 or sum(e >= 0 for e in window) < 3:
            continue
        path = os.path.join(out, f"primer{len(paths) + 1}.mid")
        note_seq.sequence_proto_to_midi_file(Melody(window).to_sequence(qpm=qpm), path)
        paths.append(path)
    if len(paths) < count:
        raise SystemExit(f"only {len(paths)} eval melodies of {data_root} make a primer; asked for {count}")
    return paths


def prepare_data_root(corpus: str, data_root: str, configs: list[str], log: str) -> None:
    """Ingest ``corpus`` into ``data_root`` and build each config's dataset as Magenta's SequenceExamples
    (skipped by melodyflow itself when already complete)."""
    melodyflow("ingest", corpus, data_root, "--workers", "1", log=log)
    for config in configs:
        melodyflow("dataset", data_root, "--config", config, "--workers", "1", "--format", "sequence-example",
                   log=log)


def load_average() -> float:
    return round(os.getloadavg()[0], 1)
