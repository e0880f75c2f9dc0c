"""The shell's namespace: pymesh's public API plus iex's helpers.

:func:`shell_namespace` builds a fresh one. It is what every shell session
starts from, and what ``pymesh rpc NODE EXPR`` evaluates in on a node started by
``pymesh shell`` or ``pymesh run`` (they install it with
``set_eval_namespace``). The helpers:

=====================  ==============================================================
``Node``               ``pymesh.Node``; ``Node.start(name)`` also applies the flags the
                       command was started with (cookie, port mapper, SSH port)
``i()``, ``i(pid)``    a table of local processes; one process in detail (a pid on
                       another node is asked there); a registered name works too
``h()``, ``h(obj)``    this help; the documentation of ``obj``
``pid("...")``         a pid from its printed form ``#PID<node@host.42.1>``
``flush()``            print and drop every message in the shell's mailbox
``nodes()``            ``Node.list()``
``peer("n2")``         start another local node as a child OS process, connected;
                       ``peer_stop("n2")`` stops it; ``peers()`` lists them
``observer()``         the live pane (``pymesh.tui``), in the local shell
``v()``, ``v(n)``      the value of the last input, or of input ``n``
``exit()``, Ctrl-D     leave the shell (``exit(pid, reason)`` is still Erlang's exit/2)
=====================  ==============================================================

plus everything in ``pymesh.__all__`` (``spawn``, ``send``, ``receive``,
``self``, ``register``, ``whereis``, ``GenServer``, ...), the registries when
the installed pymesh has them (``Registry``, ``Global``, ``PG``,
``DistributedRegistry``), and ``asyncio``.
"""

from __future__ import annotations

import asyncio
import datetime
import pydoc
import time
from collections.abc import Callable
from typing import Any

import pymesh
from pymesh import Node as _Node
from pymesh import Pid

from ._eval import LeaveShell

__all__ = ["SHELL_HELP", "Node", "Text", "process_summary", "shell_namespace"]

REGISTRY_NAMES = ("Registry", "Global", "PG", "DistributedRegistry")


class Text(str):
    """A string the shell shows as it is (not quoted), e.g. ``i()``'s table."""

    shell_plain = True

    def __repr__(self) -> str:
        return str(self)


SHELL_HELP = Text(
    """\
pymesh shell helpers (h(obj) shows obj's documentation):

  Node.start("n1")    make this a named node    Node.stop()        undistributed again
  Node.connect("n2@host")   Node.list()   nodes()   Node.ping(n)   Node.self()
  spawn(fn, *args)    self()    send(dest, msg)    await receive(pattern, timeout=s)
  register(name)      whereis(name)    registered()    processes()
  i()  i(pid)         process table / one process    pid("#PID<n@h.42.1>")
  flush()             print and drop the shell's messages
  peer("n2")          a local peer node (child OS process)   peer_stop("n2")   peers()
  v() v(n)            earlier values                 observer()   the live pane
  topologies()        discovery: each topology's last poll, nodes found, last error
  exit() or Ctrl-D    leave                           Ctrl-C      cancel the input
Top-level await works; a call to an async function is awaited for you."""
)


def _host() -> Any:
    from ._host import current_host

    return current_host()


class Node(_Node):
    """``pymesh.Node``, whose ``start``/``stop`` also do what the command's flags ask.

    ``await Node.start("node1")`` makes the shell a named node, like Elixir's
    ``Node.start/2``: with the cookie, port mapper, SSH port and topologies the
    shell was started with (keyword arguments override them; see
    ``pymesh.start``). ``await Node.stop()`` leaves the cluster.
    """

    @staticmethod
    async def start(name: str, **options: Any) -> str:
        host = _host()
        if host is None:
            return await pymesh.start(name, **options)
        full: str = await host.start_node(name, **options)
        return full

    @staticmethod
    async def stop() -> None:
        host = _host()
        if host is None:
            await pymesh.stop()
        else:
            await host.stop_node()


# --- process information ---------------------------------------------------------------------


