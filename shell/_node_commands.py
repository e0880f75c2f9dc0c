"""The node commands of the CLI: ``pymesh run`` and ``pymesh rpc``.

``pymesh run --sname NAME`` is a headless node, as ``erl -sname NAME -noshell``:
it serves until SIGTERM or SIGINT, then leaves gracefully (peers see nodedown
``disconnect``; the port mapper forgets the name). With ``--ssh-port P`` it also
serves the shell over SSH (see :mod:`._ssh`); ``pymesh rpc`` evaluates in the
shell's namespace on it (see :mod:`._namespace`).

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
from collections.abc import Awaitable, Callable
from typing import Any

import pymesh
from pymesh import Node, RpcError

__all__ = [
    "add_node_flags",
    "add_tls_flags",
    "node_options",
    "dist_options",
    "export_tls_env",
    "configure_run",
    "run_node",
    "configure_rpc",
    "run_rpc",
    "configure_discovery",
    "run_discovery",
]


def _size(text: str) -> int:
    """``8388608``, ``8M``, ``512K``, ``1G`` (powers of 1024) -> bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    try:
        n = int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r} (e.g. 8388608, 8M, 512K)") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"a size must be positive, not {text!r}")
    return n


def add_tls_flags(parser: argparse.ArgumentParser) -> None:
    """The TLS flags of every command that speaks distribution (see ``pymesh.TLSConfig``)."""
    tls = parser.add_argument_group("TLS distribution (all three files, or none; default: $PYMESH_TLS_*)")
    tls.add_argument("--tls-cert", metavar="PEM", default=None, help="this node's certificate (chain)")
    tls.add_argument("--tls-key", metavar="PEM", default=None, help="the certificate's private key")
    tls.add_argument("--tls-ca", metavar="PEM", default=None, help="the CA that signs every node's certificate")
    tls.add_argument(
        "--tls-no-verify-hostname",
        action="store_true",
        help="do not check that a dialed node's certificate names the host of its node name",
    )


