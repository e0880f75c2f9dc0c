"""Who may start a distribution handshake: the admission policy of a node's listener.

Everything here happens before a peer has proved it knows the cookie, so it is
the surface an unauthenticated stranger can reach. :class:`HandshakeGuard` keeps
two limits, as policy apart from the mechanism in
:mod:`pymesh.runtime._connection` (which asks :meth:`HandshakeGuard.admit` for
each incoming connection and reports failed handshakes to
:meth:`HandshakeGuard.failed`):

* **pending handshakes** — at most ``max_pending`` incoming connections may be
  handshaking at once; one more is closed at once, unread. With the handshake
  timeout this bounds what a flood of idle connections can hold.
* **failed handshakes per address** — a token bucket per peer IP address of
  ``max_failures`` tokens, refilled at ``max_failures`` per ``window`` seconds.
  A failed handshake (wrong cookie, malformed handshake, a TLS failure, a
  handshake not finished in time) takes a token; an address with no token left
  is refused at once until one has grown back. Refused connections take no
  token, so an address that stops failing is admitted again within
  ``window / max_failures`` seconds. A connection that merely closes (a TCP
  health check) is no failure.

The guard never looks at a clock: every call takes ``now`` (the runtime passes
its loop's monotonic time), which keeps it a plain object to test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["DEFAULT_MAX_FAILURES", "DEFAULT_MAX_PENDING", "HandshakeGuard", "Verdict"]

#: Incoming connections that may be handshaking at once.
DEFAULT_MAX_PENDING = 64
#: Failed handshakes one address may make per minute before it is refused.
DEFAULT_MAX_FAILURES = 20

_MAX_TRACKED = 10_000  # addresses remembered at most (the fullest buckets go first)
_LOG_EVERY = 10.0  # seconds between two warnings about one address


class Verdict(NamedTuple):
    """:meth:`HandshakeGuard.admit`'s answer: ``ok``, else ``reason`` and whether to ``warn``."""

    ok: bool
    reason: str = ""
    warn: bool = False


_ADMITTED = Verdict(True)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float
    warned: float = -1e18  # when a refusal of this address was last logged


class HandshakeGuard:
    """Admission of incoming handshakes (see the module doc).

    ``max_failures=None`` (or 0) turns the per-address limit off;
    ``max_pending=None`` (or 0) the pending cap.
    """

    def __init__(
        self,
        max_pending: int | None = DEFAULT_MAX_PENDING,
        max_failures: int | None = DEFAULT_MAX_FAILURES,
        window: float = 60.0,
    ) -> None:
        self.max_pending = max_pending or 0
        self.max_failures = max_failures or 0
        self.window = window
        self.pending = 0
        self.refused = 0  # connections closed at once, for statistics
        self._buckets: dict[str, _Bucket] = {}
        self._pending_warned = -1e18

    def _bucket(self, host: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(host)
        if bucket is not None:
            rate = self.max_failures / self.window
            bucket.tokens = min(float(self.max_failures), bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
        return bucket

    def admit(self, host: str, now: float) -> Verdict:
        """Whether a connection from ``host`` may handshake; if so it counts as
        pending until :meth:`settled`. A refusal says why, and whether it is
        worth a log line (at most one every few seconds per address, so that a
        flood of connections cannot flood the log as well)."""
        if self.max_pending and self.pending >= self.max_pending:
            self.refused += 1
            warn = now - self._pending_warned >= _LOG_EVERY
            if warn:
                self._pending_warned = now
            return Verdict(False, f"{self.pending} handshakes are pending already (the limit)", warn)
        if self.max_failures:
            bucket = self._bucket(host, now)
            if bucket is not None and bucket.tokens < 1.0:
                self.refused += 1
                warn = now - bucket.warned >= _LOG_EVERY
                if warn:
                    bucket.warned = now
                return Verdict(False, f"more than {self.max_failures} failed handshakes within {self.window:g}s", warn)
        self.pending += 1
        return _ADMITTED

    def settled(self) -> None:
        """An admitted connection finished its handshake, or went away."""
        if self.pending > 0:
            self.pending -= 1

    def failed(self, host: str, now: float) -> bool:
        """Record a failed handshake from ``host``; True when that used its last token."""
        if not self.max_failures:
            return False
        bucket = self._bucket(host, now)
        if bucket is None:
            if len(self._buckets) >= _MAX_TRACKED:
                self._forget_some(now)
            bucket = self._buckets[host] = _Bucket(float(self.max_failures), now)
        bucket.tokens = max(0.0, bucket.tokens - 1.0)
        return bucket.tokens < 1.0

    def _forget_some(self, now: float) -> None:
        for host in list(self._buckets):
            self._bucket(host, now)
        # full buckets carry no information; then the fullest (oldest failures) go
        keep = sorted(self._buckets.items(), key=lambda kv: kv[1].tokens)[: _MAX_TRACKED // 2]
        self._buckets = {h: b for h, b in keep if b.tokens < self.max_failures}
