"""The ``melodyflow`` parser and entry point: one registration line per subcommand in :data:`COMMANDS`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from typing import NoReturn

from melodyflow.flows.cli import checks, dataset, demo, evaluate, generate, import_magenta, ingest, run, server, train
from melodyflow.flows.cli.command import Command, UsageError
from melodyflow.flows.cli.options import EPILOG, HelpFormatter, Parser, add_output_args, add_storage_deadline_arg

COMMANDS: tuple[Command, ...] = (
    run.COMMAND,
    ingest.COMMAND,
    dataset.COMMAND,
    train.COMMAND,
    generate.COMMAND,
    evaluate.COMMAND,
    import_magenta.COMMAND,
    demo.COMMAND,
    server.COMMAND,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="melodyflow", formatter_class=HelpFormatter, epilog=EPILOG,
                    description="MIDI corpora → NoteSequences → melody datasets → trained melody RNNs → music.")
    add_storage_deadline_arg(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        child = sub.add_parser(command.name, help=command.summary, description=command.description,
                               epilog=EPILOG, formatter_class=HelpFormatter)
        command.add_arguments(child)
        add_output_args(child)
    return parser


# Warnings that say nothing about the user's data, for this process and (through the environment) for
# the Beam workers and parser processes it starts: pydub's about ffmpeg (note-seq imports pydub; audio
# is rendered with FluidSynth), pretty_midi's about meta events on tracks other than the first.
_CHILD_WARNING_FILTERS = ("ignore:Couldn't find ffmpeg:RuntimeWarning",
                          "ignore::RuntimeWarning:pretty_midi.pretty_midi")


class _NoTracebackForStorageFailures(logging.Filter):
    """A storage failure is expected (the store is down) and reported once, in one line, by
    :func:`run_command`: Prefect's run loggers keep their line but lose the traceback, and the Beam
    workers' reports of it (forwarded to the driver's job service, tracebacks inside the text) are dropped.
    Input the user must fix (exit status 2) is reported the same way: no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from melodyflow.transforms.io.storage import StorageError

        exc = record.exc_info[1] if record.exc_info else None
        failure = isinstance(exc, StorageError)
        if record.name.startswith("apache_beam"):
            return not (failure or "StorageError: " in record.getMessage())
        if failure or (exc is not None and _is_input_error(exc)):
            record.exc_info, record.exc_text = None, None
        return True


# Loggers that report a failed run or bundle: Prefect's run loggers, and Beam's (in-process runner, its
# SDK harness, and the job service that forwards multi-processing workers' logs).
_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "apache_beam.runners.common",
                "apache_beam.runners.worker.sdk_worker", "apache_beam.runners.worker.bundle_processor",
                "apache_beam.runners.portability.local_job_service")


def quiet_third_party_noise() -> None:
    warnings.filterwarnings("ignore", module="pretty_midi")
    warnings.filterwarnings("ignore", message="Couldn't find ffmpeg")
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    inherited = os.environ.get("PYTHONWARNINGS", "")
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [inherited, *_CHILD_WARNING_FILTERS]))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines
    for name in _RUN_LOGGERS:
        logging.getLogger(name).addFilter(_NoTracebackForStorageFailures())


def _is_input_error(exc: BaseException) -> bool:
    """Raised by melodyflow for input the user must fix (not a bug: its message says what to do)."""
    from melodyflow.models.bundles.bundle import BundleError
    from melodyflow.transforms.ingest.batches import EmptySourceError
    from melodyflow.transforms.melodies.dataset import IncompleteDatasetError, NoInputError

    return isinstance(exc, (UsageError, EmptySourceError, NoInputError, IncompleteDatasetError, BundleError))


def exit_status(exc: BaseException) -> int | None:
    """2 for a bad invocation or input the user must fix, 1 for a storage outage, None otherwise."""
    from melodyflow.flows.local_server import ServerStartError
    from melodyflow.transforms.io.storage import StorageError

    from melodyflow.transforms.beam.worker_deaths import WorkerDied

    if isinstance(exc, (StorageError, ServerStartError, WorkerDied)):
        return 1
    return 2 if isinstance(exc, (ValueError, FileNotFoundError)) or _is_input_error(exc) else None


def error_line(command: str, exc: BaseException) -> str:
    from melodyflow.transforms.io.storage import StorageError, redact

    if isinstance(exc, StorageError):
        return f"melodyflow {command}: storage failure, nothing was published: {exc}"
    return f"melodyflow {command}: error: {redact(str(exc))}"


def _run(command: Command, args: argparse.Namespace) -> dict:
    checks.storage_reachable(args)
    command.check(args)
    if not command.uses_prefect_api:
        return command.run(args)
    from melodyflow.flows.local_server import prefect_api

    with prefect_api(log=lambda message: print(message, file=sys.stderr)):
        return command.run(args)


def main(argv: list[str] | None = None) -> int:
    """The ``melodyflow`` command; ``argv=None`` (the console script, ``python -m``) also ends the process."""
    status = run_command(argv)
    if argv is None:
        leave(status)
    return status


def leave(status: int) -> NoReturn:
    """End the process as the interpreter would, minus tearing down every module one by one: about a
    second of a short command's time with Prefect, Beam and numba loaded, spent after its work is done
    and its outputs are published. Threads are joined and exit hooks run first (Prefect sends its last
    logs and events to the API there)."""
    import atexit
    import threading

    threading._shutdown()  # type: ignore[attr-defined]  # what interpreter shutdown calls first
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run_command(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = next(c for c in COMMANDS if c.name == args.command)
    if args.storage_deadline is not None:  # the environment reaches every worker process
        os.environ["MELODYFLOW_STORAGE_DEADLINE_S"] = repr(args.storage_deadline)
    if not args.debug:
        quiet_third_party_noise()
    try:
        result = _run(command, args)
    except Exception as exc:
        status = exit_status(exc)
        if status is None or args.debug:
            raise
        print(error_line(args.command, exc), file=sys.stderr)
        return status
    if args.json:
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    else:
        command.show(result)
    failure = command.failure(result)
    if failure:
        print(f"melodyflow {args.command}: error: {failure}", file=sys.stderr)
        return 1
    return 0
