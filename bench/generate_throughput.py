"""Benchmark: generation outputs/s, 16 outputs × 8 primers × 128 steps, batched vs one at a time.

    .venv/bin/python bench/generate_throughput.py [--configs basic_rnn,attention_rnn] [--bundle URL]

Without ``--bundle`` each config gets an untrained model at Magenta's default hparams (2×128 LSTM):
speed does not depend on the weights. "batched" generates a primer's 16 outputs together (what
``melodyflow generate`` does); "one at a time" calls the generator once per output, as Magenta's
generator does.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def _untrained_bundle(config: str, directory: str) -> str:
    from melodyflow.models.bundles.bundle import export_bundle
    from melodyflow.models.hparams import default_hparams
    from melodyflow.models.network.melody_rnn import build_model
    from melodyflow.transforms.melodies.configs import get_config

    cfg, hp = get_config(config), default_hparams(config)
    model = build_model(cfg.input_size, cfg.num_classes, hp)
    meta = {"config": config, "input_size": cfg.input_size, "num_classes": cfg.num_classes,
            "hparams": hp.to_dict(), "step": 0}
    return export_bundle(model, directory, meta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="basic_rnn,attention_rnn")
    parser.add_argument("--bundle", default=None)
    parser.add_argument("--primers", type=int, default=8)
    parser.add_argument("--outputs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=128)
    args = parser.parse_args()

    from melodyflow.models.generation.sampling import GenerationOptions, load_generator
    from melodyflow.models.generation.primers import primer_from_events

    primers = [primer_from_events([60 + (i % 5), -2, 62, -2, 64 + (i % 3), -2, -2, -1]) for i in range(args.primers)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bundles = [(args.bundle, args.bundle)] if args.bundle else [
            (c, _untrained_bundle(c, os.path.join(tmp, c))) for c in args.configs.split(",")]
        for name, bundle in bundles:
            generator = load_generator(bundle)
            generator.generate(primers[0].melody, GenerationOptions(num_outputs=2, num_steps=16))  # warm up
            started = time.perf_counter()
            for i, primer in enumerate(primers):
                generator.generate(primer.melody, GenerationOptions(num_outputs=args.outputs, num_steps=args.steps),
                                   seed_offset=i)
            batched = time.perf_counter() - started
            started = time.perf_counter()
            for i, primer in enumerate(primers):
                for j in range(args.outputs):
                    generator.generate(primer.melody, GenerationOptions(num_outputs=1, num_steps=args.steps),
                                       seed_offset=i * 1000 + j)
            single = time.perf_counter() - started
            total = args.primers * args.outputs
            rows.append((name, total, batched, total / batched, single, total / single))
    print(f"{args.outputs} outputs x {args.primers} primers x {args.steps} steps, {os.cpu_count()} CPU cores")
    print("config | outputs | batched s | batched outputs/s | one-at-a-time s | one-at-a-time outputs/s | speed-up")
    print("--- | --- | --- | --- | --- | --- | ---")
    for name, total, b, bps, s, sps in rows:
        print(f"{name} | {total} | {b:.1f} | {bps:.2f} | {s:.1f} | {sps:.2f} | {bps / sps:.1f}x")


if __name__ == "__main__":
    main()
