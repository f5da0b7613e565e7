"""``melodyflow demo-corpus [DIRECTORY]``: render the built-in public-domain demo corpus."""

from __future__ import annotations

import argparse
import os
import sys

from melodyflow.flows.cli import output
from melodyflow.flows.cli.command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", default=None,
                        help="output directory (default: the user cache, ~/.cache/melodyflow/...)")


def run(args: argparse.Namespace) -> dict:
    from melodyflow.transforms.ingest.demo_corpus import build_demo_corpus, default_cache_dir

    directory = args.directory or default_cache_dir()
    manifest = build_demo_corpus(directory, progress=lambda m: print(m, file=sys.stderr))
    return {"directory": os.path.abspath(directory), "files": len(manifest["files"])}


COMMAND = Command(
    name="demo-corpus",
    summary="render the built-in demo corpus to a directory",
    description="Render a few hundred public-domain tunes shipped by music21 (Essen and O'Neill folk tunes, "
                "Bach chorales) to MIDI. Deterministic; an existing complete corpus is reused.",
    add_arguments=add_arguments, run=run, show=output.show_demo_corpus, uses_prefect_api=False)
