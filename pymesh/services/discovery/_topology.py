"""One running topology: a strategy under a small supervisor, and the rules every strategy shares.

This is where discovery's policy lives, once for all strategies:

* **Diffing.** A complete answer (``found``) is compared with the nodes
  connected *now* (``list_nodes``), not with the previous answer, so a peer
  that dropped and came back is connected again (libcluster #148).
* **Disconnecting only on a successful answer.** A node is disconnected only
  when an answer that *succeeded* no longer lists it, and only if this
  topology had found it and no other topology of the cluster still does. A
  failed call (timeout, 5xx, DNS error, etcd down) changes nothing
  (libcluster #82).
* **Logging once per change of state.** An outage is logged when it starts
  ("discovery failed") and when it ends ("recovered"); "cannot connect to
  X" when X becomes unreachable; a crash when it first happens; a side
  problem (a dropped datagram) once per episode — never at every poll.
* **State records.** :meth:`Topology.state` returns a frozen
  :class:`TopologyState` for the CLI and the REPL.
* **Supervision.** A strategy whose ``run`` raises is logged once, closed,
  and replaced by a fresh one after an exponential backoff; the exception
  never reaches the node.

Every log line carries ``topology=NAME strategy=S`` and goes to the
``pymesh.discovery`` logger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pymesh._errors import PymeshError

from ._ops import ClusterOps, maybe_await
from ._strategy import LocalNode, Strategy

if TYPE_CHECKING:
    from ._config import TopologySpec

__all__ = ["Topology", "TopologyState"]

logger = logging.getLogger("pymesh.discovery")

#: First and largest delay before a crashed strategy is started again.
BACKOFF_MIN = 0.5
BACKOFF_MAX = 30.0
#: A strategy that ran this long before crashing counts as having been stable:
#: its backoff starts over, and its next crash is logged in full again.
STABLE_AFTER = 60.0
#: A side problem (``note``) is logged again after this many quiet seconds.
NOTE_QUIET = 60.0
#: Seconds a strategy's ``aclose`` may take.
CLOSE_TIMEOUT = 5.0
#: A node heard from (``seen``) that failed to connect is not tried again for this long,
#: so a peer that beats every second but cannot be reached doesn't stall the topology.
SEEN_RETRY = 5.0
#: Connection attempts running at once for one topology.
CONNECT_CONCURRENCY = 16
_MAX_NOTES = 256


@dataclass(frozen=True)
class TopologyState:
    """A snapshot of one topology, as :meth:`Cluster.states` returns it.

    * ``last_poll`` — when the strategy last answered or failed (UTC), or
      ``None`` before its first attempt;
    * ``nodes_found`` — the nodes of its last successful answer (for gossip:
      every node heard from), sorted;
    * ``last_error`` — the most recent failure, kept after recovery (see
      ``healthy``), with its time in ``last_error_at``;
    * ``connected`` — the found nodes that were connected after the last
      answer;
    * ``healthy`` — whether the latest attempt succeeded;
    * ``restarts`` — how many times the strategy crashed and was restarted.
    """

    name: str
    strategy: str
    last_poll: datetime | None
    nodes_found: tuple[str, ...]
    last_error: str | None
    connected: tuple[str, ...]
    healthy: bool = True
    last_error_at: datetime | None = None
    restarts: int = 0


class _Context(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"{self.extra['prefix']}: {msg}", kwargs  # type: ignore[index]


def describe(error: BaseException) -> str:
    """One line for an error: its message, prefixed by its type unless it is one of ours."""
    text = " ".join(str(error).split())
    if isinstance(error, PymeshError) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _error_kind(error: BaseException) -> str:
    # "The same failure" for log-once purposes: same type and same kind word,
    # whatever numbers (elapsed times, ports) the message carries.
    return f"{type(error).__name__}/{getattr(error, 'kind', '')}"


def _now() -> datetime:
    return datetime.now(UTC)


class Topology:
    """Runs one :class:`TopologySpec` with a :class:`ClusterOps`; implements the strategy's ``Report``.

    ``claimed_elsewhere(node)`` tells whether another topology of the same
    cluster still finds ``node`` (such a node is not disconnected);
    ``on_change()`` is called after each answer.
    """

    def __init__(
        self,
        spec: TopologySpec,
        ops: ClusterOps,
        *,
        connect_timeout: float = 10.0,
        claimed_elsewhere: Callable[[str], bool] = lambda node: False,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.spec = spec
        self.log = _Context(logger, {"prefix": f"topology={spec.name} strategy={spec.strategy}"})
        self._ops = ops
        self._connect_timeout = connect_timeout
        self._claimed_elsewhere = claimed_elsewhere
        self._on_change = on_change
        self._lock = asyncio.Lock()
        self._found: frozenset[str] = frozenset()
        self._connected: frozenset[str] = frozenset()
        self._unreachable: dict[str, float] = {}  # node -> when it last failed to connect
        self._connecting: dict[str, asyncio.Task[None]] = {}  # seen nodes being connected
        self._notes: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._last_poll: datetime | None = None
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._failing: str | None = None
        self._crash_kind: str | None = None
        self._crashed_last = False
        self._restarts = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def found_nodes(self) -> frozenset[str]:
        """The nodes of the last successful answer."""
        return self._found

    def state(self) -> TopologyState:
        """Return a frozen snapshot of this topology."""
        return TopologyState(
            name=self.spec.name,
            strategy=self.spec.strategy,
            last_poll=self._last_poll,
            nodes_found=tuple(sorted(self._found)),
            last_error=self._last_error,
            connected=tuple(sorted(self._connected)),
            healthy=self._failing is None and not self._crashed_last,
            last_error_at=self._last_error_at,
            restarts=self._restarts,
        )

    # --- the supervisor --------------------------------------------------------------

    async def run(self) -> None:
        """Run the strategy forever, restarting it after crashes; returns only by cancellation."""
        try:
            await self._supervise()
        finally:
            for task in list(self._connecting.values()):
                task.cancel()
            await asyncio.gather(*self._connecting.values(), return_exceptions=True)

    async def _supervise(self) -> None:
        crashes = 0
        while True:
            strategy: Strategy | None = None
            started = time.monotonic()
            try:
                local = LocalNode(self._ops.self_name(), self._ops.dist_port())
                strategy = self.spec.strategy_class(self.spec.config, local)
                await strategy.run(self)
                raise RuntimeError("the strategy's run() returned")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a crash restarts the strategy, never the node
                if time.monotonic() - started > STABLE_AFTER:
                    crashes, self._crash_kind = 0, None
                self._crashed(exc)
            finally:
                if strategy is not None:
                    await self._close(strategy)
            crashes += 1
            await asyncio.sleep(min(BACKOFF_MIN * 2 ** (crashes - 1), BACKOFF_MAX))

    def _crashed(self, exc: BaseException) -> None:
        self._restarts += 1
        self._last_error = f"strategy crashed: {describe(exc)}"
        self._last_error_at = _now()
        kind = _error_kind(exc)
        if kind != self._crash_kind:
            self.log.error("strategy crashed; restarting it with backoff", exc_info=exc)
        else:
            self.log.debug("strategy crashed again: %s", describe(exc))
        self._crash_kind = kind
        self._crashed_last = True
        self._on_change()

    async def _close(self, strategy: Strategy) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await strategy.aclose()
        except Exception as exc:  # noqa: BLE001 - cleanup is best effort
            self.log.warning("closing the strategy failed: %s", describe(exc))

    # --- Report: what strategies call -------------------------------------------------

    async def found(self, nodes: Iterable[str]) -> None:
        """A complete, successful answer: connect the missing, disconnect the vanished."""
        async with self._lock:
            me = self._ops.self_name()
            found = frozenset(str(n) for n in nodes) - {me}
            connected = set(await maybe_await(self._ops.list_nodes()))
            gone = sorted(n for n in self._found - found if n in connected and not self._claimed_elsewhere(n))
            self._found = found
            for node in list(self._unreachable):
                if node not in found:
                    del self._unreachable[node]
            self._succeeded()
            await self._connect_all(sorted(found - connected))
            for node in gone:
                await self._disconnect(node)
            await self._refresh_connected()

    async def seen(self, node: str) -> None:
        """One node was heard from: connect it if it is not connected; remove nothing.

        Returns without waiting for the connection: a strategy that reports
        heartbeats one after another (gossip) must not stall every other
        heartbeat behind one slow or unreachable node."""
        async with self._lock:
            if node == self._ops.self_name():
                return
            self._found = self._found | {node}
            self._succeeded()
            connected = set(await maybe_await(self._ops.list_nodes()))
            failed_at = self._unreachable.get(node)
            if (
                node not in connected
                and node not in self._connecting
                and (failed_at is None or time.monotonic() - failed_at > SEEN_RETRY)
            ):
                self._connecting[node] = asyncio.get_running_loop().create_task(self._connect_seen(node))
            await self._refresh_connected()

    async def _connect_seen(self, node: str) -> None:
        try:
            await self._connect(node)
        finally:
            self._connecting.pop(node, None)
        async with self._lock:
            await self._refresh_connected()

    def failed(self, error: BaseException) -> None:
        """The backend could not be asked: record it, log it if it starts an outage; disconnect nothing.

        One outage is one warning, however many retries fail and however the
        failure changes on the way (refused, then timing out, then a broken
        stream); the changes go to the debug log, the latest is in the state.
        """
        self._last_poll = self._last_error_at = _now()
        self._last_error = describe(error)
        kind = _error_kind(error)
        if self._failing is None:
            self.log.warning("discovery failed: %s (no node is disconnected for this; retrying)", self._last_error)
        elif kind != self._failing:
            self.log.debug("discovery still failing, now: %s", self._last_error)
        self._failing = kind
        self._on_change()

    def note(self, key: str, problem: str) -> None:
        """Log a side problem once per episode: again only after ``NOTE_QUIET`` seconds without it.

        An episode is one ``(key, problem)`` pair, so a sender that alternates
        between two faults is logged once for each, not at every alternation.
        """
        now = time.monotonic()
        last = self._notes.pop((key, problem), None)
        if last is None or now - last > NOTE_QUIET:
            self.log.warning("%s: %s", key, problem)
        self._notes[(key, problem)] = now
        while len(self._notes) > _MAX_NOTES:
            self._notes.popitem(last=False)

    # --- mechanics -------------------------------------------------------------------

    def _succeeded(self) -> None:
        self._last_poll = _now()
        self._crashed_last = False
        if self._failing is not None:
            self.log.info("discovery recovered")
            self._failing = None

    async def _connect_all(self, nodes: list[str]) -> None:
        if not nodes:
            return
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(node: str) -> None:
            async with limit:
                await self._connect(node)

        await asyncio.gather(*(one(n) for n in nodes))

    async def _connect(self, node: str) -> None:
        problem: str | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                if not await maybe_await(self._ops.connect(node)):
                    problem = "connect refused"
        except TimeoutError:
            problem = f"no connection within {self._connect_timeout:g}s"
        except Exception as exc:  # noqa: BLE001 - a hook's error is a failed connect
            problem = describe(exc)
        if problem is None:
            self._unreachable.pop(node, None)
            self.log.info("connected to %s", node)
        else:
            if node not in self._unreachable:
                self.log.warning("cannot connect to %s: %s (retrying at each answer)", node, problem)
            self._unreachable[node] = time.monotonic()

    async def _disconnect(self, node: str) -> None:
        try:
            await maybe_await(self._ops.disconnect(node))
        except Exception as exc:  # noqa: BLE001
            self.log.warning("disconnecting %s failed: %s", node, describe(exc))
        else:
            self.log.info("disconnected %s: no longer found", node)

    async def _refresh_connected(self) -> None:
        connected = set(await maybe_await(self._ops.list_nodes()))
        self._connected = frozenset(self._found & connected)
        self._on_change()
