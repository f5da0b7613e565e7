"""``melodyflow server start|status|stop``: the local Prefect server that commands share."""

from __future__ import annotations

import argparse
import sys

from melodyflow.flows.cli.command import Command, UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("start", "status", "stop"),
                        help="start it (if needed) and print its UI address, say whether it runs, or stop it")


def run(args: argparse.Namespace) -> dict:
    from melodyflow.flows import local_server

    home = local_server.prefect_home()
    if args.action != "stop" and not local_server.wants_background_server():
        raise UsageError("PREFECT_API_URL is set (or MELODYFLOW_PREFECT_SERVER=ephemeral): commands use that, "
                         "not melodyflow's local server")
    state: local_server.ServerState | None
    if args.action == "start":
        state = local_server.ensure_server(log=lambda m: print(m, file=sys.stderr))
    elif args.action == "status":
        state = local_server.running_server(home)
    else:
        state = local_server.stop_server(home)
    return {"action": args.action, "running": args.action != "stop" and state is not None,
            "url": state.url if state else None, "pid": state.pid if state else None,
            "database_dir": str(home), "log": state.log if state else None}


def show(result: dict) -> None:
    if result["action"] == "stop":
        print(f"stopped the server at {result['url']}" if result["url"] else "no melodyflow server was running")
    elif result["running"]:
        print(f"Prefect UI and API at {result['url']} (pid {result['pid']}; database in {result['database_dir']}; "
              f"log {result['log']})")
    else:
        print("no melodyflow server is running; the next command starts one")


COMMAND = Command(
    name="server",
    summary="start, show or stop the local Prefect server that melodyflow commands share",
    description="Without PREFECT_API_URL, the first melodyflow command starts a Prefect server (API and UI) "
                "on 127.0.0.1 in the background and later commands reuse it, instead of each starting "
                "Prefect's temporary server (10-15 s). Its database is Prefect's own, in PREFECT_HOME "
                "(~/.prefect/prefect.db by default). It stops by itself after MELODYFLOW_SERVER_IDLE_MINUTES "
                "(default 60) without requests. A PREFECT_API_URL of yours always wins; "
                "MELODYFLOW_PREFECT_SERVER=ephemeral gives every command Prefect's own temporary server.",
    add_arguments=add_arguments, run=run, show=show, uses_prefect_api=False)
