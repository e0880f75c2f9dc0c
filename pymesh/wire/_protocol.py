"""The distribution protocol as a sans-IO state machine: bytes in, events out.

One :class:`DistProtocol` object is one end of one node-to-node connection. It
never touches a socket or a clock. The runtime's asyncio adapter pumps bytes:

* inputs — :meth:`DistProtocol.receive_data` (returns the events those bytes
  completed) and :meth:`DistProtocol.receive_eof`;
* commands — :meth:`DistProtocol.decide` (the acceptor's answer to a peer's name),
  :meth:`DistProtocol.send_control`, :meth:`DistProtocol.send_tick`;
* output — :meth:`DistProtocol.data_to_send`, the bytes to write now.

The handshake
-------------
Every handshake message is one frame holding a msgpack map with an ``"op"`` key.
The initiator *I* dials the acceptor *A*::

    I -> A  name       {vmin, vmax, name, flags, creation}
    A -> I  status     {status: ok | ok_simultaneous | nok | not_allowed | alive}
    I -> A  alive      {continue: bool}             only after status "alive"
    A -> I  challenge  {version, name, flags, creation, challenge: 32 random bytes}
    I -> A  reply      {challenge: 32 random bytes, digest}
    A -> I  ack        {digest}

``digest`` is HMAC-SHA256 keyed by the cookie over a role tag, the challenge
being answered and both node names; the role tag stops a peer from reflecting
our own challenge back at us, and the cookie itself never crosses the wire.
Digests are compared in constant time (:func:`hmac.compare_digest`).

Status meanings (as the BEAM's): ``ok`` go on; ``ok_simultaneous`` go on, and
the acceptor dropped its own attempt to dial us; ``nok`` the acceptor's own
attempt wins, give up; ``not_allowed`` refused (version, name, policy);
``alive`` the acceptor already has a connection to this name — the initiator
answers ``continue: true`` if that one is stale (we restarted), else false.

Every legal step is one row of :data:`TRANSITIONS`; any other message in any
state is a :class:`RemoteProtocolError`.

After the handshake
-------------------
A frame carries a batch: one msgpack array of control messages (see
:mod:`pymesh.wire._control`; a frame of bare messages back to back is accepted
too); a zero-length frame is a tick. :meth:`receive_data` returns the control
messages as plain lists ``[op, *fields]`` — checked for a known op and the
right arity, a ``SEND_TUPLE`` handed on as the ``SEND`` it stands for — and
the handshake's events as :class:`PeerNamed`, :class:`Refused`,
:class:`Connected` objects.

Two ways in, the same events out: :meth:`receive_data` takes bytes (and copies
them into the receive buffer); :meth:`get_buffer` / :meth:`buffer_updated` let
the transport read straight into that buffer (asyncio's ``BufferedProtocol``),
and frames are then decoded where they lie. Two ways out: :meth:`data_to_send`
(one bytes object) and :meth:`buffers_to_send` (for ``writelines``: a large
payload stays the object that was sent).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import reprlib
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from .._errors import (
    AuthenticationError,
    EncodeError,
    HandshakeError,
    LocalProtocolError,
    RemoteProtocolError,
)
from ._control import ARITY, SEND, SEND_TUPLE
from ._frames import DEFAULT_MAX_FRAME, HEADER, TICK_FRAME, FrameBuffer
from ._terms import BATCH_HEAD, DecodeLimits, batch_header, decode_all, decode_batch, encode, join_small

__all__ = [
    "DistProtocol",
    "Role",
    "State",
    "PeerNamed",
    "Refused",
    "Connected",
    "TRANSITIONS",
    "PROTOCOL_VERSION",
    "FLAG_HIDDEN",
    "STATUSES",
    "refusal",
]

#: The highest protocol version this code speaks; peers negotiate the highest common one.
PROTOCOL_VERSION: Final = 2
MIN_PROTOCOL_VERSION: Final = 2

#: Handshake flag: this node is hidden (its connections are not propagated).
FLAG_HIDDEN: Final = 0x1

STATUSES: Final = ("ok", "ok_simultaneous", "nok", "not_allowed", "alive")
_GO_ON = ("ok", "ok_simultaneous")
_MAX_HANDSHAKE_FRAME = 4096
_CHALLENGE_BYTES = 32
_MAX_NAME = 255


class Role(enum.Enum):
    INITIATOR = "initiator"
    ACCEPTOR = "acceptor"


class State(enum.Enum):
    # initiator
    WAIT_STATUS = "wait_status"
    WAIT_CHALLENGE = "wait_challenge"
    WAIT_ACK = "wait_ack"
    # acceptor
    WAIT_NAME = "wait_name"
    DECIDE = "decide"
    WAIT_ALIVE = "wait_alive"
    WAIT_REPLY = "wait_reply"
    # both
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class PeerNamed:
    """The acceptor learned who is dialing; answer with :meth:`DistProtocol.decide`."""

    name: str
    flags: int
    creation: int
    version: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The handshake ended without a connection; ``status`` says why."""

    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class Connected:
    """The handshake succeeded; control messages may flow."""

    name: str
    flags: int
    creation: int
    version: int

    @property
    def hidden(self) -> bool:
        return bool(self.flags & FLAG_HIDDEN)


