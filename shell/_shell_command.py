"""``pymesh shell``: an iex-like REPL on a live node.

``pymesh shell --sname node1`` starts node ``node1@<host>`` and opens the
prompt ``pymesh(node1@vm)1>`` on it; without a name the shell starts
undistributed (``pymesh(1)>``) and ``Node.start("node1")`` names it later. It
takes the flags of ``pymesh run`` (``--cookie``, ``--port``, ``--epmd-port``,
``--hidden``, ``--topology``, ``--ssh-port``, ...).

The prompt runs on the node's own event loop: while it waits for a key the node
serves connections, ticks, discovery and processes. Ctrl-C cancels the input
being typed or the one running; Ctrl-D or ``exit()`` leaves the cluster
gracefully, stopping the peers started with ``peer()``. SIGTERM and SIGHUP do
the same.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import logging
import signal
import sys
from typing import Any

from prompt_toolkit.application.current import create_app_session
from prompt_toolkit.input import create_input
from prompt_toolkit.output import create_output

import pymesh
from pymesh import Node

from ._eval import Evaluator, install_interrupt_handler
from ._host import NodeHost
from ._namespace import session_namespace
from ._output import NodeConsole, Sink, install, set_fallback
from ._repl import LocalBackend, Repl

__all__ = ["run_shell"]


def _write_stdout(text: str) -> None:
    out = sys.__stdout__
    if out is not None:
        out.write(text)
        out.flush()


async def _shell(args: argparse.Namespace) -> int:
    install()
    host = NodeHost(args)
    await host.start()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for signum in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, main.cancel)
    undo: Any = None
    evaluator: Evaluator | None = None
    try:
        with create_app_session(input=create_input(sys.__stdin__), output=create_output(sys.__stdout__)):
            sink = Sink(loop, _write_stdout, context=contextvars.copy_context())
            set_fallback(sink)
            ns: dict[str, Any] = {}
            evaluator = Evaluator(ns, name="shell", sink=sink, label="shell")
            ns.update(session_namespace(evaluator.value, remote=False))
            await evaluator.open()
            undo = install_interrupt_handler(terminal=evaluator)
            where = f"on {Node.self()}" if Node.alive() else "(not distributed: Node.start(\"name\") names it)"
            banner = (
                f"pymesh {pymesh.__version__} shell {where}, {pymesh.loop_name()} — "
                "h() for help, Ctrl-C cancels, Ctrl-D or exit() leaves"
            )
            await Repl(LocalBackend(evaluator), sink, banner=banner, epmd_port=host.epmd_port).run()
    except asyncio.CancelledError:
        pass  # SIGTERM / SIGHUP: leave as Ctrl-D does
    finally:
        set_fallback(None)
        if undo is not None:
            undo()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        if evaluator is not None:
            await evaluator.close()
        await host.close()
    return 0


def run_shell(args: argparse.Namespace) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("pymesh shell: needs a terminal (for scripts: pymesh rpc NODE EXPR, or ssh host EXPR)", file=sys.stderr)
        return 1
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    # The node's log goes to this terminal, above the prompt, whoever logs.
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=NodeConsole())
    return int(pymesh.run(_shell(args)))
