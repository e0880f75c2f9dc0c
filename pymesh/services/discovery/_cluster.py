"""A set of running topologies: start, wait for peers, inspect, stop."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Iterable
from types import TracebackType

from ._config import DiscoveryConfig, TopologySpec
from ._ops import ClusterOps, DefaultOps, HookedOps, maybe_await
from ._topology import Topology, TopologyState

__all__ = ["Cluster", "start_topologies", "states"]

logger = logging.getLogger("pymesh.discovery")

_running: weakref.WeakSet[Cluster] = weakref.WeakSet()


class Cluster:
    """The topologies of one node, each running as a supervised asyncio task.

    ``topologies`` are checked specs (from :func:`load_topologies`) or a
    whole :class:`DiscoveryConfig`; ``ops`` defaults to :class:`DefaultOps`
    (the node of this process). Each topology with hooks gets its own
    :class:`HookedOps` around ``ops``. ``connect_timeout`` bounds each
    connection attempt.

    Use ``async with Cluster(...)`` or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        topologies: Iterable[TopologySpec] | DiscoveryConfig,
        ops: ClusterOps | None = None,
        *,
        connect_timeout: float = 10.0,
    ) -> None:
        specs = topologies.topologies if isinstance(topologies, DiscoveryConfig) else tuple(topologies)
        names = [s.name for s in specs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate topology name(s): {', '.join(duplicates)}")
        self.ops: ClusterOps = ops if ops is not None else DefaultOps()
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.topologies: tuple[Topology, ...] = tuple(
            Topology(
                spec,
                self._ops_for(spec),
                connect_timeout=connect_timeout,
                claimed_elsewhere=self._claimer(spec.name),
                on_change=self._changed.set,
            )
            for spec in specs
        )

    def _ops_for(self, spec: TopologySpec) -> ClusterOps:
        if spec.connect or spec.disconnect or spec.list_nodes:
            return HookedOps(self.ops, connect=spec.connect, disconnect=spec.disconnect, list_nodes=spec.list_nodes)
        return self.ops

    def _claimer(self, name: str) -> Callable[[str], bool]:
        def claimed_elsewhere(node: str) -> bool:
            return any(t.name != name and node in t.found_nodes for t in self.topologies)

        return claimed_elsewhere

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def start(self) -> None:
        """Start every topology's task (in the running event loop); idempotent."""
        if self._tasks:
            return
        for topology in self.topologies:
            task = asyncio.get_running_loop().create_task(topology.run(), name=f"discovery:{topology.name}")
            self._tasks.append(task)
        _running.add(self)

    async def wait_connected(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` other nodes are connected, or ``timeout`` seconds pass.

        Returns whether the count was reached. Counts every connected node,
        whichever topology (or anything else) connected it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if await self._connected_count() >= count:
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._changed.clear()
            # Also look every 0.25 s: connections can come from outside discovery.
            try:
                async with asyncio.timeout(min(left, 0.25)):
                    await self._changed.wait()
            except TimeoutError:
                pass

    async def _connected_count(self) -> int:
        me = self.ops.self_name()
        return len(set(await maybe_await(self.ops.list_nodes())) - {me})

    def states(self) -> list[TopologyState]:
        """Return a frozen :class:`TopologyState` per topology, in configuration order."""
        return [t.state() for t in self.topologies]

    async def stop(self) -> None:
        """Stop every topology (strategies get to deregister); idempotent. Connections stay."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        _running.discard(self)

    async def __aenter__(self) -> Cluster:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        names = ", ".join(t.name for t in self.topologies)
        return f"<Cluster [{names}] {'running' if self.running else 'stopped'}>"


async def start_topologies(
    topologies: Iterable[TopologySpec] | DiscoveryConfig,
    ops: ClusterOps | None = None,
    *,
    wait_for: int | None = None,
    wait_timeout: float | None = None,
    connect_timeout: float = 10.0,
) -> Cluster:
    """Start discovery and return the running :class:`Cluster`.

    With ``wait_for=N`` (default: the config's ``wait_for``, else 0), wait
    until N other nodes are connected or ``wait_timeout`` seconds (default:
    the config's, else 30) have passed; on timeout a warning is logged and the
    cluster is returned all the same — discovery keeps going.
    """
    if isinstance(topologies, DiscoveryConfig):
        wait_for = topologies.wait_for if wait_for is None else wait_for
        wait_timeout = topologies.wait_timeout if wait_timeout is None else wait_timeout
    wait_for = wait_for or 0
    wait_timeout = 30.0 if wait_timeout is None else wait_timeout
    cluster = Cluster(topologies, ops, connect_timeout=connect_timeout)
    cluster.start()
    if wait_for > 0 and not await cluster.wait_connected(wait_for, wait_timeout):
        have = await cluster._connected_count()
        logger.warning(
            "start-up: %d of %d nodes connected after %gs; going on, discovery keeps looking",
            have,
            wait_for,
            wait_timeout,
        )
    return cluster


def states() -> list[TopologyState]:
    """Return the state of every topology of every running :class:`Cluster` in this process."""
    return [state for cluster in list(_running) for state in cluster.states()]
