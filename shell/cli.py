"""The ``pymesh`` command line (also ``python -m pymesh``).

Each subcommand is one entry in :data:`COMMANDS`: a help line, a function that
adds its arguments, and a function that runs it and returns the exit status.
Adding a command (``run``, ``rpc``, ``shell``, ...) means adding an entry.

Commands so far:

* ``pymesh epmd [--port P] [--host H]`` runs pymesh's port mapper in the
  foreground until SIGINT/SIGTERM (or ``epmd -kill``), like ``epmd``.
* ``pymesh names [--host H] [--epmd-port P]`` lists the registered names, like
  ``epmd -names``.

Errors are reported as one line on stderr, ``pymesh COMMAND: message``, with
exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pymesh import PymeshError

from pymesh.epmd import EpmdServer, default_epmd_port, names, serve_forever
from pymesh.tui.cli import configure_tui, run_tui

from ._bench import configure_bench, run_bench
from ._node_commands import (
    add_tls_flags,
    configure_discovery,
    configure_rpc,
    configure_run,
    export_tls_env,
    run_discovery,
    run_node,
    run_rpc,
)
from ._commands import configure_remsh, configure_shell, run_remsh, run_shell

__all__ = ["COMMANDS", "Command", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    """One subcommand: ``configure`` adds its arguments, ``run`` returns the exit status."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# --- pymesh epmd ------------------------------------------------------------------------


def _configure_epmd(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="port to listen on (default: $PYMESH_EPMD_PORT, $ERL_EPMD_PORT or 4369)",
    )
    parser.add_argument(
        "--host",
        default=None,
        help="also listen on this address; 0.0.0.0 or :: to serve other hosts (default: loopback only)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log registrations and requests")
    # Used by ensure_running(): the daemon writes "ready" to this fd once it listens.
    parser.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)


def _signal_ready(fd: int) -> Callable[[EpmdServer], None]:
    def on_ready(server: EpmdServer) -> None:
        try:
            os.write(fd, b"ready %d\n" % server.port)
        except OSError:
            pass  # whoever started us gave up waiting; serve anyway
        finally:
            os.close(fd)

    return on_ready


async def _serve_until_signal(port: int, host: str | None, ready_fd: int | None) -> None:
    on_ready = None if ready_fd is None else _signal_ready(ready_fd)
    serving = asyncio.ensure_future(serve_forever(port, host, on_ready=on_ready))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, serving.cancel)
    try:
        await asyncio.wait([serving])
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if not serving.cancelled():
        serving.result()  # a failure to bind surfaces here


def _run_epmd(args: argparse.Namespace) -> int:
    port = default_epmd_port(args.port)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    asyncio.run(_serve_until_signal(port, args.host, args.ready_fd))
    return 0


# --- pymesh names ------------------------------------------------------------------------


def _configure_names(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="host whose port mapper to ask (default: 127.0.0.1)")
    parser.add_argument(
        "--epmd-port",
        type=int,
        default=None,
        help="port mapper port (default: $PYMESH_EPMD_PORT, $ERL_EPMD_PORT or 4369)",
    )


def _run_names(args: argparse.Namespace) -> int:
    for name, port in asyncio.run(names(args.host, args.epmd_port)):
        print(f"name {name} at port {port}")
    return 0


def _with_tls_flags(command: Command) -> Command:
    """``command`` taking the TLS flags too (see :func:`main`)."""

    def configure(parser: argparse.ArgumentParser) -> None:
        command.configure(parser)
        add_tls_flags(parser)

    return Command(command.help, configure, command.run)


COMMANDS: dict[str, Command] = {
    "run": Command("run a headless node until SIGTERM/SIGINT", configure_run, run_node),
    "rpc": Command("evaluate a Python expression on a running node", configure_rpc, run_rpc),
    "shell": Command("an interactive shell on a node (like iex)", configure_shell, run_shell),
    "remsh": Command("attach to a node's shell over SSH (like iex --remsh)", configure_remsh, run_remsh),
    "bench": _with_tls_flags(Command("the side-by-side benchmark suite: pymesh and the BEAM, same workloads", configure_bench, run_bench)),
    "epmd": Command("run the port mapper in the foreground", _configure_epmd, _run_epmd),
    "discovery": Command("show a node's discovery topologies: last poll, nodes found, errors", configure_discovery, run_discovery),
    "names": Command("list the node names registered with a port mapper", _configure_names, _run_names),
    "tui": _with_tls_flags(Command("attach the live pane to a running node, as a hidden node", configure_tui, run_tui)),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command in :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="pymesh", description="The BEAM's distributed-node experience in Python.")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub = subcommands.add_parser(name, help=command.help, description=command.help)
        command.configure(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        export_tls_env(args)  # --tls-* reach every pymesh.start of the command, and its child nodes
        status: int = args.run(args)
    except PymeshError as exc:
        print(f"pymesh {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status
