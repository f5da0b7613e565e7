"""``melodyflow ingest SOURCE DATA_ROOT``: score files → a new batch of NoteSequence shards."""

from __future__ import annotations

import argparse

from melodyflow.flows.cli import checks, output
from melodyflow.flows.cli.command import Command
from melodyflow.flows.cli.options import add_runner_args, add_setting
from melodyflow.transforms.ingest.files import IngestSettings

MB = 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="corpus directory or URL prefix")
    parser.add_argument("data_root", help="output root directory or URL")
    add_runner_args(parser)
    parser.add_argument("--collection", default=None,
                        help="collection_name stored in each NoteSequence (default: SOURCE's base name)")
    add_setting(parser, "--max-file-mb", IngestSettings, "max_file_bytes", scale=MB, type=float, metavar="MB",
                help="refuse files larger than this")
    add_setting(parser, "--max-notes", IngestSettings, "max_notes", type=int, metavar="N",
                help="refuse MIDI files with more note-on events than this, counted before parsing")
    add_setting(parser, "--file-timeout", IngestSettings, "file_timeout_s", type=float, metavar="SECONDS",
                help="give up on a file whose parsing takes longer")
    add_setting(parser, "--memory-limit-mb", IngestSettings, "memory_limit_mb", type=int, metavar="MB",
                help="address-space cap of the parser process")


def runner_options(args: argparse.Namespace) -> dict[str, str]:
    """``--runner-option`` pairs, checked with the runner settings before any flow run is created."""
    from melodyflow.transforms.beam.runners import RunnerConfig, parse_runner_options

    options = parse_runner_options(args.runner_option)
    RunnerConfig(runner=args.runner, workers=args.workers or 1, options=options)
    return options


def check(args: argparse.Namespace) -> None:
    runner_options(args)
    checks.readable_source(args.source, args.data_root)
    checks.writable_data_root(args.data_root)


def run(args: argparse.Namespace) -> dict:
    from melodyflow.flows.ingest import ingest_corpus

    return ingest_corpus(
        source=args.source, data_root=args.data_root, workers=args.workers, runner=args.runner,
        runner_options=runner_options(args), collection=args.collection, max_file_mb=args.max_file_mb,
        max_notes=args.max_notes, file_timeout_s=args.file_timeout, memory_limit_mb=args.memory_limit_mb)


COMMAND = Command(
    name="ingest",
    summary="convert a MIDI/MusicXML/ABC corpus into NoteSequence TFRecord shards",
    description="Find .mid/.midi/.kar/.xml/.mxl/.abc files under SOURCE (recursively), convert new ones to "
                "NoteSequences and write them as a new batch under DATA_ROOT/notesequences/. Bad files are "
                "listed in DATA_ROOT/dead_letters/ and never stop the run. Re-running only processes files "
                "not in a completed batch.",
    add_arguments=add_arguments, check=check, run=run, show=output.show_ingest)
