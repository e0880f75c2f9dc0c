"""The one exception tree of pymesh.

Every error pymesh raises derives from :class:`PymeshError`, so ``except
pymesh.PymeshError`` catches all of them. The tree splits errors by *blame*,
as h11 and trio do:

* :class:`LocalProtocolError` — *we* misused the distribution protocol (a bug in
  the caller or in pymesh); :class:`RemoteProtocolError` — the *peer* sent
  something invalid. A peer's garbage never looks like our bug.

Expected outcomes that a caller branches on (a taken name, a call that timed
out) are exceptions that carry the data needed to act on them, e.g.
:class:`AlreadyRegistered` carries the owner pid in ``e.pid``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "PymeshError",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "FrameTooLarge",
    "HandshakeError",
    "AuthenticationError",
    "EncodeError",
    "DecodeError",
    "NodeError",
    "NotAlive",
    "NameTaken",
    "EpmdError",
    "WouldBlock",
    "ProcessError",
    "NoProcess",
    "NotAProcess",
    "BadName",
    "ReceiveTimeout",
    "CallTimeout",
    "CallExit",
    "SpawnError",
    "AlreadyRegistered",
    "UnknownRegistry",
    "RegistryError",
    "BadKey",
    "LockAborted",
    "ConfigError",
    "EtcdError",
    "DiscoveryError",
]


class PymeshError(Exception):
    """Base class of every exception pymesh raises."""


# --- the wire -----------------------------------------------------------------


class ProtocolError(PymeshError):
    """The distribution or port-mapper protocol was violated."""


class LocalProtocolError(ProtocolError):
    """We asked the protocol core for something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol; the connection must close."""


class FrameTooLarge(RemoteProtocolError):
    """A peer announced a frame larger than the configured ``max_frame``."""


class HandshakeError(RemoteProtocolError):
    """The handshake failed: refused, wrong version, or a malformed message."""


class AuthenticationError(HandshakeError):
    """The peer's challenge digest did not match: the cookies differ."""


class EncodeError(PymeshError, TypeError):
    """A term holds an object the codec cannot encode (raised at ``send``).

    The message is not sent and the connection is unaffected.
    """


class DecodeError(RemoteProtocolError):
    """Bytes from a peer are not a valid term."""


# --- nodes ------------------------------------------------------------------------


class NodeError(PymeshError):
    """Base of errors about starting, naming or reaching nodes."""


class NotAlive(NodeError):
    """The operation needs a distributed node, but this one is not started."""


class NameTaken(NodeError):
    """The node name is already registered with the port mapper."""


class EpmdError(NodeError):
    """The port mapper could not be reached or answered with an error."""


class WouldBlock(PymeshError):
    """``send_nowait`` found the connection to ``node`` busy: more than its
    ``dist_buf_busy_limit`` of bytes is queued for the peer, where the BEAM
    would suspend the sender. Nothing was sent; ``await send_wait(...)``
    waits instead."""

    def __init__(self, node: str, queued: int) -> None:
        super().__init__(f"the connection to {node} is busy ({queued} bytes queued)")
        self.node = node
        self.queued = queued


class ConfigError(PymeshError, ValueError):
    """A configuration value (flag, file, environment variable) is invalid."""


# --- processes --------------------------------------------------------------------


class ProcessError(PymeshError):
    """Base of errors about processes and their names."""


class NotAProcess(ProcessError):
    """The calling code is not running inside a pymesh process or event loop."""


class NoProcess(ProcessError):
    """No process is registered under the given name (``send`` to a local name)."""

    def __init__(self, name: Any) -> None:
        super().__init__(f"no process registered as {name!r}")
        self.name = name


class BadName(ProcessError, ValueError):
    """A name cannot be registered: wrong type, reserved, or already used."""


class ReceiveTimeout(ProcessError, TimeoutError):
    """``receive(timeout=...)`` found no matching message in time."""


class CallTimeout(ProcessError, TimeoutError):
    """A ``GenServer`` call got no reply within its timeout."""

    def __init__(self, dest: Any, timeout: float) -> None:
        super().__init__(f"call to {dest!r} timed out after {timeout}s")
        self.dest = dest
        self.timeout = timeout


class CallExit(ProcessError):
    """The server of a ``call`` exited (or was never there) before replying.

    ``reason`` holds the server's exit reason: ``"noproc"``, ``"noconnection"``,
    ``"normal"``, an exception, ...
    """

    def __init__(self, dest: Any, reason: Any) -> None:
        super().__init__(f"call to {dest!r} failed: server exited with {reason!r}")
        self.dest = dest
        self.reason = reason


class SpawnError(ProcessError):
    """A remote spawn was refused (bad function path, node down, ...)."""


# --- registries -----------------------------------------------------------------


class AlreadyRegistered(ProcessError):
    """A unique key or name is taken; ``pid`` is its current owner."""

    def __init__(self, key: Any, pid: Any) -> None:
        super().__init__(f"{key!r} is already registered to {pid!r}")
        self.key = key
        self.pid = pid


class UnknownRegistry(ProcessError, LookupError):
    """No registry is running under the given name."""

    def __init__(self, name: Any) -> None:
        super().__init__(f"unknown registry {name!r}")
        self.name = name


class RegistryError(ProcessError, ValueError):
    """A registry, global name or process group was asked for something it does
    not support: ``update_value`` on a duplicate registry, a remote pid where a
    local one is needed, a bad option."""


class BadKey(ProcessError, TypeError):
    """A registry key, global name, group or lock id cannot be used: it is
    unhashable, or it cannot be encoded to travel to another node. ``key`` is
    the culprit."""

    def __init__(self, key: Any, why: str) -> None:
        super().__init__(f"bad key {key!r}: {why}")
        self.key = key


class LockAborted(ProcessError):
    """``Global.trans`` could not take its lock within its retries (OTP's ``aborted``)."""

    def __init__(self, lock_id: Any) -> None:
        super().__init__(f"could not take the global lock {lock_id!r}")
        self.lock_id = lock_id


# --- services -------------------------------------------------------------------


class EtcdError(PymeshError):
    """etcd could not be reached, timed out, or refused a request.

    ``code`` is etcd's gRPC status code when etcd itself answered (5 = not
    found, 9 = failed precondition, ...), else ``None``; ``status`` is the HTTP
    status of the gateway's answer, if any. ``kind`` names the failure in a
    word (``"unreachable"``, ``"timeout"``, ``"refused"``, ``"malformed"``) so
    that callers can tell one outage from the next without parsing messages.
    The transport error, if any, is in ``__cause__``.
    """

    def __init__(
        self, message: str, *, kind: str = "refused", code: int | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.status = status


class DiscoveryError(PymeshError):
    """A discovery backend (DNS, an HTTP API, a port mapper) failed or answered garbage.

    A discovery strategy raises it for a call that did not produce a usable
    answer; such a failure never disconnects a node. ``kind`` names the failure
    in a word (``"unreachable"``, ``"timeout"``, ``"http 503"``, ``"malformed"``)
    and is what "the same failure again" means when deciding whether to log.
    """

    def __init__(self, message: str, *, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind
