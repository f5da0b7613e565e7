"""Benchmark: held-out loss per config after the same training time on the same dataset.

    .venv/bin/python bench/model_quality.py [--corpus DIR | --data-root DATA_ROOT] [--budget 240]
        [--configs basic_rnn,music_transformer] [--hparams CONFIG=SPEC ...] [--limit-files N]
        [--clock wall|cpu] [--repeats 1]

Each config trains in its own fresh Python process (nothing warm is shared) with ``train --time-budget``
semantics: steps until the budget is spent, then one evaluation on the whole eval split.  basic_rnn uses
Magenta's hparams (batch 128, 2x128 LSTM), music_transformer its defaults; ``--hparams`` overrides
either.  All configs read basic_rnn's records, so the losses are over the same examples and labels.

Without ``--data-root`` the corpus (default: the demo corpus; ``--limit-files N`` takes its first N
score files in sorted order) is ingested and its basic_rnn dataset built in a temporary directory.
``--clock cpu`` measures the budget in CPU seconds of the training process instead of wall-clock
seconds: on a machine shared with other work, wall-clock budgets depend on the neighbours' load; each
row reports both (and the load average), and the budget in CPU seconds is ``budget × cores``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = ("basic_rnn", "music_transformer")


def _subset(corpus: str, limit: int | None, into: str) -> str:
    if not limit:
        return corpus
    sys.path.insert(0, HERE)
    from _harness import score_files

    for rel in score_files(corpus)[:limit]:
        os.makedirs(os.path.dirname(os.path.join(into, rel)), exist_ok=True)
        shutil.copyfile(os.path.join(corpus, rel), os.path.join(into, rel))
    return into


def build_dataset(corpus: str, data_root: str) -> None:
    from melodyflow.transforms.beam.runners import RunnerConfig
    from melodyflow.transforms.ingest.batches import plan_ingest
    from melodyflow.transforms.ingest.files import IngestSettings
    from melodyflow.transforms.ingest.job import run_ingest_pipeline
    from melodyflow.transforms.melodies.configs import get_config
    from melodyflow.transforms.melodies.dataset import DatasetSettings, plan_dataset
    from melodyflow.transforms.melodies.job import run_dataset_pipeline

    run_ingest_pipeline(plan_ingest(corpus, data_root, IngestSettings(collection="bench")), RunnerConfig(workers=1))
    run_dataset_pipeline(plan_dataset(data_root, DatasetSettings(config=get_config("basic_rnn"))),
                         RunnerConfig(workers=1))


def train_one(data_root: str, run_dir: str, config: str, budget: float, clock: str, overrides: str | None) -> dict:
    """Runs in the child process: train for the budget, return the figures."""
    from melodyflow.models.hparams import default_hparams
    from melodyflow.models.training.loop import TrainSettings, train

    hp = default_hparams(config).override(overrides)
    settings = TrainSettings(config=config, num_training_steps=None, time_budget_s=budget, eval_every=10**9,
                             checkpoint_every=10**9, summary_every=10)
    wall, cpu = time.monotonic(), time.process_time()
    result = train(data_root, run_dir, settings, hp, clock=time.process_time if clock == "cpu" else time.monotonic)
    return {"config": config, "hparams": hp.to_dict(), "steps": result.step, "eval": result.eval_metrics,
            "wall_s": round(time.monotonic() - wall, 1), "cpu_s": round(time.process_time() - cpu, 1),
            "examples": result.step * hp.batch_size}


def _child(args: argparse.Namespace, config: str, data_root: str, tmp: str, repeat: int) -> dict:
    overrides = dict(h.split("=", 1) for h in args.hparams).get(config)
    cmd = [sys.executable, __file__, "--child", json.dumps({
        "data_root": data_root, "run_dir": os.path.join(tmp, f"run-{config}-{repeat}"), "config": config,
        "budget": args.budget, "clock": args.clock, "overrides": overrides})]
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    row["load"] = round((load + os.getloadavg()[0]) / 2, 1)
    return row


def _print(rows: list[dict], args: argparse.Namespace) -> None:
    unit = "CPU s" if args.clock == "cpu" else "s"
    print(f"budget {args.budget:g} {unit} per config; {os.cpu_count()} cores; load = 1-min load average "
          "(start/end mean)")
    print("config | steps | examples | wall s | CPU s | load | eval loss | perplexity | accuracy | loss vs basic_rnn")
    print("--- | --- | --- | --- | --- | --- | --- | --- | --- | ---")
    base = [r["eval"]["loss"] for r in rows if r["config"] == "basic_rnn"]
    for r in rows:
        e = r["eval"]
        rel = f"{100 * (e['loss'] / (sum(base) / len(base)) - 1):+.1f}%" if base else "-"
        print(f"{r['config']} | {r['steps']} | {r['examples']} | {r['wall_s']} | {r['cpu_s']} | {r['load']} | "
              f"{e['loss']:.4f} | {e['perplexity']:.3f} | {e['accuracy']:.4f} | {rel}")
    for r in rows:
        print(f"  {r['config']} hparams: {json.dumps(r['hparams'], sort_keys=True)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=None, help="corpus directory (default: the demo corpus)")
    parser.add_argument("--data-root", default=None, help="an existing DATA_ROOT with a basic_rnn dataset")
    parser.add_argument("--limit-files", type=int, default=None, metavar="N")
    parser.add_argument("--budget", type=float, default=240.0, metavar="SECONDS")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--hparams", action="append", default=[], metavar="CONFIG=SPEC")
    parser.add_argument("--repeats", type=int, default=1, help="runs per config, interleaved")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        job = json.loads(args.child)
        print(json.dumps(train_one(**job)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data_root = args.data_root
        if data_root is None:
            sys.path.insert(0, HERE)
            from _harness import default_corpus

            corpus = _subset(args.corpus or default_corpus(), args.limit_files, os.path.join(tmp, "corpus"))
            data_root = os.path.join(tmp, "data")
            build_dataset(corpus, data_root)
        rows = [_child(args, config, data_root, tmp, r) for r in range(args.repeats)
                for config in args.configs.split(",")]
    _print(rows, args)
    if not all(math.isfinite(r["eval"].get("loss", math.nan)) for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
