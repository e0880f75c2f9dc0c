"""Fuzz targets: functions of one ``bytes`` that must parse or raise a documented protocol error.

The rule every target checks: whatever bytes a peer sends, pymesh's wire
parsers either accept them or raise :class:`~pymesh.RemoteProtocolError` (or
one of its subclasses: :class:`~pymesh.DecodeError`, :class:`~pymesh.FrameTooLarge`,
:class:`~pymesh.HandshakeError`, :class:`~pymesh.AuthenticationError`) — never
anything else — and what they accept is well-formed. A target raises
:class:`FuzzFailure` (or lets an undocumented exception through) when the
rule is broken; the runners treat anything but a normal return as a crash.

Protocol targets read two knob bytes first (``data[0]``: the acceptor's
decision or the side; ``data[1]``: how the rest is cut into chunks), so one
input describes a whole session. The handshake's random challenges are made
deterministic while a target runs (:func:`fixed_challenges`), so a recorded
handshake replays to ``CONNECTED`` and mutations of what follows it reach the
control-message decoder.

Targets: ``terms``, ``frames``, ``acceptor``, ``initiator``, ``connected``,
``epmd`` (the port mapper's request parser and response parsers).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from pymesh import DecodeError, EncodeError, FrameTooLarge, RemoteProtocolError
from pymesh.wire import (
    STATUSES,
    Connected,
    DistProtocol,
    FrameReader,
    PeerNamed,
    Pid,
    Ref,
    Refused,
    RemoteError,
    Role,
    State,
    _protocol,
    decode,
    decode_all,
    encode,
)
from pymesh.wire import _epmd as epmd
from pymesh.wire._control import ARITY
from pymesh.wire._frames import FrameBuffer

__all__ = ["A_NAME", "COOKIE", "I_NAME", "TARGETS", "FuzzFailure", "fixed_challenges", "pair"]

I_NAME = "fuzz-i@host"
A_NAME = "fuzz-a@host"
COOKIE = "fuzz-cookie"
MAX_FRAME = 1 << 16


class FuzzFailure(AssertionError):
    """A target saw the rule broken (accepted something malformed, an inconsistent state, ...)."""


@contextlib.contextmanager
def fixed_challenges() -> Iterator[None]:
    """Make :class:`DistProtocol`'s challenges deterministic (``0x5a`` bytes) while the block runs."""
    real = _protocol.os
    _protocol.os = SimpleNamespace(urandom=lambda n: b"\x5a" * n)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        _protocol.os = real  # type: ignore[attr-defined]


def pair(max_frame: int = MAX_FRAME) -> tuple[DistProtocol, DistProtocol]:
    """An initiator and an acceptor, handshake done (``ok``)."""
    i = DistProtocol(Role.INITIATOR, I_NAME, COOKIE, creation=3, peer=A_NAME, max_frame=max_frame)
    a = DistProtocol(Role.ACCEPTOR, A_NAME, COOKIE, creation=5, max_frame=max_frame)
    a.receive_data(i.data_to_send())
    a.decide("ok")
    i.receive_data(a.data_to_send())
    a.receive_data(i.data_to_send())
    i.receive_data(a.data_to_send())
    if not (i.state is a.state is State.CONNECTED):  # pragma: no cover - the handshake itself broke
        raise FuzzFailure("a clean handshake did not connect")
    return i, a


def _chunks(data: bytes, knob: int) -> Iterator[bytes]:
    """``data`` cut as ``knob`` says: 240+ whole; 200-239 one frame at a time (as a peer that
    waits for each answer writes them; what is not a whole frame comes last); else pieces of
    ``knob % 16 + 1`` bytes."""
    if knob >= 240:
        yield data
    elif knob >= 200:
        pos = 0
        while len(data) - pos >= 4:
            end = pos + 4 + int.from_bytes(data[pos : pos + 4], "big")
            if end > len(data):
                break
            yield data[pos:end]
            pos = end
        if pos < len(data):
            yield data[pos:]
    else:
        size = knob % 16 + 1
        for start in range(0, len(data), size):
            yield data[start : start + size]


# --- terms and frames --------------------------------------------------------------------------------


