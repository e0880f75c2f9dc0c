"""pymesh.tui — the live pane: a Textual view of one node's peers, names, traffic
and processes (Erlang's ``observer``, in a terminal).

Three ways to open it:

* ``await observer()`` — from the shell (or any code on a started node's loop):
  the pane for this node, on this terminal; it returns when you quit.
  ``await observer("b@vm")`` watches another node through this one.
* ``pymesh tui NODE@HOST [--cookie C] [--epmd-port P]`` — from another
  terminal: attaches as a *hidden* node that connects to nothing else, so no
  ``Node.list()`` in the cluster changes.
* over SSH — :func:`serve_pty` runs ``pymesh tui`` for a node on a
  pseudo-terminal of its own and bridges it to any byte stream (an SSH
  channel, see :func:`ssh_session`).

The pane reads its node through a *source* (:mod:`pymesh.tui._source`): the
same snapshots (:mod:`pymesh.tui._snapshot`) whether the node is this process
or another one reached with ``rpc_call``. Registries plug into the Names pane
through :func:`add_name_provider`. Nothing below the faces imports this
package; importing it does not import Textual until a pane opens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._names import NameProvider
from ._names import add_provider as add_name_provider
from ._names import remove_provider as remove_name_provider

if TYPE_CHECKING:
    from ._source import Source

__all__ = [
    "observer",
    "run_app",
    "serve_pty",
    "ssh_session",
    "NameProvider",
    "add_name_provider",
    "remove_name_provider",
]


async def run_app(source: Source, *, interval: float = 0.5, freeze_gc: bool = False, **run_options: Any) -> None:
    """Run the pane over ``source`` on the running loop until the user quits.

    ``freeze_gc`` is for a process that runs nothing but the pane (see
    :class:`~pymesh.tui.app.ObserverApp`).
    """
    from .app import ObserverApp

    await ObserverApp(source, interval=interval, freeze_gc=freeze_gc).run_async(**run_options)


async def observer(node: str | None = None, *, interval: float = 0.5) -> None:
    """Open the pane on this terminal; return when the user quits (``q``).

    Without ``node``, shows this node (which must be started:
    :class:`pymesh.NotAlive` otherwise). With ``node``, shows that node as
    seen through this one (connecting to it if needed). Runs on the running
    event loop with Textual's ``App.run_async``; the caller (the shell) must
    leave the terminal to it meanwhile.
    """
    from pymesh import Node

    from ._source import LocalSource, RemoteSource

    Node.port()  # NotAlive, with its message, before the terminal is taken
    source: Source = LocalSource() if node is None or node == Node.self() else RemoteSource(node)
    await run_app(source, interval=interval)


def __getattr__(name: str) -> Any:
    # serve_pty and ssh_session pull in pty handling only when asked for
    if name in ("serve_pty", "ssh_session"):
        from . import _pty

        return getattr(_pty, name)
    raise AttributeError(f"module 'pymesh.tui' has no attribute {name!r}")
