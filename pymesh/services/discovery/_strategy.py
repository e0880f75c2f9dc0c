"""The strategy behaviour: how a discovery strategy is shaped, and what it reports to.

A strategy only *finds* nodes. Everything else — connecting, reconnecting,
disconnecting, keeping state records, logging once per change — is done by
the topology that runs it (``_topology.py``), so that each strategy stays a
page long and the rules are written once.

There are two shapes, in the spirit of Horde's two-method
``DistributionStrategy``:

* a **polling** strategy subclasses :class:`PollingStrategy` and implements
  ``poll()``: return the complete set of node names the backend knows now,
  or raise if the backend could not be asked (that never disconnects
  anything). ``run()`` is provided: poll every ``polling_interval`` seconds.
* a **push** strategy subclasses :class:`Strategy` and implements ``run()``:
  loop forever, telling the :class:`Report` what it learns —
  ``await report.found(nodes)`` for a complete answer, ``await
  report.seen(node)`` for one node heard from (gossip), ``report.failed(exc)``
  for a failed call.

Both may override ``aclose()`` to let go of what they hold (a lease, a
registration, a socket); it runs after every stop or crash.

A strategy declares its configuration keys in ``options``, a mapping from key
to :class:`Option`; the loader checks a topology's ``config`` table against it
and hands the strategy a complete, validated mapping (defaults filled in).
"""

from __future__ import annotations

import asyncio
import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from pymesh._errors import DiscoveryError

__all__ = [
    "LocalNode",
    "Option",
    "PollingStrategy",
    "Report",
    "Strategy",
]


@dataclass(frozen=True)
class LocalNode:
    """What a strategy may know about the node it runs on: its name and distribution port."""

    name: str
    dist_port: int | None = None

    @property
    def host(self) -> str:
        """The part of the node name after ``@`` (``""`` if there is none)."""
        return self.name.partition("@")[2]


class Report(Protocol):
    """What a strategy tells its topology. Implemented by the topology, not by strategies."""

    async def found(self, nodes: Iterable[str]) -> None:
        """A successful, complete answer: these are all the nodes the backend knows.

        Missing nodes are connected; nodes this topology found before and that
        are no longer in the answer are disconnected.
        """

    async def seen(self, node: str) -> None:
        """One node was heard from (e.g. a gossip heartbeat): connect it if needed; nothing is removed."""

    def failed(self, error: BaseException) -> None:
        """The backend could not be asked or answered garbage; nothing is disconnected."""

    def note(self, key: str, problem: str) -> None:
        """Log a side problem (a dropped datagram, a failed heartbeat) once per episode of ``(key, problem)``."""


class Strategy(ABC):
    """Base of every discovery strategy; see the module docstring for the two shapes.

    Subclasses set ``name`` (the ``strategy = "..."`` value) and ``options``.
    The constructor receives the validated config and the :class:`LocalNode`;
    it should not do I/O (the topology may construct a strategy again after a
    crash).
    """

    name: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Option]] = {}

    def __init__(self, config: Mapping[str, Any], local: LocalNode) -> None:
        self.config = config
        self.local = local

    @classmethod  # noqa: B027 - an optional hook, empty by default
    def check(cls, config: Mapping[str, Any]) -> None:
        """Check rules that span several keys; raise ``ValueError`` naming the key.

        Called by the loader after each key was validated on its own.
        """

    @abstractmethod
    async def run(self, report: Report) -> None:
        """Find nodes forever, telling ``report``; return only when cancelled.

        An exception escaping ``run`` is a crash: the topology logs it once and
        starts a fresh strategy after a backoff.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Let go of held resources (deregister, revoke, close); called after every run."""


class PollingStrategy(Strategy):
    """A strategy that asks its backend every ``polling_interval`` seconds.

    Implement :meth:`poll`. Errors it raises (any ``Exception`` from the
    backend, malformed answers as :class:`~pymesh._errors.DiscoveryError`) are
    reported as failed polls; the loop goes on. Each poll is bounded by
    ``poll_deadline`` seconds (by default six times the strategy's ``timeout``
    option, or 30 s), so a hung backend cannot stall the topology.
    """

    async def run(self, report: Report) -> None:
        interval = float(self.config.get("polling_interval", 5.0))
        while True:
            deadline = asyncio.timeout(self.poll_deadline)
            try:
                async with deadline:
                    nodes = await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any backend failure is a failed poll
                error: BaseException = exc
                if deadline.expired():
                    error = DiscoveryError(f"poll took longer than {self.poll_deadline:g}s", kind="timeout")
                report.failed(error)
            else:
                if nodes is not None:
                    await report.found(nodes)
            await asyncio.sleep(interval)

    @property
    def poll_deadline(self) -> float:
        """Seconds one :meth:`poll` may take before it counts as failed."""
        timeout = self.config.get("timeout")
        return 6.0 * float(timeout) if timeout else 30.0

    @abstractmethod
    async def poll(self) -> set[str] | None:
        """Return every node name the backend knows now, or ``None`` for "no answer yet".

        Raise if the backend could not be asked or answered something
        unusable; a failed poll never disconnects a node.
        """


# --- options -------------------------------------------------------------------------


_REQUIRED: Any = object()


@dataclass(frozen=True)
class Option:
    """One key of a strategy's ``config`` table.

    ``check`` turns a TOML value into the value the strategy gets, or raises
    ``ValueError`` with the second half of a sentence ("must be a positive
    number"). ``default`` is used when the key is absent; an option without
    one is required.
    """

    check: Callable[[Any], Any]
    default: Any = _REQUIRED
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


def text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


def optional_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError("must be a positive number of seconds")
    return float(value)


def integer(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return value

    return check


def port(value: Any) -> int:
    return integer(1, 65535)(value)


def optional_port(value: Any) -> int | None:
    return None if value == 0 else port(value)


def choice(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(repr(a) for a in allowed)}")
        return str(value)

    return check


def text_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("must be a list of non-empty strings")
    return tuple(value)


def ip_address(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(text(value)))
    except ValueError:
        raise ValueError("must be an IP address") from None


def node_name(value: str) -> str:
    """Check the shape ``name@host`` that every node name has; return it."""
    name, at, host = value.partition("@")
    if not (name and at and host) or any(c.isspace() for c in value) or len(value) > 255:
        raise ValueError(f"{value!r} is not a node name of the form name@host")
    return value


def node_list(value: Any) -> tuple[str, ...]:
    return tuple(node_name(v) for v in text_list(value))


POLLING: Mapping[str, Option] = {
    "polling_interval": Option(seconds, 5.0, "seconds between two polls"),
}
NETWORK: Mapping[str, Option] = {
    **POLLING,
    "timeout": Option(seconds, 5.0, "seconds one request may take"),
}
