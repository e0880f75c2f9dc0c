"""``gossip``: UDP heartbeats on a multicast group (or broadcast address); connect whoever is heard.

Every ``heartbeat_interval`` (randomised between half and all of it, so nodes
started together don't beat in step) each node sends a heartbeat naming
itself to ``multicast_addr:port`` — libcluster's defaults: group
233.252.1.32, port 45892, TTL 1 (the local link only). A node that hears a
heartbeat from a node it is not connected to connects to it; gossip never
disconnects anyone (silence is not an answer).

Options: ``port``, ``if_addr`` (address to bind, 0.0.0.0), ``multicast_if``
(interface for the group, 0.0.0.0), ``multicast_addr``, ``multicast_ttl``,
``broadcast_only`` (send to ``multicast_addr`` as a broadcast address, no
group membership), ``secret``, ``heartbeat_interval`` (5 s), ``max_age``
(30 s).

With a ``secret``, heartbeats are sealed with AES-256-GCM under a key
derived from it (HKDF-SHA256): a datagram that does not authenticate —
forged, corrupted, or sealed with another secret — is dropped. Each carries
its send time: one older or newer than ``max_age`` seconds (stale), or not
newer than the last one accepted from the same node (replayed), is dropped
too. (libcluster's secret mode is AES-CBC without authentication; this one
is not wire-compatible with it.) Without a secret, heartbeats are plain and
anyone on the link can announce a node name, as in libcluster; use a secret
on any network you do not fully trust.

Dropped datagrams are logged once per sender address and reason (again
after a quiet minute), never once per datagram.

Wire format: ``b"PYMG" 0x01`` (version), then ``0x00`` + JSON ``{"n": node,
"p": port, "t": milliseconds}`` for a plain heartbeat, or ``0x01`` + 12-byte
nonce + AES-GCM(JSON) with the 6 header bytes as associated data.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import random
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._strategy import Option, Report, Strategy, flag, integer, ip_address, node_name, optional_text, port, seconds

__all__ = ["GossipStrategy", "Heartbeat", "SocketPlan", "decode", "derive_key", "encode", "socket_plan"]

MAGIC = b"PYMG\x01"
_PLAIN, _SEALED = 0, 1
_NONCE = 12
MAX_DATAGRAM = 1024
_QUEUE = 256


class Dropped(Exception):
    """A datagram that is not an acceptable heartbeat; the message says why."""


@dataclass(frozen=True)
class Heartbeat:
    """One node's announcement: its name, distribution port, and send time (ms since the epoch)."""

    node: str
    port: int | None
    sent_ms: int


def derive_key(secret: str) -> bytes:
    """The 256-bit AES-GCM key for ``secret``."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"pymesh gossip v1", info=b"heartbeat")
    return hkdf.derive(secret.encode("utf-8"))


def encode(heartbeat: Heartbeat, key: bytes | None) -> bytes:
    """Serialise a heartbeat, sealed with ``key`` if given."""
    body = json.dumps({"n": heartbeat.node, "p": heartbeat.port, "t": heartbeat.sent_ms}, separators=(",", ":"))
    if key is None:
        return MAGIC + bytes([_PLAIN]) + body.encode()
    header = MAGIC + bytes([_SEALED])
    nonce = os.urandom(_NONCE)
    return header + nonce + AESGCM(key).encrypt(nonce, body.encode(), header)


def decode(data: bytes, key: bytes | None) -> Heartbeat:
    """Parse (and with ``key``, authenticate) a datagram; raise :class:`Dropped` saying why not."""
    if len(data) > MAX_DATAGRAM or len(data) < len(MAGIC) + 1 or not data.startswith(MAGIC):
        raise Dropped("not a pymesh heartbeat")
    mode = data[len(MAGIC)]
    header, rest = data[: len(MAGIC) + 1], data[len(MAGIC) + 1 :]
    if mode == _SEALED:
        if key is None:
            raise Dropped("sealed heartbeat, but no secret is configured here")
        if len(rest) < _NONCE + 16:
            raise Dropped("truncated sealed heartbeat")
        try:
            body = AESGCM(key).decrypt(rest[:_NONCE], rest[_NONCE:], header)
        except InvalidTag:
            raise Dropped("heartbeat does not authenticate (forged, corrupted, or another secret)") from None
    elif mode == _PLAIN:
        if key is not None:
            raise Dropped("unauthenticated heartbeat, but a secret is configured here")
        body = rest
    else:
        raise Dropped(f"unknown heartbeat mode {mode}")
    try:
        fields = json.loads(body)
        node, dist_port, sent = fields["n"], fields["p"], fields["t"]
        if not isinstance(node, str) or isinstance(sent, bool) or not isinstance(sent, int):
            raise ValueError("bad field types")
        if dist_port is not None and (isinstance(dist_port, bool) or not isinstance(dist_port, int)):
            raise ValueError("bad port")
        node_name(node)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise Dropped("malformed heartbeat") from None
    return Heartbeat(node, dist_port, sent)


class _Freshness:
    """Rejects stale and replayed sealed heartbeats: each node's send times must increase."""

    def __init__(self, max_age_ms: int) -> None:
        self._max_age = max_age_ms
        self._last: dict[str, tuple[int, float]] = {}  # node -> (last sent_ms, monotonic when accepted)

    def check(self, heartbeat: Heartbeat, now_ms: int) -> None:
        if abs(now_ms - heartbeat.sent_ms) > self._max_age:
            raise Dropped("stale heartbeat (sent too long ago, or clocks disagree)")
        now = time.monotonic()
        # Forget nodes silent for longer than max_age: anything they sent
        # before is stale by now, so no replay can sneak through the gap.
        horizon = now - self._max_age / 1000
        for node in [n for n, (_, seen) in self._last.items() if seen < horizon]:
            del self._last[node]
        last = self._last.get(heartbeat.node)
        if last is not None and heartbeat.sent_ms <= last[0]:
            raise Dropped("replayed heartbeat")
        self._last[heartbeat.node] = (heartbeat.sent_ms, now)