def process_summary(pid: Pid) -> dict[str, Any] | None:
    """A local process's information as plain values (so it can cross nodes).

    Called by ``i(pid)`` on the pid's node, through ``rpc_call``. Returns None
    when the process is not alive.
    """
    info = pymesh.process_info(pid)
    if info is None:
        return None
    return {
        "pid": str(info.pid),
        "registered_name": info.registered_name,
        "label": info.label,
        "initial_call": info.initial_call,
        "status": info.status,
        "message_queue_len": info.message_queue_len,
        "links": [str(p) for p in info.links],
        "monitors": len(info.monitors),
        "monitored_by": [str(p) for p in info.monitored_by],
        "trap_exit": info.trap_exit,
        "started": info.started,
    }


def _format_summary(s: dict[str, Any]) -> Text:
    started = datetime.datetime.fromtimestamp(s["started"]).isoformat(sep=" ", timespec="seconds")
    rows = [
        ("Pid", s["pid"]),
        ("Registered name", s["registered_name"] or "-"),
        ("Label", s["label"] or "-"),
        ("Initial call", s["initial_call"]),
        ("Status", s["status"]),
        ("Message queue", s["message_queue_len"]),
        ("Links", ", ".join(s["links"]) or "-"),
        ("Monitors", s["monitors"]),
        ("Monitored by", ", ".join(s["monitored_by"]) or "-"),
        ("Trap exit", s["trap_exit"]),
        ("Started", f"{started} ({time.time() - s['started']:.1f} s ago)"),
    ]
    return Text("\n".join(f"{k + ':':<17}{v}" for k, v in rows))


