"""``melodyflow dataset DATA_ROOT``: ingested NoteSequences → train/eval melody records for a config."""

from __future__ import annotations

import argparse

from melodyflow.flows.cli import checks, output
from melodyflow.flows.cli.command import Command, UsageError
from melodyflow.flows.cli.ingest import runner_options
from melodyflow.flows.cli.options import add_config_arg, add_runner_args, add_setting, megabytes, seconds_or_zero
from melodyflow.transforms.melodies.dataset import DatasetSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_root", help="the DATA_ROOT given to `melodyflow ingest`")
    add_config_arg(parser, "whose encoding to write")
    add_setting(parser, "--eval-ratio", DatasetSettings, "eval_ratio", type=float, metavar="R",
                help="fraction of NoteSequences (by id hash) in the eval split")
    parser.add_argument("--transpose-range", default="0:0", metavar="LO:HI",
                        help="also add copies transposed by LO..HI semitones, inclusive; copies whose "
                             "pitches leave 0-127 are dropped and counted (default: 0:0, none)")
    add_setting(parser, "--format", DatasetSettings, "format", choices=("compact", "sequence-example"),
                help="compact: labels + sparse inputs, expanded by the trainer; sequence-example: Magenta's "
                     "dense tf.train.SequenceExample")
    parser.add_argument("--keep-polyphonic-tracks", action="store_true",
                        help="take the highest note of a chord instead of discarding tracks with "
                             "simultaneous note starts (Magenta discards them)")
    parser.add_argument("--force", action="store_true",
                        help="rebuild even if a completed dataset exists for the same inputs and settings")
    add_setting(parser, "--sequence-timeout", DatasetSettings, "sequence_timeout_s", type=seconds_or_zero,
                metavar="SECONDS",
                help="give up on a NoteSequence whose melody extraction takes longer; it is dead-lettered "
                     "(reason timeout) and the build goes on (0: no limit, extract in the worker process)")
    add_setting(parser, "--memory-limit-mb", DatasetSettings, "memory_limit_mb", type=megabytes, metavar="MB",
                help="address-space cap of the extraction process (reason out_of_memory)")
    add_runner_args(parser)


def check(args: argparse.Namespace) -> None:
    from melodyflow.transforms.melodies.extraction_reference import parse_transpose_range

    try:
        parse_transpose_range(args.transpose_range)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not 0.0 <= args.eval_ratio <= 1.0:
        raise UsageError(f"--eval-ratio must be within 0..1, got {args.eval_ratio}")
    runner_options(args)
    checks.ingested_data_root(args.data_root)


def run(args: argparse.Namespace) -> dict:
    from melodyflow.flows.dataset import build_melody_dataset

    return build_melody_dataset(
        data_root=args.data_root, config=args.config, eval_ratio=args.eval_ratio,
        transpose_range=args.transpose_range, format=args.format,
        keep_polyphonic_tracks=args.keep_polyphonic_tracks, workers=args.workers, runner=args.runner,
        runner_options=runner_options(args), force=args.force, sequence_timeout_s=args.sequence_timeout,
        memory_limit_mb=args.memory_limit_mb)


COMMAND = Command(
    name="dataset",
    summary="extract melodies from ingested NoteSequences into train/eval TFRecords",
    description="Split every completed ingestion batch on tempo/time-signature changes, quantize, extract "
                "monophonic melodies with Magenta's Melody RNN rules, encode them for a config and write "
                "train/eval shards under DATA_ROOT/melodies/<config>/. The split is a hash of each "
                "NoteSequence id, so it never changes as the corpus grows.",
    add_arguments=add_arguments, check=check, run=run, show=output.show_dataset)
