"""What a ``pymesh run`` or ``pymesh shell`` process hosts around its node.

:class:`NodeHost` starts, from the shared node flags: the node (when named),
the connections asked with ``--connect``, discovery (``--topology``), the SSH
server (``--ssh-port``, advertised to the port mapper as ``ssh=<port>``), the
peers started with ``peer()``, and the shell namespace as the node's
``rpc_eval`` namespace. ``Node.start``/``Node.stop`` typed at a shell prompt come
back here, so a node started late gets the same flags.

There is one host per OS process, as there is one node: :func:`current_host`.
"""

from __future__ import annotations

import argparse
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymesh
from pymesh import ConfigError, Node

from pymesh.epmd import default_epmd_port

from pymesh import set_eval_namespace

from ._eval import install_interrupt_handler
from ._node_commands import dist_options
from ._namespace import shell_namespace
from ._peers import Peers

__all__ = ["NodeHost", "current_host", "parse_ssh_advertisement", "ssh_advertisement"]

log = logging.getLogger("pymesh.shell")

_current: NodeHost | None = None


def current_host() -> NodeHost | None:
    """The host of this OS process, if a command started one."""
    return _current


def ssh_advertisement(port: int) -> bytes:
    """The port mapper's extra field for a node with an SSH server."""
    return b"ssh=%d" % port


def parse_ssh_advertisement(extra: bytes) -> int | None:
    """The SSH port in a port mapper extra field, or None."""
    for item in extra.replace(b",", b" ").split():
        key, _, value = item.partition(b"=")
        if key == b"ssh" and value.isdigit():
            return int(value)
    return None


def _loopback_for(node_name: str | None) -> str:
    """Where the SSH server listens by default: as the distribution does,
    loopback when the node's host is this machine's loopback name."""
    if not node_name:
        return "127.0.0.1"
    host = node_name.partition("@")[2] or socket.gethostname().split(".")[0]
    try:
        addr = socket.gethostbyname(host)
    except OSError:
        return "127.0.0.1"
    return "127.0.0.1" if addr.startswith("127.") else "0.0.0.0"


class NodeHost:
    """See the module doc. ``args`` are parsed node flags (``add_node_flags``)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.epmd_port = default_epmd_port(args.epmd_port)
        self.peers = Peers()
        self.ssh: Any = None
        self.cluster: Any = None
        self._topology: Any = None
        self._undo_signals: Callable[[], None] | None = None

    @property
    def name(self) -> str | None:
        name: str | None = self.args.name or self.args.sname
        return name

    async def start(self) -> str | None:
        """Start everything the flags ask for; return the node's name (None if unnamed).

        Raises ``ConfigError`` for a bad topology file, ``OSError`` when the SSH
        port cannot be had, and what ``pymesh.start`` raises.
        """
        global _current
        if _current is not None and _current is not self:
            raise RuntimeError("this process hosts a node already")
        _current = self
        self._topology = self._load_topology()
        set_eval_namespace(shell_namespace)
        self._undo_signals = install_interrupt_handler()
        try:
            if self.args.ssh_port is not None:
                await self._start_ssh()
            if self.name:
                return await self.start_node(self.name, longnames=bool(self.args.name))
        except BaseException:
            await self.close()
            raise
        return None

    async def _start_ssh(self) -> None:
        from ._ssh import SshServer

        host = self.args.ssh_host or _loopback_for(self.name)
        keys = Path(self.args.authorized_keys) if self.args.authorized_keys else None
        self.ssh = SshServer(host=host, port=self.args.ssh_port, authorized_keys=keys, epmd_port=self.epmd_port)
        try:
            port = await self.ssh.start()
        except OSError as e:
            self.ssh = None
            raise ConfigError(f"cannot listen for SSH on {host} port {self.args.ssh_port}: {e.strerror or e}") from None
        print(f"ssh listening on {host} port {port}", flush=True)

    def _load_topology(self) -> Any:
        path = getattr(self.args, "topology", None)
        try:
            from pymesh.services import discovery
        except ImportError:
            if path:
                raise ConfigError("--topology needs pymesh.services.discovery, which this pymesh does not have") from None
            return None
        if path is None:
            default = discovery.default_config_path()
            if not default.exists():
                return None
            path = default
        return discovery.load_config(path)

    def defaults(self) -> dict[str, Any]:
        """The keyword arguments for ``pymesh.start`` that the flags give."""
        a = self.args
        return {
            "cookie": a.cookie,
            "hidden": a.hidden,
            "port": a.port,
            "epmd_port": self.epmd_port,
            "tick_time": a.tick_time,
            "connect_all": a.connect_all,
            "epmd_extra": ssh_advertisement(self.ssh.port) if self.ssh is not None else b"",
            **dist_options(a),
        }

    async def start_node(self, name: str, **options: Any) -> str:
        """``pymesh.start`` with the flags' defaults, then ``--connect`` and discovery."""
        full = await pymesh.start(name, **{**self.defaults(), **options})
        for node in self.args.connect:
            if not await Node.connect(node):
                log.warning("could not connect to %s", node)
        if self._topology is not None:
            from pymesh.services import discovery

            self.cluster = await discovery.start_topologies(self._topology)
        return full

    async def stop_node(self) -> None:
        """Stop discovery, then leave the cluster (``pymesh.stop``)."""
        cluster, self.cluster = self.cluster, None
        if cluster is not None:
            await cluster.stop()
        await pymesh.stop()

    async def close(self) -> None:
        """Stop the peers, the SSH server and the node."""
        global _current
        try:
            await self.peers.stop_all()
            if self.ssh is not None:
                await self.ssh.stop()
                self.ssh = None
            await self.stop_node()
        finally:
            set_eval_namespace(None)
            if self._undo_signals is not None:
                self._undo_signals()
                self._undo_signals = None
            if _current is self:
                _current = None