def _process_table() -> Text:
    rows = [("Pid", "Name or label", "Initial call", "Status", "Queue")]
    for p in pymesh.processes():
        info = pymesh.process_info(p)
        if info is None:
            continue
        rows.append(
            (
                str(info.pid),
                info.registered_name or info.label or "",
                info.initial_call,
                info.status,
                str(info.message_queue_len),
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    lines = ["  ".join(r[c].ljust(widths[c]) for c in range(4)) + "  " + r[4] for r in rows]
    lines.append(f"{len(rows) - 1} processes on {_Node.self()}")
    return Text("\n".join(lines))


async def _remote_info(pid: Pid) -> Text:
    summary = await pymesh.rpc_call(pid.node, "pymesh.shell._namespace:process_summary", pid)
    if summary is None:
        return Text(f"{pid!r} is not alive")
    return _format_summary(summary)


def i(target: Any = None) -> Any:
    """``i()``: every local process; ``i(pid)`` or ``i("name")``: one, in detail.

    A pid on another node is asked on that node (the shell awaits the answer).
    """
    if target is None:
        return _process_table()
    if isinstance(target, str) and not target.startswith("#PID<"):
        found = pymesh.whereis(target)
        if found is None:
            return Text(f"no process is registered as {target!r}")
        target = found
    if isinstance(target, str):
        target = Pid.parse(target)
    if not isinstance(target, Pid):
        raise TypeError(f"i() takes a pid or a registered name, not {type(target).__name__}")
    if target.node != _Node.self() and target.node != "nonode@nohost":
        return _remote_info(target)
    summary = process_summary(target)
    return Text(f"{target!r} is not alive") if summary is None else _format_summary(summary)


def h(obj: Any = None) -> Text:
    """``h()``: the shell's helpers; ``h(obj)``: ``obj``'s documentation."""
    if obj is None:
        return SHELL_HELP
    renderer = pydoc.plaintext  # type: ignore[attr-defined]
    return Text(pydoc.render_doc(obj, title="%s", renderer=renderer).rstrip())


def pid(text: str | int) -> Pid:
    """A pid from its printed form (``#PID<node1@vm.42.1>`` or ``node1@vm.42.1``),
    or the local process with that number."""
    if isinstance(text, int):
        for p in pymesh.processes():
            if p.id == text:
                return p
        raise LookupError(f"no local process number {text}")
    text = text.strip()
    if not text.startswith("#PID<"):
        text = f"#PID<{text}>"
    return Pid.parse(text)


def flush() -> None:
    """Print every message in the shell's mailbox, and drop them (iex's ``flush()``)."""
    for msg in pymesh.flush_mailbox():
        print(repr(msg))


def nodes() -> list[str]:
    """The connected visible nodes (``Node.list()``)."""
    return _Node.list()


def topologies() -> list[Any]:
    """Each discovery topology's state on this node: strategy, last poll, nodes
    found, last error (``pymesh discovery NODE`` shows the same from outside)."""
    from pymesh.services import discovery

    return discovery.states()


def _peers() -> Any:
    host = _host()
    if host is not None:
        return host.peers
    global _fallback_peers
    if _fallback_peers is None:
        from ._peers import Peers

        _fallback_peers = Peers()
    return _fallback_peers


_fallback_peers: Any = None


async def peer(name: str, *args: str) -> str:
    """Start node ``name`` as a child OS process and connect to it; return its name.

    Like OTP's ``:peer.start``: same cookie and port mapper, a short name gets
    this node's host. Extra ``args`` go to ``pymesh run``. It stops with the
    shell, or with ``peer_stop(name)``.
    """
    started: str = await _peers().start(name, *args)
    return started


async def peer_stop(name: str) -> bool:
    """Stop a peer started with ``peer()`` (SIGTERM, then kill); False if unknown."""
    stopped: bool = await _peers().stop(name)
    return stopped


def peers() -> list[str]:
    """The running peers started from this node."""
    listed: list[str] = _peers().list()
    return listed


def observer(node: str | None = None) -> Any:
    """Open the live pane (``pymesh.tui``) on this terminal; quit it with ``q``.

    ``observer("b@vm")`` shows another node, through this one.
    """
    try:
        from pymesh import tui
    except ImportError:
        return Text("observer() is not available: pymesh.tui cannot be imported")
    fn = getattr(tui, "observer", None)
    if not callable(fn):
        return Text("observer() is not available yet: pymesh.tui has no observer()")
    return fn(node)


class ExitHelper:
    """``exit()``: leave the shell; ``exit(pid, reason)``: Erlang's exit/2."""

    def __repr__(self) -> str:
        return "Use exit() or Ctrl-D to leave the shell (exit(pid, reason) sends an exit signal)"

    def __call__(self, pid: Pid | None = None, reason: Any = None) -> None:
        if pid is None:
            raise LeaveShell()
        if reason is None:
            raise TypeError("exit(pid, reason) needs a reason; exit() alone leaves the shell")
        pymesh.exit(pid, reason)


def shell_namespace() -> dict[str, Any]:
    """A fresh namespace with pymesh's API and the shell helpers (see the module doc)."""
    ns: dict[str, Any] = {name: getattr(pymesh, name) for name in pymesh.__all__}
    for name in REGISTRY_NAMES:
        value = getattr(pymesh, name, None)
        if value is not None:
            ns[name] = value
    helpers: dict[str, Callable[..., Any] | Any] = {
        "Node": Node,
        "i": i,
        "h": h,
        "help": h,
        "pid": pid,
        "flush": flush,
        "nodes": nodes,
        "topologies": topologies,
        "peer": peer,
        "peer_stop": peer_stop,
        "peers": peers,
        "observer": observer,
        "asyncio": asyncio,
        "pymesh": pymesh,
        "__name__": "__shell__",
    }
    ns.update(helpers)
    return ns


def session_namespace(
    value: Callable[..., Any], *, remote: bool, observer: Callable[..., Any] | None = None
) -> dict[str, Any]:
    """A session's namespace: :func:`shell_namespace` plus ``v``, ``exit`` and ``quit``.

    A remote session brings its own ``observer`` (the pane on its terminal).
    """
    ns = shell_namespace()
    ns["v"] = value
    ns["exit"] = ns["quit"] = ExitHelper()
    if observer is not None:
        ns["observer"] = observer
    if remote:

        def no_input(prompt: str = "") -> str:
            raise RuntimeError("input() reads the node's own terminal, not this SSH session")

        ns["input"] = no_input
    return ns