def fuzz_terms(data: bytes) -> None:
    """``decode``/``decode_all``: a term or :class:`DecodeError`; a decoded term encodes, and that
    encoding decodes to the same term (the same shapes, floats bit for bit, sets in any order)."""
    try:
        term = decode(data)
    except DecodeError:
        pass
    else:
        again = decode(_reencode(term))
        if _canon(again) != _canon(term):
            raise FuzzFailure(f"{term!r:.80} came back as {again!r:.80}")
    try:
        terms = decode_all(data)
    except DecodeError:
        return
    if type(terms) is not list:
        raise FuzzFailure(f"decode_all returned {type(terms).__name__}")


def _reencode(term: Any) -> bytes:
    """``encode(term)``: a term a peer could send is one we can send on."""
    try:
        return encode(term)
    except EncodeError as e:
        raise FuzzFailure(f"a decoded term does not encode again: {e}") from None


def _canon(x: Any) -> Any:
    """A comparable stand-in for a term: types kept, floats as their bits, sets sorted."""
    t = type(x)
    if t is float:
        return ("float", struct.pack(">d", x))
    if t is list or t is tuple:
        return (t.__name__, tuple(_canon(i) for i in x))
    if t is set or t is frozenset:
        return (t.__name__, tuple(sorted((_canon(i) for i in x), key=repr)))
    if t is dict:
        return ("dict", tuple((_canon(k), _canon(v)) for k, v in x.items()))
    if t is Pid or t is Ref:
        return (t.__name__, x.node, x.id, x.creation)
    if t is RemoteError:
        return ("RemoteError", x.type_name, x.message)
    return (t.__name__, x)


def fuzz_frames(data: bytes) -> None:
    """:class:`FrameReader` and :class:`FrameBuffer`: frames within ``max_frame`` or
    :class:`FrameTooLarge`, whatever the chunking; a tiny buffer read into piece by
    piece (growing, moving its tail) cuts the same frames as the whole input fed at once."""
    if len(data) < 2:
        return
    _fuzz_frame_reader(data)
    _fuzz_frame_buffer(data)


def _fuzz_frame_buffer(data: bytes) -> None:
    max_frame, body = data[0] * 4, data[2:]
    buf = FrameBuffer(max_frame, initial=16, largest=64)  # tiny: growth and moves on every input
    got: list[bytes] = []
    try:
        for chunk in _chunks(body, data[1]):
            pos = 0
            while pos < len(chunk):  # reads into the room offered, as a transport does
                room = buf.get_buffer(1)
                n = min(len(room), len(chunk) - pos)
                room[:n] = chunk[pos : pos + n]
                room.release()
                buf.written(n)
                pos += n
                got += [bytes(f) for f in buf.pop_all()]
    except FrameTooLarge:
        return
    if any(len(f) > max_frame for f in got):
        raise FuzzFailure(f"a frame passed the limit of {max_frame}")
    reader = FrameReader(max_frame)
    reader.feed(body)
    if got != reader.pop_all() or buf.buffered != reader.buffered:
        raise FuzzFailure("FrameBuffer and FrameReader cut the same bytes differently")


def _fuzz_frame_reader(data: bytes) -> None:
    max_frame, body = data[0] * 4, data[2:]
    reader = FrameReader(max_frame)
    total = 0
    try:
        for i, chunk in enumerate(_chunks(body, data[1])):
            reader.feed(chunk)
            frames = reader.pop_all() if i % 2 else [f for f in iter(reader.pop, None)]
            for f in frames:
                if len(f) > max_frame:
                    raise FuzzFailure(f"a {len(f)}-byte frame passed a limit of {max_frame}")
                total += 4 + len(f)
    except FrameTooLarge:
        return
    if total + reader.buffered != len(body):
        raise FuzzFailure(f"bytes lost or invented: {total} framed + {reader.buffered} buffered != {len(body)}")


# --- the distribution protocol -----------------------------------------------------------------------


def _deliver(proto: DistProtocol, chunk: bytes, buffered: bool) -> list[Any]:
    """One read: handed over as bytes (``receive_data``), or read into the
    protocol's own buffer as a ``BufferedProtocol`` transport does (as many
    reads as the room it offers takes)."""
    if not buffered:
        return proto.receive_data(chunk)
    events: list[Any] = []
    pos = 0
    while pos < len(chunk):
        room = proto.get_buffer(-1)
        n = min(len(room), len(chunk) - pos)
        room[:n] = chunk[pos : pos + n]
        room.release()
        events += proto.buffer_updated(n)
        pos += n
    return events


