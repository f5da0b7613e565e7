"""Benchmark: marginal basic_rnn training steps/s, melodyflow against Magenta 2.1.4, on the same examples.

    .venv/bin/python bench/train_vs_magenta.py --data-root DATA_ROOT --magenta-venv VENV \
        [--steps 10] [--mf-steps 30] [--repeats 3] [--pin CPU]

Both sides train basic_rnn at Magenta's default hparams (batch 128, 2×128 LSTM, dropout keep 0.5, learning
rate 0.001) on DATA_ROOT's ``melodies/basic_rnn`` train split. Magenta's ``melody_rnn_train`` reads it as
one SequenceExample tfrecord that this script writes first (from either record format, with melodyflow's
own parser, so both sides see the same inputs and labels).

Each side runs as a whole fresh process for N and for 2N steps; its marginal rate is N / (t(2N) − t(N)),
so start-up (imports, graph building, the first checkpoint, melodyflow's final evaluation and bundle,
Magenta's final checkpoint) drops out. melodyflow runs ``train()`` directly (what ``melodyflow train``
runs, without Prefect's API start, which would only add noise to the start-up). The runs are interleaved
(each repeat runs both sides at N, then both at 2N, the side order alternating), so a busy spell of a
shared machine lands on both. Besides wall time, the children's CPU seconds are read (``getrusage``):
CPU seconds per step is the steadier figure under load. ``--pin CPU`` runs both sides under ``taskset -c
CPU``: one core each, the less noisy comparison on a shared machine.

Without ``--magenta-venv`` only melodyflow is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import _harness as h

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REFERENCE_RUNNER = os.path.join(h.MAGENTA_REFERENCE, "run")
# Magenta's basic_rnn defaults, spelled out so both sides train the same model whatever either's defaults.
HPARAMS = {"batch_size": 128, "rnn_layer_sizes": [128, 128], "dropout_keep_prob": 0.5, "learning_rate": 0.001,
           "clip_norm": 5}


def write_sequence_examples(data_root: str, out: str) -> int:
    """DATA_ROOT's basic_rnn train split as one Magenta SequenceExample tfrecord; returns the count."""
    import tensorflow as tf

    from melodyflow.models.training.input_pipeline import parse_fn
    from melodyflow.models.training.loop import open_training_data

    info, local = open_training_data(data_root, "basic_rnn")
    parse = parse_fn(info["format"], info["input_size"])
    count = 0
    with tf.io.TFRecordWriter(out + ".tmp") as writer:
        for inputs, labels in tf.data.TFRecordDataset(sorted(local["train"])).map(parse):
            example = tf.train.SequenceExample()
            rows = example.feature_lists.feature_list["inputs"]
            targets = example.feature_lists.feature_list["labels"]
            for row, label in zip(inputs.numpy().tolist(), labels.numpy().tolist()):
                rows.feature.add().float_list.value.extend(row)
                targets.feature.add().int64_list.value.append(label)
            writer.write(example.SerializeToString())
            count += 1
    os.replace(out + ".tmp", out)
    return count


def _timed(cmd: list[str], log: str) -> dict:
    """Wall and CPU seconds (the child and its descendants) of one command; a failure stops the bench."""
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "w") as fh:
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}; see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "load": (load + os.getloadavg()[0]) / 2}


def magenta_cmd(venv: str, runner: str, seqex: str, run_dir: str, steps: int) -> list[str]:
    hparams = ",".join(f"{k}={json.dumps(v).replace(' ', '')}" for k, v in HPARAMS.items())
    return [os.path.join(venv, "bin", "python"), runner, "magenta.models.melody_rnn.melody_rnn_train",
            "--config=basic_rnn", f"--run_dir={run_dir}", f"--sequence_example_file={seqex}",
            f"--num_training_steps={steps}", f"--hparams={hparams}"]


def melodyflow_cmd(data_root: str, run_dir: str, steps: int) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--train-once", data_root, run_dir, str(steps)]


def train_once(data_root: str, run_dir: str, steps: int) -> None:
    """One melodyflow training run, as ``melodyflow train`` runs it (eval and checkpoints only at the end)."""
    from melodyflow.models.hparams import default_hparams
    from melodyflow.models.training.loop import TrainSettings, train

    settings = TrainSettings(config="basic_rnn", num_training_steps=steps, eval_every=10**9, checkpoint_every=10**9)
    train(data_root, run_dir, settings, default_hparams("basic_rnn").override(HPARAMS))


def _marginal(small: dict, large: dict, steps: int) -> dict:
    wall = large["wall"] - small["wall"]
    return {"steps_s": steps / wall if wall > 0 else float("nan"), "cpu_per_step": (large["cpu"] - small["cpu"]) / steps,
            "startup": small["wall"] - wall, "load": (small["load"] + large["load"]) / 2}


