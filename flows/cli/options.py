"""Argument building blocks shared by the subcommands.

A flag that sets a field of a stage's frozen settings dataclass takes its default from that dataclass
(:func:`add_setting`), so each default lives in one place and ``--help`` always shows the real one.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
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


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def config_names() -> tuple[str, ...]:
    from melodyflow.transforms.melodies.configs import CONFIGS  # light: note-seq loads only to encode

    return tuple(CONFIGS)


def add_audio_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-audio", dest="audio", action="store_false",
                        help="write no WAV files (by default each output gets one, from FluidSynth when installed, "
                             "else from the bundled General MIDI soundfont)")


def add_config_arg(parser: argparse.ArgumentParser, what: str) -> None:
    from melodyflow.flows.settings import DEFAULT_CONFIG

    parser.add_argument("--config", default=DEFAULT_CONFIG, choices=config_names(),
                        help=f"Melody RNN configuration {what} (default: {DEFAULT_CONFIG})")


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


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """Flags every subcommand has."""
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object with the result on stdout (logs stay on stderr)")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks and third-party warnings instead of one-line errors")
