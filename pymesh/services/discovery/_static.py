"""The two strategies that need no service: a fixed list of hosts, and the local port mapper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pymesh._errors import DiscoveryError

from ._strategy import POLLING, Option, PollingStrategy, node_list, optional_port, text

__all__ = ["LocalStrategy", "StaticStrategy"]


class StaticStrategy(PollingStrategy):
    """``static``: connect to a fixed list of nodes, retrying every ``polling_interval``, forever.

    libcluster's ``Epmd`` strategy. Config: ``hosts`` (required, node names
    ``name@host``), ``polling_interval`` (5 s). A node that is down is simply
    retried at the next poll; nodes are never disconnected, since the list
    never changes.
    """

    name = "static"
    options: ClassVar[Mapping[str, Option]] = {
        "hosts": Option(node_list, doc="the node names to connect to"),
        **POLLING,
    }

    async def poll(self) -> set[str]:
        return set(self.config["hosts"])


class LocalStrategy(PollingStrategy):
    """``local``: connect to every node registered with this host's port mapper.

    libcluster's ``LocalEpmd``. Asks the port mapper at ``host``
    (``127.0.0.1``) on ``epmd_port`` (default: ``$PYMESH_EPMD_PORT``,
    ``$ERL_EPMD_PORT`` or 4369) every ``polling_interval``; each short name
    ``n`` becomes ``n@H`` where ``H`` is this node's own host part. A node
    that unregisters is disconnected.
    """

    name = "local"
    options: ClassVar[Mapping[str, Option]] = {
        "host": Option(text, "127.0.0.1", "where the port mapper listens"),
        "epmd_port": Option(optional_port, None, "the port mapper's port"),
        **POLLING,
    }

    async def poll(self) -> set[str]:
        if not self.local.host:
            raise DiscoveryError(f"this node's name {self.local.name!r} has no host part", kind="config")
        names: Any = _names()
        entries = await names(host=self.config["host"], epmd_port=self.config["epmd_port"])
        return {f"{name}@{self.local.host}" for name, _port in entries}


def _names() -> Any:
    try:
        from pymesh.runtime._epmd import names
    except ImportError as exc:
        raise DiscoveryError(f"the port mapper client is not available: {exc}", kind="unavailable") from exc
    return names