# --- the socket ---------------------------------------------------------------------


@dataclass(frozen=True)
class SocketPlan:
    """How the gossip socket is set up: where it binds, where it sends, and its options.

    A pure value, so the multicast set-up can be checked without sending
    anything.
    """

    bind: tuple[str, int]
    destination: tuple[str, int]
    options: tuple[tuple[int, int, int | bytes], ...]


def socket_plan(config: Mapping[str, Any]) -> SocketPlan:
    """Compute the :class:`SocketPlan` for a validated gossip config."""
    gossip_port = config["port"]
    options: list[tuple[int, int, int | bytes]] = [
        (socket.SOL_SOCKET, socket.SO_REUSEADDR, 1),
        (socket.SOL_SOCKET, socket.SO_BROADCAST, 1),
    ]
    if hasattr(socket, "SO_REUSEPORT"):
        options.append((socket.SOL_SOCKET, socket.SO_REUSEPORT, 1))
    if not config["broadcast_only"]:
        interface = socket.inet_aton(config["multicast_if"])
        group = socket.inet_aton(config["multicast_addr"])
        options += [
            (socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, config["multicast_ttl"]),
            (socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1),
            (socket.IPPROTO_IP, socket.IP_MULTICAST_IF, interface),
            (socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group + interface),
        ]
    return SocketPlan(
        bind=(config["if_addr"], gossip_port),
        destination=(config["multicast_addr"], gossip_port),
        options=tuple(options),
    )


def open_socket(plan: SocketPlan) -> socket.socket:
    """Create, configure and bind the UDP socket a plan describes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for level, option, value in plan.options:
            sock.setsockopt(level, option, value)
        sock.setblocking(False)
        sock.bind(plan.bind)
    except BaseException:
        sock.close()
        raise
    return sock


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[tuple[bytes, Any]], report: Report) -> None:
        self._queue = queue
        self._report = report

    def datagram_received(self, data: bytes, addr: Any) -> None:
        # In a flood some heartbeats are lost; they repeat, so that costs nothing.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        self._report.note("gossip socket", f"{type(exc).__name__}: {exc}")


# --- the strategy -------------------------------------------------------------------


def _ipv4(value: Any) -> str:
    address = ip_address(value)
    if ipaddress.ip_address(address).version != 4:
        raise ValueError("must be an IPv4 address")
    return address


class GossipStrategy(Strategy):
    """``gossip``: UDP multicast/broadcast heartbeats; see the module docstring."""

    name = "gossip"
    options: ClassVar[Mapping[str, Option]] = {
        "port": Option(port, 45892),
        "if_addr": Option(_ipv4, "0.0.0.0", "address to bind"),
        "multicast_if": Option(_ipv4, "0.0.0.0", "interface address for the multicast group"),
        "multicast_addr": Option(_ipv4, "233.252.1.32", "where heartbeats are sent"),
        "multicast_ttl": Option(integer(0, 255), 1),
        "broadcast_only": Option(flag, False, "send to multicast_addr as a broadcast address"),
        "secret": Option(optional_text, "", "seal heartbeats with AES-GCM under this secret"),
        "heartbeat_interval": Option(seconds, 5.0),
        "max_age": Option(seconds, 30.0, "secret mode: drop heartbeats older than this"),
    }

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> None:
        if not config["broadcast_only"] and not ipaddress.ip_address(config["multicast_addr"]).is_multicast:
            raise ValueError(
                f"multicast_addr {config['multicast_addr']!r} is not a multicast address"
                " (set broadcast_only = true to send to a broadcast address)"
            )

    def __init__(self, config: Mapping[str, Any], local: Any) -> None:
        super().__init__(config, local)
        self.plan = socket_plan(config)
        self._key = derive_key(config["secret"]) if config["secret"] else None
        self._freshness = _Freshness(int(config["max_age"] * 1000))
        self._last_sent = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def run(self, report: Report) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue(maxsize=_QUEUE)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Receiver(queue, report), sock=open_socket(self.plan)
        )
        self._transport = transport
        sender = asyncio.create_task(self._beat(transport))
        try:
            while True:
                data, addr = await queue.get()
                await self._receive(data, addr, report)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def aclose(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def _receive(self, data: bytes, addr: Any, report: Report) -> None:
        sender = addr[0] if isinstance(addr, tuple) else str(addr)
        try:
            heartbeat = decode(data, self._key)
            if heartbeat.node == self.local.name:
                return
            if self._key is not None:
                self._freshness.check(heartbeat, _now_ms())
        except Dropped as why:
            report.note(f"gossip from {sender}", f"dropped: {why}")
            return
        await report.seen(heartbeat.node)

    def heartbeat(self) -> bytes:
        """The next heartbeat datagram of this node (send times strictly increase)."""
        self._last_sent = max(_now_ms(), self._last_sent + 1)
        return encode(Heartbeat(self.local.name, self.local.dist_port, self._last_sent), self._key)

    async def _beat(self, transport: asyncio.DatagramTransport) -> None:
        interval = self.config["heartbeat_interval"]
        while True:
            transport.sendto(self.heartbeat(), self.plan.destination)
            await asyncio.sleep(random.uniform(interval / 2, interval))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
