"""``pymesh tui NODE``: attach the pane to a running node from another terminal.

This process becomes a *hidden* node (``tui<pid>@host``) with
``connect_all=False``: it connects to NODE only, and NODE lists it among its
hidden nodes, so no node's ``Node.list()`` changes. Snapshots come over
``rpc_call`` (:class:`~pymesh.tui._source.RemoteSource`); when NODE goes away
the pane says why and keeps trying until it returns.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

import pymesh

__all__ = ["configure_tui", "run_tui"]


def configure_tui(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("node", metavar="NODE", help="the node to observe, NAME@HOST (or NAME on this host)")
    parser.add_argument("--cookie", help="cookie (default: $PYMESH_COOKIE or the cookie file)")
    parser.add_argument("--epmd-port", type=int, default=None, help="port mapper port")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between refreshes (default 0.5)")


async def _attach(args: argparse.Namespace) -> int:
    from . import run_app
    from ._source import RemoteSource

    host = args.node.partition("@")[2]
    me = f"tui{os.getpid()}"
    await pymesh.start(f"{me}@{host}", cookie=args.cookie, hidden=True, epmd_port=args.epmd_port,
                       connect_all=False)
    try:
        await run_app(RemoteSource(args.node), interval=args.interval, freeze_gc=True)
    finally:
        await pymesh.stop()
    return 0


def run_tui(args: argparse.Namespace) -> int:
    # log lines would tear the pane: keep only errors, and send them to a file if asked
    log_file = os.environ.get("PYMESH_TUI_LOG")
    if log_file:
        logging.basicConfig(level=logging.INFO, filename=log_file)
    else:
        logging.basicConfig(level=logging.CRITICAL)
    if "@" not in args.node:
        args.node = f"{args.node}@{socket.gethostname().split('.')[0]}"
    if not sys.stdout.isatty():
        print("pymesh tui: needs a terminal (stdout is not a tty)", file=sys.stderr)
        return 1
    return pymesh.run(_attach(args))