def _feed(proto: DistProtocol, data: bytes, knob: int, on_named: Callable[[PeerNamed], None] | None) -> list[Any]:
    """Feed ``data`` to ``proto`` in chunks; check what comes out. Returns the events.
    Half the knobs deliver through the receive buffer (``get_buffer``/``buffer_updated``)."""
    events: list[Any] = []
    connected = 0
    buffered = bool((knob ^ (knob >> 4)) & 1)
    try:
        for chunk in _chunks(data, knob):
            before = proto.state
            for event in _deliver(proto, chunk, buffered):
                events.append(event)
                kind = type(event)
                if kind is list:
                    if proto.state is not State.CONNECTED:
                        raise FuzzFailure("a control message before the handshake completed")
                    if not event or type(event[0]) is not int or ARITY.get(event[0]) != len(event):
                        raise FuzzFailure(f"a malformed control message got through: {event!r:.80}")
                elif kind is Connected:
                    connected += 1
                    if event.name != proto.peer or connected > 1:
                        raise FuzzFailure(f"Connected twice, or to the wrong peer: {event}")
                elif kind is PeerNamed:
                    if on_named is not None:
                        on_named(event)
                elif kind is not Refused:
                    raise FuzzFailure(f"an undocumented event {event!r:.80}")
            if before is State.CONNECTED and proto.state is not State.CONNECTED and proto.state is not State.CLOSED:
                raise FuzzFailure(f"left CONNECTED for {proto.state}")
        with contextlib.suppress(RemoteProtocolError):
            proto.receive_eof()
    except RemoteProtocolError:
        if proto.state is not State.CLOSED:
            raise FuzzFailure(f"raised but stayed in {proto.state}") from None
        if proto.receive_data(b"\x00\x00\x00\x00") != []:
            raise FuzzFailure("a closed protocol still produced events")
    return events


def fuzz_acceptor(data: bytes) -> None:
    """An acceptor fed a whole initiator byte stream; ``data[0]`` picks its decision."""
    if len(data) < 2:
        return
    status = STATUSES[data[0] % len(STATUSES)]
    with fixed_challenges():
        proto = DistProtocol(Role.ACCEPTOR, A_NAME, COOKIE, creation=5, max_frame=MAX_FRAME)

        def decide(named: PeerNamed) -> None:
            proto.decide(status)

        _feed(proto, data[2:], data[1], decide)


def fuzz_initiator(data: bytes) -> None:
    """An initiator dialing ``A_NAME`` fed a whole acceptor byte stream."""
    if len(data) < 2:
        return
    with fixed_challenges():
        proto = DistProtocol(Role.INITIATOR, I_NAME, COOKIE, creation=3, peer=A_NAME, max_frame=MAX_FRAME)
        proto.data_to_send()
        _feed(proto, data[2:], data[1], None)


def fuzz_connected(data: bytes) -> None:
    """A connected end (``data[0]`` even: the acceptor's, else the initiator's) fed control frames."""
    if len(data) < 2:
        return
    i, a = pair()
    _feed(a if data[0] % 2 == 0 else i, data[2:], data[1], None)


def fuzz_epmd(data: bytes) -> None:
    """The port mapper's request parser (server side) and every response parser (client side)."""
    parser = epmd.RequestParser()
    try:
        for chunk in _chunks(data, data[0] if data else 0):
            parser.receive_data(chunk)
            while parser.next_request() is not None:
                pass
        parser.receive_eof()
        while parser.next_request() is not None:
            pass
    except RemoteProtocolError:
        pass
    for parse in (
        epmd.parse_alive2_response,
        epmd.parse_port2_response,
        epmd.parse_names_response,
        epmd.parse_dump_response,
        epmd.parse_kill_response,
        epmd.parse_stop_response,
    ):
        with contextlib.suppress(RemoteProtocolError):
            parse(data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "terms": fuzz_terms,
    "frames": fuzz_frames,
    "acceptor": fuzz_acceptor,
    "initiator": fuzz_initiator,
    "connected": fuzz_connected,
    "epmd": fuzz_epmd,
}
