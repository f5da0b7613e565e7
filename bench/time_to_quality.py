"""Time to quality: melodyflow reaches the held-out loss Magenta 2.1.4 reaches after N steps — in what share
of Magenta's time?

    .venv/bin/python bench/time_to_quality.py [--corpora demo,nottingham] [--magenta-steps 300]
        [--magenta-hparams 'batch_size=128,rnn_layer_sizes=[128,128]'] [--config music_transformer]
        [--hparams SPEC] [--eval-every 50] [--max-steps 20000] [--data-root CORPUS=DIR] [--scratch DIR]
        [--magenta-venv DIR] [--json ROWS.json]

For each corpus, on one melodyflow basic_rnn dataset (``dataset --format sequence-example``; music_transformer
reads the same records, so the losses are over the same examples and labels):

1. Magenta trains basic_rnn for ``--magenta-steps`` steps at its default hparams (``melody_rnn_train``).
2. Its held-out loss L on the eval split, in Magenta's own session (``_magenta_heldout_probe``), checked
   against ``import-magenta`` + ``evaluate --bundle`` (the two must agree; the script stops if they differ
   by more than 1e-3).
3. melodyflow trains ``--config`` with ``train --stop-at-eval-loss L --eval-every K``: it stops at the first
   evaluation at or below L (``--max-steps`` caps it).

Both trainers run as whole processes, one after the other, never side by side.  *Whole process*: the
command's wall time from start to exit (interpreter, imports, Prefect for melodyflow, graph set-up, the steps,
the last checkpoint and bundle; for melodyflow also every evaluation on the way, which is how it knows it has
reached L; Magenta evaluates nothing).  *Training only*: from each trainer's own step log (every 10 steps), the
time from the first step logged to the last step logged (Magenta) or to the evaluation that reached L
(melodyflow, so its evaluations count), scaled to all the steps.  The machine is shared: the load average
(1 minute, at the start and end of each process) is printed with each row.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _magenta_reference import (DEFAULT_VENV, Magenta, imported_heldout, load_average,  # noqa: E402
                                melodyflow_train, prepare_data_root)
from magenta_comparison import corpus_dir  # noqa: E402

MAGENTA_HPARAMS = "batch_size=128,rnn_layer_sizes=[128,128]"  # Magenta's basic_rnn defaults, stated
TARGET = 0.2  # the goal: at most a fifth of Magenta's time


def magenta_side(magenta: Magenta, root: str, work: str, args: argparse.Namespace) -> dict:
    run_dir = os.path.join(work, "magenta-run")
    shutil.rmtree(run_dir, ignore_errors=True)
    load = load_average()
    timing = magenta.train(root, "basic_rnn", run_dir, args.magenta_hparams, args.magenta_steps)
    load_end = load_average()
    mag = magenta.bundle("basic_rnn", run_dir, args.magenta_hparams, os.path.join(work, "basic_rnn.mag"))
    session = magenta.heldout(mag, root, "basic_rnn", os.path.join(work, "magenta-heldout.json"))
    imported = imported_heldout(mag, os.path.join(work, "magenta-imported"), root, "basic_rnn", magenta.log)
    via_import = imported["heldout"]["loss"]
    if abs(via_import - session["loss"]) > 1e-3:
        raise SystemExit(f"Magenta's held-out loss {session['loss']:.5f} (its session) and {via_import:.5f} "
                         "(imported) disagree: the measurement is broken, no comparison made")
    return {"steps": args.magenta_steps, "wall_s": timing.wall_s, "train_s": timing.train_s,
            "loss": session["loss"], "loss_via_import": via_import, "eval_melodies": session["melodies"],
            "load": (load, load_end)}


def melodyflow_side(root: str, work: str, target: float, args: argparse.Namespace) -> dict:
    run_dir = os.path.join(work, "melodyflow-run")
    shutil.rmtree(run_dir, ignore_errors=True)
    extra = ("--stop-at-eval-loss", f"{target:.6f}", "--eval-every", str(args.eval_every))
    load = load_average()
    result, timing = melodyflow_train(root, args.config, run_dir, args.hparams, os.path.join(work, "melodyflow.log"),
                                      args.max_steps, extra, evals_count=True)
    return {"config": args.config, "steps": result["step"], "stop_reason": result["stop_reason"],
            "wall_s": timing.wall_s, "train_s": timing.train_s, "loss": result["eval_metrics"]["loss"],
            "reached": result["eval_metrics"]["loss"] <= target, "load": (load, load_average())}


def measure(corpus: str, root: str, magenta: Magenta, args: argparse.Namespace) -> dict:
    work = os.path.join(args.scratch, corpus)
    os.makedirs(work, exist_ok=True)
    mag = magenta_side(magenta, root, work, args)
    ours = melodyflow_side(root, work, mag["loss"], args)
    row = {"corpus": corpus, "magenta": mag, "melodyflow": ours,
           "ratio_wall": ours["wall_s"] / mag["wall_s"],
           "ratio_train": ours["train_s"] / mag["train_s"] if ours["train_s"] and mag["train_s"] else None}
    print_rows([row])
    return row


def _load(pair: tuple[float, float]) -> str:
    return f"{pair[0]:g}–{pair[1]:g}"


def print_rows(rows: list[dict]) -> None:
    print("| corpus | Magenta basic_rnn steps | its held-out loss L | Magenta wall s | Magenta training s | load | "
          "melodyflow config | steps to loss ≤ L | its loss | melodyflow wall s | melodyflow training s | load | "
          "wall ratio | training ratio |")
    print("|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        m, o = r["magenta"], r["melodyflow"]
        reached = "" if o["reached"] else " (not reached)"
        train_ratio = f"{r['ratio_train']:.3f}" if r["ratio_train"] is not None else "—"
        print(f"| {r['corpus']} | {m['steps']} | {m['loss']:.4f} | {m['wall_s']:.1f} | {m['train_s']:.1f} | "
              f"{_load(m['load'])} | {o['config']} | {o['steps']}{reached} | {o['loss']:.4f} | {o['wall_s']:.1f} | "
              f"{o['train_s']:.1f} | {_load(o['load'])} | **{r['ratio_wall']:.3f}** | **{train_ratio}** |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", default="demo,nottingham", help="demo, nottingham or corpus directories")
    parser.add_argument("--magenta-steps", type=int, default=300)
    parser.add_argument("--magenta-hparams", default=MAGENTA_HPARAMS)
    parser.add_argument("--config", default="music_transformer", help="melodyflow's config (any)")
    parser.add_argument("--hparams", default="{}", help="melodyflow's hparams (default: the config's own)")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=20000)
    parser.add_argument("--data-root", action="append", default=[], metavar="CORPUS=DIR",
                        help="DATA_ROOT for a corpus (default: SCRATCH/<corpus>/data); ingested and built if needed")
    parser.add_argument("--scratch", default="/tmp/melodyflow-time-to-quality")
    parser.add_argument("--magenta-venv", default=DEFAULT_VENV)
    parser.add_argument("--json", default=None, help="also write every row here")
    args = parser.parse_args()
    magenta = Magenta(os.path.abspath(args.magenta_venv), os.path.join(args.scratch, "magenta.log"))
    os.makedirs(args.scratch, exist_ok=True)
    rows, started = [], time.monotonic()
    for corpus in args.corpora.split(","):
        name = os.path.basename(corpus.rstrip("/"))
        root = dict(d.split("=", 1) for d in args.data_root).get(corpus) or os.path.join(args.scratch, name, "data")
        prepare_data_root(corpus_dir(corpus), root, ["basic_rnn"], os.path.join(args.scratch, "prepare.log"))
        rows.append(measure(name, root, magenta, args))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=1)
    print(f"\nAll rows ({time.monotonic() - started:.0f} s; {os.cpu_count()} cores; Magenta basic_rnn "
          f"{args.magenta_hparams}; melodyflow {args.config} {args.hparams}, evaluated every {args.eval_every} "
          f"steps; goal: ratio <= {TARGET}):\n")
    print_rows(rows)
    return 0 if all(r["melodyflow"]["reached"] and r["ratio_wall"] <= TARGET for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
