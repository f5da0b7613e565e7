"""``melodyflow run [SOURCE] [DATA_ROOT]``: every stage, from score files to generated melodies."""

from __future__ import annotations

import argparse
from typing import cast

from melodyflow.flows.cli import checks, output
from melodyflow.flows.cli.command import Command
from melodyflow.flows.cli.generate import (add_keep_best_arg, add_sampling_args, add_window_args, check_keep_best,
                                           check_window)
from melodyflow.flows.cli.options import (add_audio_arg, add_config_arg, add_setting, add_training_limit_args,
                                          add_workers_arg, at_least, config_for, default_of)
from melodyflow.flows.cli.train import check_hparams
from melodyflow.flows.settings import RunSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", default=None,
                        help="corpus directory or URL (default: the demo corpus, built and cached)")
    add_setting(parser, "data_root", RunSettings, "data_root", nargs="?", help="where all outputs go")
    add_workers_arg(parser)
    add_config_arg(parser, "for the dataset and training stages", from_parent=True)
    parser.add_argument("--hparams", default=None, metavar="SPEC",
                        help="the model to train, as overrides of the config's defaults (JSON or Magenta's form; "
                             f"see `melodyflow train --help`; default: {RunSettings.hparams} for the RNNs, "
                             f"{RunSettings.transformer_hparams} for music_transformer)")
    add_setting(parser, "--num-training-steps", RunSettings, "num_training_steps", type=at_least(1), metavar="N",
                help="training steps")
    parser.add_argument("--primers", default=None, metavar="GLOB_OR_URL",
                        help="primer MIDI files for the generation stage (default: excerpts of the corpus' "
                             "first MIDI files)")
    add_window_args(parser, f" (default: {default_of(RunSettings, 'corpus_primer_bars')} bars for the corpus "
                            "excerpts, the whole file for --primers)")
    add_sampling_args(parser, RunSettings)
    add_audio_arg(parser)
    add_keep_best_arg(parser)
    add_training_limit_args(parser)


def check(args: argparse.Namespace) -> None:
    check_window(args)
    check_keep_best(args)
    args.config = config_for(args)
    if args.hparams is not None or args.init_from:
        check_hparams(args.config, None, args.hparams, args.init_from)
    if args.source is not None:
        checks.readable_source(args.source, args.data_root)
    checks.writable_data_root(args.data_root)  # last: it creates DATA_ROOT


def run(args: argparse.Namespace) -> dict:
    from melodyflow.flows.pipeline import melody_pipeline

    result = melody_pipeline(source=args.source, data_root=args.data_root, workers=args.workers, config=args.config,
                           num_training_steps=args.num_training_steps, hparams=args.hparams, primers=args.primers,
                           num_outputs=args.num_outputs, num_steps=args.num_steps, temperature=args.temperature,
                           primer_bars=args.primer_bars, primer_start_bar=args.primer_start_bar, audio=args.audio,
                             keep_best=args.keep_best, time_budget_s=args.time_budget, init_from=args.init_from)
    return cast(dict, result)  # a failed run raises its StageError instead of returning a state


COMMAND = Command(
    name="run",
    summary="run every stage: ingest, build a dataset, train a model and generate melodies",
    description="Run every stage end to end: ingest SOURCE into DATA_ROOT, build the melody dataset for "
                "--config, train a small model in DATA_ROOT/runs/, and generate melodies from primers into "
                "DATA_ROOT/generated/ (MIDI files, piano-roll PNGs, WAVs and a gallery, index.html). With no "
                "SOURCE, the built-in demo corpus is rendered and used. A stage whose outputs are complete for "
                "the same inputs and settings is skipped, so a re-run with nothing new returns in seconds.",
    add_arguments=add_arguments, check=check, run=run, show=output.show_pipeline,
    failure=output.pipeline_failure)
