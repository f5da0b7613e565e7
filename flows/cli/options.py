"""Argument building blocks shared by the subcommands.

A flag that sets a field of a stage's frozen settings dataclass takes its default from that dataclass
(:func:`add_setting`), so each default lives in one place and ``--help`` always shows the real one.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
from collections.abc import Callable
from typing import Any, NoReturn

EPILOG = """\
Paths may be local directories or fsspec URLs (gs://bucket/prefix, s3://bucket/prefix); set \
STORAGE_EMULATOR_HOST to use a GCS emulator for gs:// URLs.

Flows report to the Prefect API that PREFECT_API_URL names; without one, to a local Prefect server that \
the first command starts in the background and later commands reuse (`melodyflow server --help`).

--debug shows tracebacks and third-party warnings."""


class HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions and epilogs to the terminal, paragraph by paragraph (blank-line separated)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
        return "\n\n".join(textwrap.fill(p, width, initial_indent=indent, subsequent_indent=indent)
                           for p in paragraphs if p)


class Parser(argparse.ArgumentParser):
    """An argument error is one line on stderr (what is wrong, where to read more) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def default_of(settings_class: type, name: str) -> Any:
    """The default of field ``name`` of a dataclass: the one place that default is written."""
    for f in dataclasses.fields(settings_class):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            break
    raise LookupError(f"{settings_class.__name__}.{name} has no default")


def _shown(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def add_setting(parser: argparse.ArgumentParser, flag: str, settings_class: type, name: str, *,
                help: str, scale: float = 1, **kwargs: Any) -> None:  # noqa: A002 - argparse's name
    """A flag for ``settings_class.name``; ``scale`` converts the field's unit into the flag's
    (bytes → MB: ``scale=2**20``)."""
    default = default_of(settings_class, name)
    if scale != 1:
        default = default / scale
    parser.add_argument(flag, default=default, help=f"{help} (default: {_shown(default)})", **kwargs)


def at_least(minimum: int):
    """An argparse type: an integer not below ``minimum``, with an error that says so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def float_where(accepts: Callable[[float], bool], requirement: str, name: str) -> Callable[[str], float]:
    """An argparse type: a number that ``accepts`` (NaN never does), else ``requirement`` in the error."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"{requirement}, got {text}")
        return value

    parse.__name__ = name
    return parse


positive_float = float_where(lambda v: v > 0, "must be positive", "positive_float")
non_negative_float = float_where(lambda v: v >= 0, "must be 0 or more", "non_negative_float")


def seconds_or_zero(text: str) -> float:
    """Seconds >= 0, where 0 turns a limit off (``--sequence-timeout``, ``--storage-deadline``)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0 (0: no limit), got {text!r}")
    return value


def megabytes(text: str) -> int:
    """A whole number of MB, at least 256 (``--memory-limit-mb``)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 256:
        raise argparse.ArgumentTypeError(f"expected a whole number of MB >= 256, got {text!r}")
    return value


def config_names() -> tuple[str, ...]:
    from melodyflow.transforms.melodies.configs import CONFIG_NAMES  # light: note-seq loads only to encode

    return CONFIG_NAMES


def add_audio_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-audio", dest="audio", action="store_false",
                        help="write no WAV files (by default each output gets one, from FluidSynth when installed, "
                             "else from the bundled General MIDI soundfont)")


def add_config_arg(parser: argparse.ArgumentParser, what: str, from_parent: bool = False) -> None:
    """``from_parent``: the default is None, read as the --init-from bundle's config, else the default."""
    from melodyflow.flows.settings import DEFAULT_CONFIG

    parser.add_argument("--config", default=None if from_parent else DEFAULT_CONFIG, choices=config_names(),
                        help=f"model configuration {what} (default: {DEFAULT_CONFIG}"
                             + (", or the --init-from bundle's)" if from_parent else ")")
                             + "; music_transformer shares basic_rnn's dataset")


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_training_limit_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--time-budget", type=positive_seconds, default=None, metavar="SECONDS",
                        help="stop training after this many seconds of this run (start-up included), then "
                             "evaluate, checkpoint and export a bundle; the summary gives the step reached")
    parser.add_argument("--init-from", default=None, metavar="BUNDLE_OR_RUN_DIR",
                        help="fine-tune: start from this bundle's weights (or a RUN_DIR's latest bundle) with a "
                             "fresh optimizer at step 0; same config and encoding required, architecture kept")


def config_for(args: argparse.Namespace) -> str:
    """``--config``, else the --init-from parent's config, else the default; checks the parent early."""
    from melodyflow.flows.settings import DEFAULT_CONFIG

    if not args.init_from:
        return args.config or DEFAULT_CONFIG
    from melodyflow.models.training.fine_tune import FineTuneError, open_parent

    parent = open_parent(args.init_from)
    if args.config and args.config != parent.config:
        raise FineTuneError(f"--init-from {parent.url} is a {parent.config} bundle, not {args.config}; "
                            f"train with --config {parent.config} or choose another bundle")
    return parent.config


def add_workers_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=at_least(1), default=None, metavar="N",
                        help="parallel worker processes (default: the number of CPUs, but one for jobs "
                             "too small to gain from more); on the direct runner N>1 uses Beam's "
                             "multi-processing mode")


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    add_workers_arg(parser)
    parser.add_argument("--runner", choices=("direct", "dask", "dataflow"), default="direct",
                        help="Beam runner for the data plane (default: direct, i.e. this machine)")
    parser.add_argument("--runner-option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra runner option, repeatable: e.g. scheduler=tcp://host:8786 (dask); "
                             "project=..., region=..., temp_location=gs://... (dataflow)")


def add_storage_deadline_arg(parser: argparse.ArgumentParser, default: Any = None) -> None:
    """``--storage-deadline``, before the subcommand or among its flags (there ``default`` is
    ``argparse.SUPPRESS``, so that leaving it out keeps a value given before the subcommand)."""
    parser.add_argument("--storage-deadline", type=seconds_or_zero, default=default, metavar="SECONDS",
                        help="give up on a failing storage call this long after its first attempt (default: "
                             "30, or MELODYFLOW_STORAGE_DEADLINE_S; 0: no retries)")


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """Flags every subcommand has."""
    add_storage_deadline_arg(parser, default=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object with the result on stdout (logs stay on stderr)")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks and third-party warnings instead of one-line errors")
