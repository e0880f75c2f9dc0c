"""``etcd``: every node registers under a prefix with a lease; every node watches the prefix.

Each node puts ``PREFIX + its node name`` (value: JSON with its name and
distribution port), attached to a lease of ``ttl`` seconds that it keeps
alive every ``ttl / 3``. When a node stops, its lease is revoked and its key
deleted at once; when it dies, etcd deletes the key when the lease runs out.

Every node reads the prefix and then watches it from the next revision, so
it learns of each arrival and departure as it happens; each change is a
complete answer (the key set *is* the membership), so a deleted key
disconnects that node. The watch is renewed (read again, watch again) after
a minute without events, as a consistency check.

When etcd is unreachable — at start-up or later — the failure is reported
(nothing is disconnected) and the whole cycle is retried every
``polling_interval``; a lease that expired meanwhile is replaced and the key
put again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, ClassVar

from pymesh._errors import EtcdError
from pymesh.services._etcd import EtcdClient, KeyValue

from ._strategy import NETWORK, Option, Report, Strategy, integer, text, text_list

__all__ = ["EtcdStrategy"]

#: Seconds without a watch event before the watch is renewed.
WATCH_RENEW = 60.0


class _LeaseLost(Exception):
    pass


class EtcdStrategy(Strategy):
    """``etcd``: register with a lease and watch the prefix; see the module docstring."""

    name = "etcd"
    options: ClassVar[Mapping[str, Option]] = {
        "endpoints": Option(text_list, ("http://127.0.0.1:2379",), "etcd client URLs"),
        "prefix": Option(text, "/pymesh/nodes/", "key prefix under which nodes register"),
        "ttl": Option(integer(2, 3600), 15, "lease TTL in seconds"),
        **NETWORK,
    }

    def __init__(self, config: Mapping[str, Any], local: Any) -> None:
        super().__init__(config, local)
        self._client = EtcdClient(config["endpoints"], timeout=config["timeout"])
        self._prefix: str = config["prefix"]
        self._key = self._prefix + local.name
        self._lease: int | None = None

    async def run(self, report: Report) -> None:
        while True:
            try:
                await self._session(report)
            except _LeaseLost:
                report.note("etcd lease", "our lease expired (etcd was unreachable too long); registering again")
            except EtcdError as exc:
                report.failed(exc)
                await asyncio.sleep(self.config["polling_interval"])

    async def aclose(self) -> None:
        try:
            if self._lease is not None:
                lease, self._lease = self._lease, None
                await self._client.lease_revoke(lease)
        except EtcdError:
            pass  # the lease expires by itself
        finally:
            await self._client.aclose()

    async def _register(self) -> int:
        """Make sure our key is in etcd on a live lease; return the lease id."""
        if self._lease is not None and await self._client.lease_keepalive(self._lease) > 0:
            lease = self._lease
        else:
            lease = (await self._client.lease_grant(self.config["ttl"])).id
            self._lease = lease
        value = json.dumps({"node": self.local.name, "port": self.local.dist_port})
        await self._client.put(self._key, value, lease=lease)
        return lease

    async def _keepalive(self, lease: int) -> None:
        while True:
            await asyncio.sleep(self.config["ttl"] / 3)
            if await self._client.lease_keepalive(lease) <= 0:
                self._lease = None
                raise _LeaseLost()

    async def _session(self, report: Report) -> None:
        """Register, read, and follow the prefix until the watch needs renewing or something fails."""
        lease = await self._register()
        keepalive = asyncio.create_task(self._keepalive(lease))
        follow = asyncio.create_task(self._follow(report))
        try:
            done, _ = await asyncio.wait({keepalive, follow}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises the failure, if any
        finally:
            for task in (keepalive, follow):
                task.cancel()
            await asyncio.gather(keepalive, follow, return_exceptions=True)

    async def _follow(self, report: Report) -> None:
        kvs, revision = await self._client.get_prefix(self._prefix)
        members = {kv.key: self._node(kv) for kv in kvs}
        await report.found(members.values())
        async with self._client.watch(
            self._prefix, prefix=True, start_revision=revision + 1, idle_timeout=WATCH_RENEW
        ) as watch:
            async for event in watch:
                if event.type == "delete":
                    members.pop(event.kv.key, None)
                else:
                    members[event.kv.key] = self._node(event.kv)
                await report.found(members.values())

    def _node(self, kv: KeyValue) -> str:
        # The key names the node; the value only carries extras (the port).
        return kv.key[len(self._prefix.encode()) :].decode("utf-8", "replace")
