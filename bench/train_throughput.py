"""Benchmark: training steps/s and examples/s per config at Magenta's default hparams.

    .venv/bin/python bench/train_throughput.py [--data-root DATA_ROOT] [--steps 30] [--warmup 5]

Without ``--data-root`` it builds the demo corpus' datasets (all four configs) in a temporary directory
first. Each config trains ``warmup + steps`` steps in a fresh run directory; the table reports the
timed steps only (the first steps include graph tracing). Runs on whatever TensorFlow sees: CPU here,
all GPUs on a GPU worker.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

CONFIGS = ("basic_rnn", "mono_rnn", "lookback_rnn", "attention_rnn")


def _build_demo_datasets(root: str) -> None:
    from melodyflow.transforms.ingest.batches import plan_ingest
    from melodyflow.transforms.melodies.job import run_dataset_pipeline
    from melodyflow.transforms.ingest.demo_corpus import build_demo_corpus, default_cache_dir
    from melodyflow.transforms.ingest.files import IngestSettings
    from melodyflow.transforms.ingest.job import run_ingest_pipeline
    from melodyflow.transforms.melodies.configs import get_config
    from melodyflow.transforms.melodies.dataset import DatasetSettings, plan_dataset
    from melodyflow.transforms.beam.runners import RunnerConfig

    corpus = default_cache_dir()
    build_demo_corpus(corpus)
    run_ingest_pipeline(plan_ingest(corpus, root, IngestSettings(collection="demo")), RunnerConfig(workers=1))
    for name in CONFIGS:
        run_dataset_pipeline(plan_dataset(root, DatasetSettings(config=get_config(name))), RunnerConfig(workers=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()

    import tensorflow as tf

    from melodyflow.models.hparams import default_hparams
    from melodyflow.models.training.loop import TrainSettings, train

    with tempfile.TemporaryDirectory() as tmp:
        data_root = args.data_root or os.path.join(tmp, "data")
        if args.data_root is None:
            _build_demo_datasets(data_root)
        rows = []
        for name in args.configs.split(","):
            hp = default_hparams(name)
            marks: dict[int, float] = {}

            def on_progress(event, marks=marks):
                if event["event"] == "step":
                    marks[event["step"]] = time.perf_counter()

            total = args.warmup + args.steps
            settings = TrainSettings(config=name, num_training_steps=total, eval_every=10**9,
                                     checkpoint_every=10**9, summary_every=1)
            train(data_root, os.path.join(tmp, f"run-{name}"), settings, hp, progress=on_progress)
            elapsed = marks[total] - marks[args.warmup]
            steps_per_s = args.steps / elapsed
            rows.append((name, hp.batch_size, "x".join(map(str, hp.rnn_layer_sizes)), steps_per_s,
                         steps_per_s * hp.batch_size))
    devices = ", ".join(d.device_type for d in tf.config.list_logical_devices()) or "CPU"
    print(f"devices: {devices}; {os.cpu_count()} CPU cores; timed {args.steps} steps after {args.warmup} warm-up")
    print("config | batch | layers | steps/s | examples/s")
    print("--- | --- | --- | --- | ---")
    for name, batch, layers, sps, eps in rows:
        print(f"{name} | {batch} | {layers} | {sps:.2f} | {eps:.1f}")


if __name__ == "__main__":
    main()
