"""Benchmark: one basic_rnn training step on CPU under three thread settings, each in a fresh process.

    .venv/bin/python bench/lstm_row_groups.py [--steps 206] [--timed 15] [--repeats 2]

A step is Magenta's default hparams (batch 128, 2×128 LSTM, dropout keep 0.5, Adam at 0.001, clip 5) on
random one-hot inputs ``steps`` long (206: the demo corpus' mean padded batch length; 436: Nottingham's)
with random lengths for the loss mask. Settings, as ``models/training/cpu_threads.py`` and
``models/network/fused_lstm.py`` choose them:

- ``default``: TensorFlow's threads (every core for each op), one fused kernel per layer;
- ``1 thread, 1 group``: one thread per op, one kernel per layer (one core mostly idle);
- ``1 thread, row groups``: one thread per op, the batch's rows in one group per core (melodyflow's default).

Thread pools are fixed when TensorFlow's runtime starts, hence one child process per setting; the
settings are interleaved over repeats. Prints steps/s and CPU seconds per step (``getrusage``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from _harness import table

CHILD = """
import json, os, resource, sys, time
steps, timed, groups = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
from melodyflow.models.quiet_import import import_tensorflow
tf = import_tensorflow()
import keras
from melodyflow.models.network import fused_lstm
from melodyflow.models.training.cpu_threads import use_one_thread_per_op
from melodyflow.models.hparams import default_hparams
from melodyflow.models.network.melody_rnn import build_model, masked_metrics
threads = use_one_thread_per_op() if groups != "default" else "TensorFlow's default"
if groups == "one":
    fused_lstm.row_groups_here = lambda rows: 1
hp = default_hparams("basic_rnn")
model = build_model(38, 38, hp)
optimizer = keras.optimizers.Adam(hp.learning_rate)
rng = tf.random.Generator.from_seed(0)
x = tf.one_hot(rng.uniform([hp.batch_size, steps], 0, 38, dtype=tf.int32), 38)
y = rng.uniform([hp.batch_size, steps], 0, 38, dtype=tf.int32)
lengths = rng.uniform([hp.batch_size], steps // 2, steps + 1, dtype=tf.int32)
@tf.function
def step():
    with tf.GradientTape() as tape:
        sums = masked_metrics(model(x, training=True), y, lengths, 0)
        loss = sums["loss_sum"] / sums["steps"]
    grads, _ = tf.clip_by_global_norm(tape.gradient(loss, model.trainable_variables), hp.clip_norm)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss
for _ in range(3):
    step().numpy()
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(timed):
    step().numpy()
wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
print(json.dumps({"steps_s": timed / wall, "cpu_per_step": cpu / timed, "threads": threads,
                  "groups": fused_lstm.row_groups_here(hp.batch_size)}))
"""

SETTINGS = {"default": "TensorFlow's default threads, one group", "one": "1 thread per op, 1 group",
            "cores": "1 thread per op, row groups"}


def run_child(setting: str, steps: int, timed: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_NUM_")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    out = subprocess.run([sys.executable, "-c", CHILD, str(steps), str(timed), setting], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=206, help="time steps per example (default: 206)")
    ap.add_argument("--timed", type=int, default=15, help="timed training steps per run (default: 15)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} CPU cores; load average at start {os.getloadavg()[0]:.1f}; batch 128 × {args.steps} steps")
    results: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    for repeat in range(args.repeats):
        order = list(SETTINGS) if repeat % 2 == 0 else list(reversed(SETTINGS))
        for setting in order:
            results[setting].append(run_child(setting, args.steps, args.timed))
            r = results[setting][-1]
            print(f"repeat {repeat + 1}: {SETTINGS[setting]}: {r['steps_s']:.2f} steps/s, "
                  f"{r['cpu_per_step']:.3f} CPU s/step ({r['groups']} group(s))", flush=True)
    base = statistics.median(r["steps_s"] for r in results["default"])
    rows = []
    for setting, runs in results.items():
        median = statistics.median(r["steps_s"] for r in runs)
        rows.append([SETTINGS[setting], ", ".join(f"{r['steps_s']:.2f}" for r in runs), f"{median:.2f}",
                     ", ".join(f"{r['cpu_per_step']:.3f}" for r in runs), f"{median / base:.2f}x"])
    print()
    print(table(["setting", "steps/s per repeat", "median", "CPU s per step", "vs default"], rows))


if __name__ == "__main__":
    main()