#: (state, incoming handshake op) -> handler method. The whole handshake.
TRANSITIONS: Final[dict[tuple[State, str], str]] = {
    (State.WAIT_STATUS, "status"): "_on_status",
    (State.WAIT_CHALLENGE, "challenge"): "_on_challenge",
    (State.WAIT_ACK, "ack"): "_on_ack",
    (State.WAIT_NAME, "name"): "_on_name",
    (State.WAIT_ALIVE, "alive"): "_on_alive",
    (State.WAIT_REPLY, "reply"): "_on_reply",
}


def digest(cookie: bytes, role: Role, challenge: bytes, initiator: str, acceptor: str) -> bytes:
    """HMAC-SHA256 proof of knowing ``cookie``; ``role`` is the prover's role."""
    msg = b"\0".join(
        (b"pymesh-dist", role.value.encode(), challenge, initiator.encode(), acceptor.encode())
    )
    return hmac.new(cookie, msg, hashlib.sha256).digest()


def _field(msg: dict[str, Any], key: str, kind: type) -> Any:
    value = msg.get(key)
    if type(value) is not kind:
        raise HandshakeError(f"handshake message {msg.get('op')!r}: field {key!r} missing or not {kind.__name__}")
    return value


def _valid_node_name(name: str) -> bool:
    return 0 < len(name) <= _MAX_NAME and name.count("@") == 1 and not name.startswith("@") and not name.endswith("@")