def measure(args, scratch: str, seqex: str | None) -> dict[str, list[dict]]:
    """Per side, one marginal figure per repeat."""
    pin = ["taskset", "-c", args.pin] if args.pin is not None else []
    sides = {"melodyflow": (args.mf_steps, lambda run, n: melodyflow_cmd(args.data_root, run, n))}
    if seqex:
        sides["Magenta 2.1.4"] = (args.steps, lambda run, n: magenta_cmd(args.magenta_venv, args.magenta_runner, seqex, run, n))
    results: dict[str, list[dict]] = {name: [] for name in sides}
    for repeat in range(args.repeats):
        order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
        runs: dict[tuple[str, int], dict] = {}
        for factor in (1, 2):
            for name in order:
                steps, cmd = sides[name]
                run_dir = os.path.join(scratch, f"run-{len(runs)}-{repeat}")
                log = os.path.join(scratch, f"{name.split()[0]}-{repeat}-{factor}.log")
                runs[name, factor] = _timed(pin + cmd(run_dir, steps * factor), log)
                print(f"repeat {repeat + 1}: {name} {steps * factor} steps: {runs[name, factor]['wall']:.1f} s wall, "
                      f"{runs[name, factor]['cpu']:.1f} CPU s, load {runs[name, factor]['load']:.1f}", flush=True)
        for name, (steps, _) in sides.items():
            results[name].append({"steps": steps, **_marginal(runs[name, 1], runs[name, 2], steps)})
    return results


def _fmt(rate: float) -> str:
    return f"{rate:.3f}" if rate == rate else "—"  # NaN: the 2N run took no longer than the N run (noise)


def _median(values) -> float:
    finite = [v for v in values if v == v]
    return statistics.median(finite) if finite else float("nan")


def report(results: dict[str, list[dict]], args) -> None:
    """The table; a repeat whose 2N run was not slower than its N run (load noise) shows "—" and is left out."""
    print(f"\n{args.data_root}; " + (f"pinned to CPU {args.pin}" if args.pin is not None else "not pinned"))
    print("side | N | marginal steps/s per repeat | median | CPU s per step (median) | start-up s (median) | load")
    print("--- | --- | --- | --- | --- | --- | ---")
    medians = {}
    for name, rows in results.items():
        medians[name] = _median(r["steps_s"] for r in rows)
        print(f"{name} | {rows[0]['steps']} | {', '.join(_fmt(r['steps_s']) for r in rows)} | "
              f"**{_fmt(medians[name])}** | {_median(r['cpu_per_step'] for r in rows):.2f} | "
              f"{_median(r['startup'] for r in rows):.1f} | "
              f"{min(r['load'] for r in rows):.1f}–{max(r['load'] for r in rows):.1f}")
    if "Magenta 2.1.4" in results:
        mf, mg = results["melodyflow"], results["Magenta 2.1.4"]
        per_repeat = ", ".join(f"{a['steps_s'] / b['steps_s']:.2f}x" if a["steps_s"] == a["steps_s"]
                               and b["steps_s"] == b["steps_s"] else "—" for a, b in zip(mf, mg))
        cpu = _median(b["cpu_per_step"] for b in mg) / _median(a["cpu_per_step"] for a in mf)
        print(f"\nmelodyflow / Magenta, marginal steps/s: **{medians['melodyflow'] / medians['Magenta 2.1.4']:.2f}x** "
              f"(medians); per repeat {per_repeat}; by CPU seconds per step **{cpu:.2f}x**")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--train-once":
        train_once(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="a DATA_ROOT with melodies/basic_rnn (either format)")
    parser.add_argument("--magenta-venv", default=None, help="venv made by magenta-reference/setup.sh")
    parser.add_argument("--magenta-runner", default=REFERENCE_RUNNER, help="magenta-reference's run script")
    parser.add_argument("--steps", type=int, default=10, help="Magenta's N (it also runs 2N)")
    parser.add_argument("--mf-steps", type=int, default=30, help="melodyflow's N (it also runs 2N)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pin", default=None, metavar="CPU", help="run each side under taskset -c CPU")
    args = parser.parse_args()
    if args.magenta_venv and not os.path.exists(os.path.join(args.magenta_venv, "bin", "python")):
        parser.error(f"no Magenta venv at {args.magenta_venv}: bash ../shared/tools/magenta-reference/setup.sh DIR")
    if args.magenta_venv and not os.path.exists(args.magenta_runner):
        parser.error(f"no Magenta runner at {args.magenta_runner}: pass --magenta-runner")
    with tempfile.TemporaryDirectory(prefix="train-vs-magenta-") as scratch:
        seqex = None
        if args.magenta_venv:
            seqex = os.path.join(scratch, "training_melodies.tfrecord")
            print(f"{write_sequence_examples(args.data_root, seqex)} training examples written for Magenta",
                  flush=True)
        print(f"{os.cpu_count()} CPU cores; load average at start {os.getloadavg()[0]:.1f}", flush=True)
        report(measure(args, scratch, seqex), args)


if __name__ == "__main__":
    main()
