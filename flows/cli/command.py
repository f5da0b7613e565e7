"""What a ``melodyflow`` subcommand is, and the two ways it can refuse to do what was asked."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


class UsageError(ValueError):
    """A bad invocation, found before any work starts: the message says what is wrong and what to do.
    The CLI prints it as one line and exits with status 2."""


class CommandFailed(Exception):
    """The command ran but did not produce what was asked (every primer failed, say): exit status 1,
    after the result was printed, with this one-line reason."""


def no_failure(result: dict) -> str | None:
    return None


def no_check(args: argparse.Namespace) -> None:
    return None


@dataclass(frozen=True)
class Command:
    """One subcommand: its help, its arguments, what it runs and how its result reads.

    ``check`` looks at the invocation (raising :class:`UsageError`) before Prefect is imported or its
    API started, so a mistake costs a second; ``run`` then starts the flow and returns its result.
    ``show`` prints that result for a person (``--json`` prints it as it is). ``failure`` says why a
    completed result is still a failure of the command, or None. ``uses_prefect_api``: whether ``run``
    starts flows, and so needs a Prefect API (see :mod:`melodyflow.flows.local_server`).
    """

    name: str
    summary: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict]
    show: Callable[[dict], None]
    check: Callable[[argparse.Namespace], None] = no_check
    failure: Callable[[dict], str | None] = no_failure
    uses_prefect_api: bool = True