class DistProtocol:
    """One end of a distribution connection, as a pure state machine.

    ``name`` is this node's full name, ``cookie`` the shared secret, ``flags`` a
    bitmask of ``FLAG_*``, ``creation`` this node's incarnation number. An
    initiator must know the name it dials (``peer``) so that its digest binds it.
    ``max_frame`` is the largest frame a peer may send once connected (before
    that, 4096 bytes); ``limits`` caps the containers of its terms
    (:meth:`DecodeLimits.for_frame` of ``max_frame`` by default).
    """

    def __init__(
        self,
        role: Role,
        name: str,
        cookie: bytes | str,
        *,
        flags: int = 0,
        creation: int = 0,
        peer: str | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        limits: DecodeLimits | None = None,
    ) -> None:
        if role is Role.INITIATOR and not peer:
            raise LocalProtocolError("an initiator must name the node it dials")
        self.role = role
        self.name = name
        self._cookie = cookie.encode() if isinstance(cookie, str) else bytes(cookie)
        self.flags = flags
        self.creation = creation
        self.peer: str | None = peer
        self.peer_flags = 0
        self.peer_creation = 0
        self.version = 0
        self._reader = FrameBuffer(_MAX_HANDSHAKE_FRAME)  # max_frame applies once connected, however small
        self._max_frame = max_frame
        self._limits = limits if limits is not None else DecodeLimits.for_frame(max_frame)
        self._out: list[bytes] = []  # framed handshake bytes
        # encoded control messages awaiting a frame: bytes, or a list of parts
        # (encode_send of a large payload; _batch_parts says one is there)
        self._batch: list[bytes | list[bytes]] = []
        self._batch_size = 0
        self._batch_parts = False
        self._my_challenge = b""
        self._peer_challenge = b""
        if role is Role.INITIATOR:
            self.state = State.WAIT_STATUS
            self._send_hs(
                op="name",
                vmin=MIN_PROTOCOL_VERSION,
                vmax=PROTOCOL_VERSION,
                name=name,
                flags=flags,
                creation=creation,
            )
        else:
            self.state = State.WAIT_NAME

    # --- inputs ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Any]:
        """Feed received bytes; return the events they complete, in order.

        Raises :class:`RemoteProtocolError` (or a subclass) when the peer broke
        the protocol; the protocol is then CLOSED and the connection must go.
        """
        if self.state is State.CLOSED:
            return []
        self._reader.feed(data)
        return self._received()

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the next read should put its bytes (``BufferedProtocol``
        style): the free room of the receive buffer. Report the read with
        :meth:`buffer_updated` before asking again."""
        return self._reader.get_buffer()

    def buffer_updated(self, nbytes: int) -> list[Any]:
        """A read put ``nbytes`` into the room :meth:`get_buffer` gave; return
        the events they complete, as :meth:`receive_data` does. Frames are
        decoded where they lie in the buffer: no copy of the bytes read."""
        self._reader.written(nbytes)
        if self.state is State.CLOSED:
            return []
        return self._received()

    def _received(self) -> list[Any]:
        reader = self._reader
        try:
            if self.state is State.CONNECTED:
                return self._control_events(reader.pop_all())
            events: list[Any] = []
            while self.state is not State.CONNECTED and self.state is not State.CLOSED:
                payload = reader.pop()  # one at a time: the frame limit changes on connect
                if payload is None:
                    return events
                event = self._handshake_frame(payload)
                if event is not None:
                    events.append(event)
            if self.state is State.CONNECTED:
                events += self._control_events(reader.pop_all())
            return events
        except RemoteProtocolError:
            self.state = State.CLOSED
            raise

    def trim(self) -> None:
        """Give back the memory of a receive buffer that grew for a burst and is
        empty now (the runtime calls it every tick interval)."""
        self._reader.shrink()

    def received_head(self, n: int) -> bytes:
        """The first ``n`` bytes received and not yet consumed (to tell what a
        peer that broke the protocol was speaking)."""
        return self._reader.head(n)

    def receive_eof(self) -> None:
        """The peer closed its side; raises if that cut a message in half."""
        buffered = self._reader.buffered
        self.state = State.CLOSED
        if buffered:
            raise RemoteProtocolError(f"connection closed inside a frame ({buffered} bytes pending)")

    def _control_events(self, frames: list[bytes]) -> list[Any]:
        out: list[Any] = []
        arity = ARITY
        limits = self._limits
        for payload in frames:
            if not payload:
                continue  # a tick: its arrival alone is the news
            if payload[0] == BATCH_HEAD:
                msgs = decode_batch(payload, limits)
            else:  # a frame of bare messages, one after another: accepted too
                msgs = decode_all(bytes(payload), limits)
            for i, m in enumerate(msgs):
                if type(m) is not list or not m or type(op := m[0]) is not int:
                    raise RemoteProtocolError(f"malformed control message: {brief(m)}")
                if arity.get(op) != len(m):
                    if op == SEND_TUPLE and len(m) >= 2:
                        msgs[i] = [SEND, m[1], tuple(m[2:])]  # a send like any other from here on
                        continue
                    raise RemoteProtocolError(f"malformed control message: {brief(m)}")
            out += msgs
        return out

    def _handshake_frame(self, payload: bytes) -> Any:
        try:
            msg = msgpack.unpackb(payload, strict_map_key=True)
        except Exception as e:
            raise HandshakeError(f"malformed handshake frame: {e}") from None
        if type(msg) is not dict or type(msg.get("op")) is not str:
            raise HandshakeError("handshake frame is not a message map")
        handler = TRANSITIONS.get((self.state, msg["op"]))
        if handler is None:
            raise HandshakeError(f"unexpected handshake message {msg['op']!r} in state {self.state.value}")
        return getattr(self, handler)(msg)

    # --- the handshake, one method per row of TRANSITIONS ---------------------------

    def _on_name(self, msg: dict[str, Any]) -> Any:
        vmin, vmax = _field(msg, "vmin", int), _field(msg, "vmax", int)
        name = _field(msg, "name", str)
        flags, creation = _field(msg, "flags", int), _field(msg, "creation", int)
        self.peer, self.peer_flags, self.peer_creation = name, flags, creation
        if not _valid_node_name(name):
            return self._refuse_peer(f"invalid node name {name!r}")
        common = min(vmax, PROTOCOL_VERSION)
        if common < max(vmin, MIN_PROTOCOL_VERSION):
            return self._refuse_peer(
                f"no common protocol version (peer {vmin}..{vmax}, ours {MIN_PROTOCOL_VERSION}..{PROTOCOL_VERSION})"
            )
        self.version = common
        self.state = State.DECIDE
        return PeerNamed(name, flags, creation, common)

    def _refuse_peer(self, reason: str) -> Refused:
        self._send_hs(op="status", status="not_allowed", reason=reason)
        self.state = State.CLOSED
        return Refused("not_allowed", reason)

    def _on_status(self, msg: dict[str, Any]) -> Any:
        status = _field(msg, "status", str)
        if status in _GO_ON:
            self.state = State.WAIT_CHALLENGE
            return None
        if status == "alive":
            # We are dialing, so we hold no live connection to the peer: theirs is stale.
            self._send_hs(op="alive", **{"continue": True})
            self.state = State.WAIT_CHALLENGE
            return None
        if status in ("nok", "not_allowed"):
            self.state = State.CLOSED
            reason = msg.get("reason")
            return Refused(status, reason if type(reason) is str else status)
        raise HandshakeError(f"unknown handshake status {status!r}")

    def _on_challenge(self, msg: dict[str, Any]) -> Any:
        version = _field(msg, "version", int)
        name = _field(msg, "name", str)
        if not MIN_PROTOCOL_VERSION <= version <= PROTOCOL_VERSION:
            raise HandshakeError(f"peer chose protocol version {version}, which we do not speak")
        if name != self.peer:
            raise HandshakeError(f"dialed {self.peer!r} but the peer calls itself {name!r}")
        challenge = _field(msg, "challenge", bytes)
        if len(challenge) != _CHALLENGE_BYTES:
            raise HandshakeError("challenge has the wrong length")
        self.version = version
        self.peer_flags = _field(msg, "flags", int)
        self.peer_creation = _field(msg, "creation", int)
        self._peer_challenge = challenge
        self._my_challenge = os.urandom(_CHALLENGE_BYTES)
        self._send_hs(
            op="reply",
            challenge=self._my_challenge,
            digest=digest(self._cookie, Role.INITIATOR, challenge, self.name, name),
        )
        self.state = State.WAIT_ACK
        return None

    def _on_ack(self, msg: dict[str, Any]) -> Any:
        assert self.peer is not None
        expected = digest(self._cookie, Role.ACCEPTOR, self._my_challenge, self.name, self.peer)
        if not hmac.compare_digest(_field(msg, "digest", bytes), expected):
            raise AuthenticationError(f"{self.peer} answered our challenge wrongly: the cookies differ")
        return self._connected()

    def _on_alive(self, msg: dict[str, Any]) -> Any:
        go_on = msg.get("continue")
        if type(go_on) is not bool:
            raise HandshakeError("alive answer lacks a boolean 'continue'")
        if not go_on:
            self.state = State.CLOSED
            return Refused("alive", "the peer keeps its existing connection")
        self._send_challenge()
        return None

    def _on_reply(self, msg: dict[str, Any]) -> Any:
        assert self.peer is not None
        peer_digest = _field(msg, "digest", bytes)
        expected = digest(self._cookie, Role.INITIATOR, self._my_challenge, self.peer, self.name)
        if not hmac.compare_digest(peer_digest, expected):
            raise AuthenticationError(f"{self.peer} answered our challenge wrongly: the cookies differ")
        challenge = _field(msg, "challenge", bytes)
        if len(challenge) != _CHALLENGE_BYTES:
            raise HandshakeError("challenge has the wrong length")
        self._send_hs(op="ack", digest=digest(self._cookie, Role.ACCEPTOR, challenge, self.peer, self.name))
        return self._connected()

    def _send_challenge(self) -> None:
        self._my_challenge = os.urandom(_CHALLENGE_BYTES)
        self._send_hs(
            op="challenge",
            version=self.version,
            name=self.name,
            flags=self.flags,
            creation=self.creation,
            challenge=self._my_challenge,
        )
        self.state = State.WAIT_REPLY

    def _connected(self) -> Connected:
        assert self.peer is not None
        self.state = State.CONNECTED
        self._reader.max_frame = self._max_frame
        return Connected(self.peer, self.peer_flags, self.peer_creation, self.version)

    # --- commands -------------------------------------------------------------------

    def decide(self, status: str, reason: str = "") -> Refused | None:
        """The acceptor's answer to :class:`PeerNamed`: one of :data:`STATUSES`.

        ``ok``/``ok_simultaneous`` go on to the challenge; ``alive`` asks the
        initiator whether our old connection is stale; ``nok``/``not_allowed``
        end the handshake and return a :class:`Refused` event.
        """
        if self.state is not State.DECIDE:
            raise LocalProtocolError(f"decide() in state {self.state.value}; it answers a PeerNamed event")
        if status not in STATUSES:
            raise LocalProtocolError(f"unknown handshake status {status!r}")
        self._send_hs(op="status", status=status, **({"reason": reason} if reason else {}))
        if status in _GO_ON:
            self._send_challenge()
            return None
        if status == "alive":
            self.state = State.WAIT_ALIVE
            return None
        self.state = State.CLOSED
        return Refused(status, reason or status)

    def send_control(self, msg: list[Any]) -> int:
        """Queue one control message; return its encoded size.

        Allowed before the handshake completes (messages wait for it, as sends
        to a node being connected do on the BEAM). Raises :class:`EncodeError`
        when the message cannot be encoded or exceeds ``max_frame`` — the
        message is then dropped and the connection unaffected.
        """
        data = encode(msg)
        size = len(data)
        if size > self._max_frame - _BATCH_OVERHEAD:
            raise EncodeError(f"message of {size} bytes exceeds the frame limit of {self._max_frame}")
        self._batch.append(data)
        self._batch_size += size
        return size

    def send_encoded(self, data: bytes | list[bytes]) -> int:
        """Queue a control message encoded already: the bytes of :func:`encode`,
        or the list of parts :func:`encode_send` returns for a large payload
        (they are written as they are, without being joined). Returns the
        bytes now queued (:attr:`pending_bytes`)."""
        self._batch.append(data)
        if type(data) is bytes:
            self._batch_size += len(data)
        else:
            self._batch_size += sum(map(len, data))
            self._batch_parts = True
        return self._batch_size

    def send_tick(self) -> None:
        """Queue a heartbeat (a zero-length frame)."""
        if self.state is State.CONNECTED:
            self._out.append(TICK_FRAME)

    @property
    def pending_bytes(self) -> int:
        """Control-message bytes queued and not yet returned by :meth:`data_to_send`."""
        return self._batch_size

    def data_to_send(self) -> bytes:
        """Everything to write now, as one bytes object (see :meth:`buffers_to_send`)."""
        return b"".join(self.buffers_to_send())

    def buffers_to_send(self) -> list[bytes]:
        """Everything to write now, as buffers for one ``writelines``: handshake
        frames, then (once connected) the queued control messages in as few
        frames as ``max_frame`` allows, each frame one batch (a msgpack array
        of the messages). Small pieces are joined; a large payload stays the
        object the user sent, so it is copied only by the kernel."""
        out = self._out
        if self._batch and self.state is State.CONNECTED:
            batch, size, parts = self._batch, self._batch_size, self._batch_parts
            self._batch, self._batch_size, self._batch_parts = [], 0, False
            if size + _BATCH_OVERHEAD > self._max_frame:
                self._split_frames(batch, out)
            elif parts:
                out.append(HEADER.pack(size + _BATCH_OVERHEAD) + batch_header(len(batch)))
                _coalesce(batch, out)
            else:
                out.append(HEADER.pack(size + _BATCH_OVERHEAD) + batch_header(len(batch)))
                out.append(b"".join(batch))  # type: ignore[arg-type]
        if not out:
            return out
        self._out = []
        return out

    def _split_frames(self, batch: list[bytes | list[bytes]], out: list[bytes]) -> None:
        limit = self._max_frame - _BATCH_OVERHEAD
        chunk: list[bytes | list[bytes]] = []
        size = 0
        for msg in batch:
            n = len(msg) if type(msg) is bytes else sum(map(len, msg))
            if chunk and size + n > limit:
                out.append(HEADER.pack(size + _BATCH_OVERHEAD) + batch_header(len(chunk)))
                _coalesce(chunk, out)
                chunk, size = [], 0
            chunk.append(msg)
            size += n
        if chunk:
            out.append(HEADER.pack(size + _BATCH_OVERHEAD) + batch_header(len(chunk)))
            _coalesce(chunk, out)

    def _send_hs(self, **msg: Any) -> None:
        payload = msgpack.packb(msg, use_bin_type=True)
        self._out.append(HEADER.pack(len(payload)) + payload)


#: Bytes a frame spends on its batch header (a msgpack array32: 0xdd + u32 count).
_BATCH_OVERHEAD = 5

#: Pieces at least this long are written as they are; shorter ones are joined
#: (a ``writev`` of thousands of tiny buffers costs more than one copy).
_WRITE_AS_IS = 16 * 1024


def _coalesce(batch: list[bytes | list[bytes]], out: list[bytes]) -> None:
    """Append a batch's bytes to ``out``: every run of small pieces joined into
    one buffer, each large piece (a payload ``encode_send`` kept apart) as is."""
    pieces = (piece for msg in batch for piece in ((msg,) if type(msg) is bytes else msg))
    join_small(pieces, _WRITE_AS_IS, out)  # type: ignore[arg-type]


def refusal(reason: str) -> bytes:
    """A status ``not_allowed`` frame, for an acceptor that refuses a connection
    before reading the initiator's name (e.g. a plain connection to a TLS node):
    the initiator, waiting for a status, reports ``reason``."""
    payload = msgpack.packb({"op": "status", "status": "not_allowed", "reason": reason}, use_bin_type=True)
    return HEADER.pack(len(payload)) + payload


_brief_repr = reprlib.Repr()
_brief_repr.maxlevel = 4
_brief_repr.maxstring = _brief_repr.maxother = 40


def brief(obj: Any) -> str:
    """A short repr of a peer's term for an error message: bounded in depth and
    length, so that a deeply nested term cannot make the report itself fail."""
    try:
        text = _brief_repr.repr(obj)
    except Exception:  # a RecursionError, or a broken __repr__
        text = f"<{type(obj).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."
