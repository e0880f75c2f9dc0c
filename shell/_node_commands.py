"""The node commands of the CLI: ``pymesh run`` and ``pymesh rpc``.

``pymesh run --sname NAME`` is a headless node, as ``erl -sname NAME -noshell``:
it serves until SIGTERM or SIGINT, then leaves gracefully (peers see nodedown
``disconnect``; the port mapper forgets the name).

``pymesh rpc NODE EXPR`` evaluates ``EXPR`` in NODE's eval namespace and prints
the ``repr`` of the result, like ``erl_call``. It connects as a *hidden* node, so
it never appears in anyone's ``Node.list()``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

import pymesh
from pymesh import Node, RpcError

__all__ = ["add_node_flags", "node_options", "configure_run", "run_node", "configure_rpc", "run_rpc"]


def add_node_flags(parser: argparse.ArgumentParser, *, name_required: bool = True) -> None:
    """The flags every node-starting command shares (``run``, ``shell``)."""
    names = parser.add_mutually_exclusive_group(required=name_required)
    names.add_argument("--sname", help="short node name: NAME becomes NAME@<short host>")
    names.add_argument("--name", help="long node name NAME@HOST (HOST defaults to the FQDN)")
    parser.add_argument("--cookie", help="cookie (default: $PYMESH_COOKIE or the cookie file)")
    parser.add_argument("--port", type=int, default=0, help="distribution port (default: any free port)")
    parser.add_argument("--epmd-port", type=int, default=None, help="port mapper port (default: $PYMESH_EPMD_PORT or 4369)")
    parser.add_argument("--hidden", action="store_true", help="start as a hidden node")
    parser.add_argument("--tick-time", type=float, default=15.0, help="seconds of silence before nodedown (≥ 1, default 15)")
    parser.add_argument(
        "--no-connect-all", dest="connect_all", action="store_false", help="do not connect transitively"
    )
    parser.add_argument("--connect", action="append", default=[], metavar="NODE", help="connect to NODE at start (repeatable)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")


def node_options(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """``(name, keyword arguments for pymesh.start)`` from parsed node flags."""
    if args.name:
        name, longnames = args.name, True
    else:
        name, longnames = args.sname, False
    return name, {
        "cookie": args.cookie,
        "hidden": args.hidden,
        "port": args.port,
        "epmd_port": args.epmd_port,
        "longnames": longnames,
        "tick_time": args.tick_time,
        "connect_all": args.connect_all,
    }


def _logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)


# --- pymesh run -------------------------------------------------------------------------


def configure_run(parser: argparse.ArgumentParser) -> None:
    add_node_flags(parser)


async def _run_node(args: argparse.Namespace) -> None:
    name, opts = node_options(args)
    full = await pymesh.start(name, **opts)
    for node in args.connect:
        if not await Node.connect(node):
            logging.getLogger("pymesh.cli").warning("could not connect to %s", node)
    print(f"node {full} ready on port {Node.port()}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await pymesh.stop()


def run_node(args: argparse.Namespace) -> int:
    _logging(args.verbose)
    pymesh.run(_run_node(args))
    return 0


# --- pymesh rpc --------------------------------------------------------------------------


def configure_rpc(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("node", metavar="NODE", help="the node to evaluate on, NAME@HOST")
    parser.add_argument("expr", metavar="EXPR", help="a Python expression or statement (awaitables are awaited)")
    parser.add_argument("--cookie", help="cookie (default: $PYMESH_COOKIE or the cookie file)")
    parser.add_argument("--epmd-port", type=int, default=None, help="port mapper port")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the answer (default 15)")


async def _rpc(args: argparse.Namespace) -> int:
    me = f"rpc{os.getpid()}"
    host = args.node.partition("@")[2]
    await pymesh.start(
        f"{me}@{host}" if host else me,
        cookie=args.cookie,
        hidden=True,
        epmd_port=args.epmd_port,
        connect_all=False,
    )
    try:
        if not await Node.connect(args.node, timeout=min(args.timeout, 10.0)):
            reason = Node.down_reason(args.node) or "unreachable"
            print(f"pymesh rpc: cannot connect to {args.node} ({reason}; is it up, and is the cookie right?)", file=sys.stderr)
            return 1
        try:
            _, text = await pymesh.rpc_eval(args.node, args.expr, timeout=args.timeout)
        except RpcError as e:
            print(f"pymesh rpc: {e}", file=sys.stderr)
            return 1
        print(text)
        return 0
    finally:
        await pymesh.stop()


def run_rpc(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="pymesh rpc: %(message)s")
    if "@" not in args.node:
        args.node = f"{args.node}@{socket.gethostname().split('.')[0]}"
    return pymesh.run(_rpc(args))
