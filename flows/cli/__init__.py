"""The ``melodyflow`` command line: thin wrappers that check the invocation, run a Prefect flow and print
its result.

One module per subcommand defines a :class:`~melodyflow.flows.cli.command.Command`; :mod:`.app` lists
them. Adding a subcommand is a module with its arguments and a ``run`` function, and one line in
``app.COMMANDS``.
"""

from melodyflow.flows.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