def dist_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for ``pymesh.start`` from ``--dist-buf-busy-limit``, if given."""
    limit = getattr(args, "dist_buf_busy_limit", None)
    return {} if limit is None else {"dist_buf_busy_limit": limit}


def export_tls_env(args: argparse.Namespace) -> None:
    """Put :func:`add_tls_flags`' values in ``$PYMESH_TLS_*``.

    That is where ``pymesh.start`` looks when it is given no ``tls=`` (as it
    looks for the cookie in ``$PYMESH_COOKIE``), so one call serves every way a
    command starts a node — ``Node.start`` typed at the shell, the pane of
    ``tui``, the child processes of ``bench`` and ``peer()``, which inherit it:
    the peers of a TLS node speak TLS too. ``pymesh.start`` raises
    ``ConfigError`` when only some of the three files are given.
    """
    for flag, var in (("tls_cert", "PYMESH_TLS_CERT"), ("tls_key", "PYMESH_TLS_KEY"), ("tls_ca", "PYMESH_TLS_CA")):
        value = getattr(args, flag, None)
        if value:
            os.environ[var] = os.path.abspath(value)
    if getattr(args, "tls_no_verify_hostname", False):
        os.environ["PYMESH_TLS_VERIFY_HOSTNAME"] = "0"


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
    parser.add_argument(
        "--topology", metavar="FILE", default=None, help="discovery topologies (TOML; default: topologies.toml in the config dir, if any)"
    )
    parser.add_argument(
        "--ssh-port", type=int, default=None, metavar="P", help="serve the shell over SSH on port P (0: any free port)"
    )
    parser.add_argument(
        "--ssh-host", default=None, metavar="ADDR", help="address the SSH server listens on (default: loopback for a loopback host name, else all)"
    )
    parser.add_argument(
        "--authorized-keys", default=None, metavar="FILE", help="public keys allowed over SSH (default: <config dir>/pymesh/authorized_keys)"
    )
    parser.add_argument(
        "--dist-buf-busy-limit",
        type=_size,
        default=None,
        metavar="BYTES",
        help="bytes queued for one peer before its connection is busy (default 8M; as erl +zdbbl)",
    )
    add_tls_flags(parser)
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
        **dist_options(args),
    }


def _logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)


# --- pymesh run -------------------------------------------------------------------------


def configure_run(parser: argparse.ArgumentParser) -> None:
    add_node_flags(parser)
    # For peer(): the node leaves when its stdin closes, i.e. when the shell that
    # started it is gone, however it went.
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)


async def _run_node(args: argparse.Namespace) -> None:
    from ._host import NodeHost
    from ._output import install

    if args.ssh_port is not None:
        install()  # print() in an SSH session goes to that session
    host = NodeHost(args)
    full = await host.start()
    try:
        print(f"node {full} ready on port {Node.port()}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if args.exit_with_parent:
            _stop_on_stdin_eof(loop, stop)
        await stop.wait()
    finally:
        await host.close()


def _stop_on_stdin_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            stop.set()

    loop.add_reader(fd, readable)


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
    add_tls_flags(parser)


async def _as_hidden_node(
    command: str, args: argparse.Namespace, work: Callable[[], Awaitable[int]]
) -> int:
    """Start a hidden, non-transitive node, connect to ``args.node``, run ``work``.

    The shape every "ask a running node" command shares (``rpc``, ``discovery``):
    nobody's ``Node.list()`` changes, and an unreachable node or a wrong cookie is
    one line on stderr and exit status 1.
    """
    host = args.node.partition("@")[2]
    me = f"{command}{os.getpid()}"
    await pymesh.start(
        f"{me}@{host}" if host else me,
        cookie=args.cookie,
        hidden=True,
        epmd_port=args.epmd_port,
        connect_all=False,
        **dist_options(args),
    )
    try:
        if not await Node.connect(args.node, timeout=min(args.timeout, 10.0)):
            reason = Node.down_reason(args.node) or "unreachable"
            print(
                f"pymesh {command}: cannot connect to {args.node} ({reason}; is it up, and is the cookie right?)",
                file=sys.stderr,
            )
            return 1
        try:
            return await work()
        except RpcError as e:
            print(f"pymesh {command}: {e}", file=sys.stderr)
            return 1
    finally:
        await pymesh.stop()


def _full_node_name(node: str) -> str:
    return node if "@" in node else f"{node}@{socket.gethostname().split('.')[0]}"


async def _rpc(args: argparse.Namespace) -> int:
    async def work() -> int:
        _, text = await pymesh.rpc_eval(args.node, args.expr, timeout=args.timeout)
        print(text)
        return 0

    return await _as_hidden_node("rpc", args, work)


def run_rpc(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="pymesh rpc: %(message)s")
    args.node = _full_node_name(args.node)
    return pymesh.run(_rpc(args))


# --- pymesh discovery ------------------------------------------------------------------


def configure_discovery(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("node", metavar="NODE", help="the node to ask, NAME@HOST")
    parser.add_argument("--cookie", help="cookie (default: $PYMESH_COOKIE or the cookie file)")
    parser.add_argument("--epmd-port", type=int, default=None, help="port mapper port")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds to wait (default 15)")
    add_tls_flags(parser)


_STATES_EXPR = (
    "[(s.name, s.strategy, s.last_poll.isoformat() if s.last_poll else None, sorted(s.nodes_found), "
    "sorted(s.connected), s.last_error, s.restarts) "
    "for s in __import__('pymesh.services.discovery', fromlist=['states']).states()]"
)


async def _discovery(args: argparse.Namespace) -> int:
    async def work() -> int:
        rows, _ = await pymesh.rpc_eval(args.node, _STATES_EXPR, timeout=args.timeout)
        if not rows:
            print(f"{args.node} runs no discovery topology")
        for name, strategy, last_poll, found, connected, error, restarts in rows:
            print(f"{name} ({strategy})")
            print(f"  last poll:  {last_poll or 'never'}")
            print(f"  found:      {', '.join(found) or '-'}")
            print(f"  connected:  {', '.join(connected) or '-'}")
            print(f"  last error: {error or '-'}")
            if restarts:
                print(f"  restarts:   {restarts}")
        return 0

    return await _as_hidden_node("discovery", args, work)


def run_discovery(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="pymesh discovery: %(message)s")
    args.node = _full_node_name(args.node)
    return pymesh.run(_discovery(args))
