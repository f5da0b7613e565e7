"""``melodyflow generate BUNDLE_OR_RUN_DIR --output OUT``: melodies from a trained bundle, per primer."""

from __future__ import annotations

import argparse
import json

from melodyflow.flows.cli import checks, output
from melodyflow.flows.cli.command import Command, UsageError
from melodyflow.flows.cli.options import add_audio_arg, add_setting, at_least, non_negative_float, positive_float
from melodyflow.models.generation.sampling import GenerationOptions


def add_sampling_args(parser: argparse.ArgumentParser, defaults: type = GenerationOptions) -> None:
    """Flags shared with ``run``; ``defaults`` is the dataclass whose fields give the defaults."""
    add_setting(parser, "--num-outputs", defaults, "num_outputs", type=at_least(1), metavar="N",
                help="melodies per primer")
    add_setting(parser, "--num-steps", defaults, "num_steps", type=at_least(1), metavar="N",
                help="total length in 16th-note steps, primer included")
    add_setting(parser, "--temperature", defaults, "temperature", type=non_negative_float,
                help="softmax temperature; >1 more random, <1 more conservative, 0 greedy (the most likely "
                     "event at every step)")


def add_window_args(parser: argparse.ArgumentParser, whole_file_note: str = "") -> None:
    parser.add_argument("--primer-bars", type=at_least(1), default=None, metavar="N",
                        help="take N whole bars of each primer file (cut on its own bar lines) instead of "
                             f"all of it{whole_file_note}")
    parser.add_argument("--primer-start-bar", type=at_least(1), default=None, metavar="K",
                        help="first bar of that window, counting from 1 (default: the bar of the first note)")


def add_keep_best_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep-best", type=at_least(1), default=None, metavar="K",
                        help="generate --num-outputs candidates per primer, keep the K best-scored ones without "
                             "problems (default: keep all; every output is scored and ranked either way)")


def check_keep_best(args: argparse.Namespace) -> None:
    if args.keep_best is not None and args.keep_best > args.num_outputs:
        raise UsageError(f"--keep-best {args.keep_best} is more than --num-outputs {args.num_outputs}")


def check_window(args: argparse.Namespace) -> None:
    if args.primer_start_bar is not None and args.primer_bars is None:
        raise UsageError("--primer-start-bar needs --primer-bars N (how many bars to take from there)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="a bundle directory/URL or a RUN_DIR (its latest bundle is used)")
    parser.add_argument("--primers", default=None, metavar="GLOB_OR_URL",
                        help="primer MIDI files: a glob, a directory/prefix (recursive) or one file")
    parser.add_argument("--primer-melody", default=None, metavar="EVENTS",
                        help='a primer as Magenta events, e.g. "[60,-2,62,-2]" (-2 no event, -1 note off); '
                             "with neither primer option, a single middle C")
    parser.add_argument("--output", required=True, metavar="OUT", help="output directory or URL")
    add_window_args(parser)
    add_sampling_args(parser)
    add_setting(parser, "--beam-size", GenerationOptions, "beam_size", type=at_least(1),
                help="beams kept per output (1: plain sampling)")
    add_setting(parser, "--branch-factor", GenerationOptions, "branch_factor", type=at_least(1),
                help="branches per beam each iteration")
    add_setting(parser, "--steps-per-iteration", GenerationOptions, "steps_per_iteration", type=at_least(1),
                help="steps sampled per beam-search iteration")
    parser.add_argument("--qpm", type=positive_float, default=None,
                        help="tempo of the output (default: the primer's)")
    add_setting(parser, "--seed", GenerationOptions, "seed", type=int,
                help="random seed; same inputs and seed, same outputs")
    parser.add_argument("--continuation-only", action="store_true",
                        help="write only the generated continuation, not the primer")
    add_keep_best_arg(parser)
    add_audio_arg(parser)


def primer_events(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        events = json.loads(text)
    except json.JSONDecodeError:
        events = None
    if not isinstance(events, list) or not all(isinstance(e, int) for e in events):
        raise UsageError(f"--primer-melody must be a list like [60,-2,62,-2], got {text!r}")
    return events


def check(args: argparse.Namespace) -> None:
    from melodyflow.models.bundles.bundle import check_bundle

    primer_events(args.primer_melody)
    check_window(args)
    check_keep_best(args)
    checks.inputs_outside_output(args.primers, args.output, "--primers")
    check_bundle(args.bundle)


def run(args: argparse.Namespace) -> dict:
    from melodyflow.flows.generate import generate_melodies

    return generate_melodies(
        bundle=args.bundle, output=args.output, primers=args.primers, primer_melody=primer_events(args.primer_melody),
        num_outputs=args.num_outputs, num_steps=args.num_steps, temperature=args.temperature,
        beam_size=args.beam_size, branch_factor=args.branch_factor,
        steps_per_iteration=args.steps_per_iteration, qpm=args.qpm, seed=args.seed,
        continuation_only=args.continuation_only, primer_bars=args.primer_bars,
        primer_start_bar=args.primer_start_bar, audio=args.audio,
        keep_best=args.keep_best)


COMMAND = Command(
    name="generate",
    summary="generate melodies from a trained bundle for every primer",
    description="Generate melodies from a bundle (or RUN_DIR's latest bundle) for every primer MIDI file, in "
                "parallel: OUT/<primer-id>/<nnn>.mid, a piano-roll .png and a .wav per output (FluidSynth when "
                "installed, else the General MIDI soundfont that pretty_midi ships), OUT/index.json, and a "
                "gallery to open in a browser, OUT/index.html. Exits with status 1 when no primer succeeded.",
    add_arguments=add_arguments, check=check, run=run, show=output.show_generation,
    failure=output.generation_failure)
