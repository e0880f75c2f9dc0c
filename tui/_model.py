"""What the pane shows, as plain data: one :class:`Snapshot` of one node.

A snapshot is taken on the observed node (:mod:`pymesh.tui._snapshot`) and
travels to the pane as a term — tuples of strings and numbers — so the pane
reads a remote node exactly as it reads its own. Nothing here imports Textual.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, field
from typing import Any

from ._api import TraceEvent

__all__ = ["PeerInfo", "NameInfo", "ProcInfo", "Snapshot", "TraceEvent"]


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """One node as the observed node sees it.

    ``state`` is ``this`` (the observed node itself), ``connected``,
    ``hidden``, ``connecting`` or ``down`` (``reason`` then says why:
    ``connection_closed``, ``net_tick_timeout``, ``disconnect``, ...).
    ``since`` is when it entered that state (wall clock; None if unknown);
    ``rtt`` the last round trip in seconds (None if unmeasured).
    """

    node: str
    address: str | None
    state: str
    reason: str | None
    since: float | None
    rtt: float | None
    msgs_in: int
    msgs_out: int
    bytes_in: int
    bytes_out: int
    queued: int


@dataclass(frozen=True, slots=True)
class NameInfo:
    """One name: ``kind`` (``local``, ``registry``, ``global``, ``pg``,
    ``dreg``, ...), the name as text, the owner's pid as text and its node."""

    kind: str
    name: str
    pid: str
    node: str


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """One process: pid as text, registered name, mailbox length, status
    (``waiting``, ``runnable``, ``exiting``) and the function it started in."""

    pid: str
    name: str | None
    mailbox: int
    status: str
    call: str


@dataclass(frozen=True)
class Snapshot:
    """One node's state at ``time``, plus the traffic since the previous snapshot.

    ``alive`` is False when the observed node could not be reached; ``reason``
    then says why, and the lists are empty. ``left_out`` counts messages that
    crossed the node since the previous snapshot but are not in ``events``
    (sampled away under load). ``names_total``/``procs_total`` are the full
    counts when the lists were capped. ``session`` changes when the observed
    node restarted (its watch state is new).
    """

    node: str
    time: float
    alive: bool = True
    reason: str | None = None
    peers: list[PeerInfo] = field(default_factory=list)
    names: list[NameInfo] = field(default_factory=list)
    names_total: int = 0
    procs: list[ProcInfo] = field(default_factory=list)
    procs_total: int = 0
    events: list[TraceEvent] = field(default_factory=list)
    left_out: int = 0
    session: str = ""
    kinds: list[str] = field(default_factory=list)  # name kinds whose provider answered
    errors: list[str] = field(default_factory=list)  # providers that failed, and why

    def as_term(self) -> dict[str, Any]:
        """A dict of plain values that can cross the wire (see :meth:`from_term`)."""
        return {
            "v": 1,
            "node": self.node,
            "time": self.time,
            "alive": self.alive,
            "reason": self.reason,
            "peers": [astuple(p) for p in self.peers],
            "names": [astuple(n) for n in self.names],
            "names_total": self.names_total,
            "procs": [astuple(p) for p in self.procs],
            "procs_total": self.procs_total,
            "events": [e.as_term() for e in self.events],
            "left_out": self.left_out,
            "session": self.session,
            "kinds": list(self.kinds),
            "errors": list(self.errors),
        }

    @classmethod
    def from_term(cls, term: dict[str, Any]) -> Snapshot:
        """Rebuild a snapshot from :meth:`as_term`'s dict; ``ValueError`` if malformed."""
        try:
            return cls(
                node=term["node"],
                time=term["time"],
                alive=term["alive"],
                reason=term["reason"],
                peers=[PeerInfo(*p) for p in term["peers"]],
                names=[NameInfo(*n) for n in term["names"]],
                names_total=term["names_total"],
                procs=[ProcInfo(*p) for p in term["procs"]],
                procs_total=term["procs_total"],
                events=[TraceEvent.from_term(e) for e in term["events"]],
                left_out=term["left_out"],
                session=term["session"],
                kinds=list(term["kinds"]),
                errors=list(term.get("errors", [])),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed snapshot: {type(e).__name__}: {e}") from None
