"""The EPMD (port mapper) protocol as a sans-IO codec.

Every host that runs distributed nodes runs one *port mapper* (Erlang's
``epmd``, or pymesh's own) on a well-known port, 4369 by default. A node
registers ``name -> distribution port`` with it, and another node asks it for
that port before connecting. This module speaks Erlang's real EPMD protocol
byte for byte (see the ERTS guide, "Distribution Protocol", section "EPMD
Protocol"), so pymesh nodes and Erlang nodes share one port mapper.

Nothing here touches a socket or a clock. The asyncio adapter in
:mod:`pymesh.runtime._epmd` pumps bytes through it.

Framing
-------
Every request travels as a 2-byte big-endian length, then the request: a
1-byte code followed by its fields. Responses are *not* length-prefixed: the
client knows their shape from the request it sent, and for the variable-length
ones (``NAMES``, ``DUMP``) the port mapper closes the connection when done.

======================  ====  =================================================
request                 code  response
======================  ====  =================================================
``ALIVE2_REQ``          120   ``ALIVE2_X_RESP`` (118, 32-bit creation), or
                              ``ALIVE2_RESP`` (121, 16-bit creation) when the
                              node's ``HighestVersion`` is below 6. The
                              connection stays open: closing it unregisters.
``PORT_PLEASE2_REQ``    122   ``PORT2_RESP`` (119); ``[119, Result>0]`` if the
                              name is unknown. Then close.
``NAMES_REQ``           110   EPMD port (u32), then ``name N at port P\\n``
                              lines. Then close.
``DUMP_REQ``            100   EPMD port (u32), then debug text. Then close.
``KILL_REQ``            107   ``OK`` (the port mapper stops) or ``NO``.
``STOP_REQ``            115   ``STOPPED`` or ``NOEXIST``.
======================  ====  =================================================

Using it
--------
The server side feeds bytes into a :class:`RequestParser` and pulls requests
out; responses go out with :func:`encode_response`::

    parser = RequestParser()
    parser.receive_data(chunk)
    request = parser.next_request()      # None: need more bytes
    if isinstance(request, NamesReq):
        sock.sendall(encode_response(NamesResp(4369, (("foo", 40001),))))

The client side sends :func:`encode_request` bytes and hands what it read to
one of the ``parse_*_response`` functions. Those for responses whose length is
known (:func:`parse_alive2_response`, :func:`parse_port2_response`) return
``None`` while the bytes are incomplete; the others expect everything up to the
port mapper's close.

Errors
------
Bytes from the peer that break the protocol or the limits below raise
:class:`~pymesh._errors.RemoteProtocolError` (an announced request above
:data:`MAX_REQUEST` raises its subclass :class:`~pymesh._errors.FrameTooLarge`)
with a message naming the problem; the connection should then be closed.
Asking the encoders for something the protocol cannot carry (a 300-byte name,
a port above 65535) raises :class:`~pymesh._errors.LocalProtocolError`.

Limits: a node name is 1..:data:`MAX_NAME` bytes of UTF-8 without NUL, the
extra field at most :data:`MAX_EXTRA` bytes, and a request (after the length
prefix) at most :data:`MAX_REQUEST` bytes.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from pymesh._errors import (
    FrameTooLarge,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)

__all__ = [
    "ALIVE2_REQ",
    "ALIVE2_RESP",
    "ALIVE2_X_RESP",
    "DUMP_REQ",
    "KILL_REQ",
    "NAMES_REQ",
    "PORT2_RESP",
    "PORT_PLEASE2_REQ",
    "STOP_REQ",
    "DEFAULT_EPMD_PORT",
    "NODE_TYPE_NORMAL",
    "NODE_TYPE_HIDDEN",
    "PROTOCOL_TCP_IPV4",
    "MAX_NAME",
    "MAX_EXTRA",
    "MAX_REQUEST",
    "MAX_LISTING",
    "NodeEntry",
    "Alive2Req",
    "PortPlease2Req",
    "NamesReq",
    "DumpReq",
    "KillReq",
    "StopReq",
    "Request",
    "Alive2XResp",
    "Alive2Resp",
    "Port2Resp",
    "NamesResp",
    "DumpResp",
    "KillResp",
    "StopResp",
    "Response",
    "RequestParser",
    "encode_request",
    "encode_response",
    "parse_alive2_response",
    "parse_port2_response",
    "parse_names_response",
    "parse_dump_response",
    "parse_kill_response",
    "parse_stop_response",
]

# --- constants ------------------------------------------------------------------

ALIVE2_REQ: Final = 120
ALIVE2_X_RESP: Final = 118
ALIVE2_RESP: Final = 121
PORT_PLEASE2_REQ: Final = 122
PORT2_RESP: Final = 119
NAMES_REQ: Final = 110
DUMP_REQ: Final = 100
KILL_REQ: Final = 107
STOP_REQ: Final = 115

DEFAULT_EPMD_PORT: Final = 4369

NODE_TYPE_NORMAL: Final = 77  # 'M'
NODE_TYPE_HIDDEN: Final = 72  # 'H', also used by C nodes
_NODE_TYPE_HIDDEN_R4: Final = 104  # 'h', pre-R6 hidden nodes
PROTOCOL_TCP_IPV4: Final = 0

MAX_NAME: Final = 255
"""Largest node name, in bytes of UTF-8."""
MAX_EXTRA: Final = 1024
"""Largest ``Extra`` field, in bytes."""
MAX_REQUEST: Final = 2048
"""Largest request, in bytes after the 2-byte length prefix."""
MAX_LISTING: Final = 1 << 20
"""Largest ``NAMES``/``DUMP`` response a client accepts, in bytes."""

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
# PortNo, NodeType, Protocol, HighestVersion, LowestVersion, Nlen
_NODE_HEAD = struct.Struct(">HBBHHH")

# --- messages ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeEntry:
    """What the port mapper knows about one registered node.

    ``name`` is the part of the node name before ``@``; ``port`` is where the
    node accepts distribution connections; ``highest``/``lowest`` bound the
    distribution protocol versions it speaks (6 and 6 for OTP 25+ and pymesh).
    """

    name: str
    port: int
    node_type: int = NODE_TYPE_NORMAL
    protocol: int = PROTOCOL_TCP_IPV4
    highest: int = 6
    lowest: int = 6
    extra: bytes = b""

    @property
    def hidden(self) -> bool:
        """True for hidden nodes (and C nodes), which join no global group."""
        return self.node_type in (NODE_TYPE_HIDDEN, _NODE_TYPE_HIDDEN_R4)


@dataclass(frozen=True, slots=True)
class Alive2Req:
    """``ALIVE2_REQ``: register a node; the connection then stays open."""

    name: str
    port: int
    node_type: int = NODE_TYPE_NORMAL
    protocol: int = PROTOCOL_TCP_IPV4
    highest: int = 6
    lowest: int = 6
    extra: bytes = b""

    @property
    def entry(self) -> NodeEntry:
        """The registration as the port mapper will hand it out."""
        return NodeEntry(self.name, self.port, self.node_type, self.protocol, self.highest, self.lowest, self.extra)


@dataclass(frozen=True, slots=True)
class PortPlease2Req:
    """``PORT_PLEASE2_REQ``: where does node ``name`` listen?"""

    name: str


@dataclass(frozen=True, slots=True)
class NamesReq:
    """``NAMES_REQ``: list the registered names (``net_adm:names/0``)."""


@dataclass(frozen=True, slots=True)
class DumpReq:
    """``DUMP_REQ``: debug listing, including old, unregistered names."""


@dataclass(frozen=True, slots=True)
class KillReq:
    """``KILL_REQ``: stop the port mapper (refused while names are registered)."""


@dataclass(frozen=True, slots=True)
class StopReq:
    """``STOP_REQ``: forcibly unregister ``name`` (usually disabled)."""

    name: str


Request: TypeAlias = Alive2Req | PortPlease2Req | NamesReq | DumpReq | KillReq | StopReq


@dataclass(frozen=True, slots=True)
class Alive2XResp:
    """``ALIVE2_X_RESP``: result of a registration, 32-bit ``creation``.

    ``result`` 0 means registered; anything else is a refusal (epmd answers 1
    with creation 99 for a taken or invalid name).
    """

    result: int
    creation: int


@dataclass(frozen=True, slots=True)
class Alive2Resp:
    """``ALIVE2_RESP``: like :class:`Alive2XResp` with a 16-bit ``creation``.

    Sent instead of ``ALIVE2_X_RESP`` to nodes whose ``HighestVersion`` is
    below 6; their creation is then 1..3.
    """

    result: int
    creation: int


@dataclass(frozen=True, slots=True)
class Port2Resp:
    """``PORT2_RESP``: ``entry`` when ``result`` is 0, else ``None``."""

    result: int
    entry: NodeEntry | None = None


@dataclass(frozen=True, slots=True)
class NamesResp:
    """The answer to ``NAMES_REQ``: the port mapper's port and ``(name, port)``s."""

    epmd_port: int
    names: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class DumpResp:
    """The answer to ``DUMP_REQ``: the port mapper's port and free-form text."""

    epmd_port: int
    text: str = ""


@dataclass(frozen=True, slots=True)
class KillResp:
    """The answer to ``KILL_REQ``: ``OK`` (``ok=True``) or ``NO``."""

    ok: bool


@dataclass(frozen=True, slots=True)
class StopResp:
    """The answer to ``STOP_REQ``: ``STOPPED`` (``stopped=True``) or ``NOEXIST``."""

    stopped: bool


Response: TypeAlias = Alive2XResp | Alive2Resp | Port2Resp | NamesResp | DumpResp | KillResp | StopResp

# --- field checks, shared by both directions (the error class carries the blame) ---------


def _check_name(raw: bytes, what: str, error: type[ProtocolError]) -> str:
    if not raw:
        raise error(f"{what}: empty node name")
    if len(raw) > MAX_NAME:
        raise error(f"{what}: node name of {len(raw)} bytes exceeds {MAX_NAME}")
    if b"\0" in raw:
        raise error(f"{what}: node name contains a NUL byte")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what}: node name is not valid UTF-8 ({exc.reason})") from None


def _check_extra(extra: bytes, what: str, error: type[ProtocolError]) -> bytes:
    if len(extra) > MAX_EXTRA:
        raise error(f"{what}: extra field of {len(extra)} bytes exceeds {MAX_EXTRA}")
    return extra


def _check_uint(value: int, bits: int, what: str, field_name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise LocalProtocolError(f"{what}: {field_name}={value!r} is not an unsigned {bits}-bit integer")
    return value


def _name_bytes(name: str, what: str) -> bytes:
    if not isinstance(name, str):
        raise LocalProtocolError(f"{what}: node name must be str, not {type(name).__name__}")
    raw = name.encode("utf-8")
    _check_name(raw, what, LocalProtocolError)
    return raw


def _encode_node(what: str, node: Alive2Req | NodeEntry) -> bytes:
    """PortNo .. Extra: the field run shared by ALIVE2_REQ and PORT2_RESP."""
    raw = _name_bytes(node.name, what)
    extra = bytes(node.extra)
    _check_extra(extra, what, LocalProtocolError)
    head = _NODE_HEAD.pack(
        _check_uint(node.port, 16, what, "port"),
        _check_uint(node.node_type, 8, what, "node_type"),
        _check_uint(node.protocol, 8, what, "protocol"),
        _check_uint(node.highest, 16, what, "highest"),
        _check_uint(node.lowest, 16, what, "lowest"),
        len(raw),
    )
    return head + raw + _U16.pack(len(extra)) + extra


def _decode_node(what: str, body: bytes) -> tuple[NodeEntry, int] | None:
    """Decode PortNo .. Extra from ``body``; ``None`` if it is incomplete.

    Returns the entry and the number of bytes it took.
    """
    if len(body) < _NODE_HEAD.size:
        return None
    port, node_type, protocol, highest, lowest, nlen = _NODE_HEAD.unpack_from(body)
    if nlen > MAX_NAME:
        raise RemoteProtocolError(f"{what}: node name of {nlen} bytes exceeds {MAX_NAME}")
    at = _NODE_HEAD.size
    if len(body) < at + nlen + 2:
        return None
    name = _check_name(body[at : at + nlen], what, RemoteProtocolError)
    at += nlen
    (elen,) = _U16.unpack_from(body, at)
    if elen > MAX_EXTRA:
        raise RemoteProtocolError(f"{what}: extra field of {elen} bytes exceeds {MAX_EXTRA}")
    at += 2
    if len(body) < at + elen:
        return None
    extra = body[at : at + elen]
    return NodeEntry(name, port, node_type, protocol, highest, lowest, extra), at + elen


# --- requests: encoding ----------------------------------------------------------------------


def _encode_alive2(req: Alive2Req) -> bytes:
    return bytes([ALIVE2_REQ]) + _encode_node("ALIVE2_REQ", req)


def _encode_port_please2(req: PortPlease2Req) -> bytes:
    return bytes([PORT_PLEASE2_REQ]) + _name_bytes(req.name, "PORT_PLEASE2_REQ")


def _encode_stop(req: StopReq) -> bytes:
    return bytes([STOP_REQ]) + _name_bytes(req.name, "STOP_REQ")


_REQUEST_ENCODERS: dict[type, Callable[[object], bytes]] = {
    Alive2Req: _encode_alive2,  # type: ignore[dict-item]
    PortPlease2Req: _encode_port_please2,  # type: ignore[dict-item]
    NamesReq: lambda _req: bytes([NAMES_REQ]),
    DumpReq: lambda _req: bytes([DUMP_REQ]),
    KillReq: lambda _req: bytes([KILL_REQ]),
    StopReq: _encode_stop,  # type: ignore[dict-item]
}


def encode_request(request: Request) -> bytes:
    """Return the bytes to send for ``request``, length prefix included.

    Raises :class:`~pymesh._errors.LocalProtocolError` if a field does not fit
    the protocol or the limits (name, extra, ports and versions).
    """
    encoder = _REQUEST_ENCODERS.get(type(request))
    if encoder is None:
        raise LocalProtocolError(f"not an EPMD request: {request!r}")
    body = encoder(request)
    if len(body) > MAX_REQUEST:  # unreachable with the field limits, kept as a guard
        raise LocalProtocolError(f"request of {len(body)} bytes exceeds {MAX_REQUEST}")
    return _U16.pack(len(body)) + body


# --- requests: decoding (the server side) ------------------------------------------------------


def _parse_alive2(body: bytes) -> Alive2Req:
    decoded = _decode_node("ALIVE2_REQ", body)
    if decoded is None:
        raise RemoteProtocolError(f"ALIVE2_REQ: truncated ({len(body) + 1} bytes)")
    entry, used = decoded
    if used != len(body):
        raise RemoteProtocolError(f"ALIVE2_REQ: {len(body) - used} trailing bytes after the extra field")
    return Alive2Req(entry.name, entry.port, entry.node_type, entry.protocol, entry.highest, entry.lowest, entry.extra)


def _c_string(body: bytes) -> bytes:
    # epmd drops one trailing NUL from a name: very old clients sent C strings.
    return body[:-1] if body.endswith(b"\0") else body


def _parse_port_please2(body: bytes) -> PortPlease2Req:
    return PortPlease2Req(_check_name(_c_string(body), "PORT_PLEASE2_REQ", RemoteProtocolError))


def _parse_stop(body: bytes) -> StopReq:
    return StopReq(_check_name(_c_string(body), "STOP_REQ", RemoteProtocolError))


def _parse_bare(what: str, request: NamesReq | DumpReq | KillReq) -> Callable[[bytes], Request]:
    def parse(body: bytes) -> Request:
        if body:
            raise RemoteProtocolError(f"{what}: {len(body)} unexpected bytes after the request code")
        return request

    return parse


_REQUEST_PARSERS: dict[int, Callable[[bytes], Request]] = {
    ALIVE2_REQ: _parse_alive2,
    PORT_PLEASE2_REQ: _parse_port_please2,
    NAMES_REQ: _parse_bare("NAMES_REQ", NamesReq()),
    DUMP_REQ: _parse_bare("DUMP_REQ", DumpReq()),
    KILL_REQ: _parse_bare("KILL_REQ", KillReq()),
    STOP_REQ: _parse_stop,
}


class RequestParser:
    """Incremental parser for the server side of a port-mapper connection.

    Feed bytes with :meth:`receive_data` and the end of the stream with
    :meth:`receive_eof`; take requests out with :meth:`next_request`, which
    returns ``None`` until a whole request is buffered. Several requests in a
    row are parsed in turn; whether a connection may carry more than one is the
    server's policy, not the parser's (epmd serves exactly one).

    Malformed input raises :class:`~pymesh._errors.RemoteProtocolError`, after
    which the parser is spent: every later call raises the same error.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._eof = False
        self._error: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a request."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the peer."""
        if self._eof:
            raise LocalProtocolError("receive_data() after receive_eof()")
        self._buffer += data

    def receive_eof(self) -> None:
        """Note that the peer closed its side.

        Requests already complete stay available; if the stream ended inside a
        request, :meth:`next_request` raises once those are taken.
        """
        self._eof = True

    def next_request(self) -> Request | None:
        """Return the next complete request, or ``None`` if more bytes are needed.

        Raises :class:`~pymesh._errors.RemoteProtocolError` (or
        :class:`~pymesh._errors.FrameTooLarge`) on malformed input.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._next_request()
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _next_request(self) -> Request | None:
        buf = self._buffer
        if len(buf) < 2:
            self._check_eof()
            return None
        (length,) = _U16.unpack_from(buf)
        if length == 0:
            raise RemoteProtocolError("empty request (length 0)")
        if length > MAX_REQUEST:
            raise FrameTooLarge(f"request of {length} bytes exceeds {MAX_REQUEST}")
        if len(buf) < 2 + length:
            self._check_eof()
            return None
        code = buf[2]
        body = bytes(buf[3 : 2 + length])
        del buf[: 2 + length]
        parser = _REQUEST_PARSERS.get(code)
        if parser is None:
            raise RemoteProtocolError(f"unknown request code {code}")
        return parser(body)

    def _check_eof(self) -> None:
        """Raise if the stream ended with part of a request buffered."""
        if self._eof and self._buffer:
            raise RemoteProtocolError(f"connection closed inside a request ({len(self._buffer)} bytes of it received)")


# --- responses: encoding (the server side) -----------------------------------------------------


def _encode_alive2_x(resp: Alive2XResp) -> bytes:
    return bytes([ALIVE2_X_RESP, _check_uint(resp.result, 8, "ALIVE2_X_RESP", "result")]) + _U32.pack(
        _check_uint(resp.creation, 32, "ALIVE2_X_RESP", "creation")
    )


def _encode_alive2_old(resp: Alive2Resp) -> bytes:
    return bytes([ALIVE2_RESP, _check_uint(resp.result, 8, "ALIVE2_RESP", "result")]) + _U16.pack(
        _check_uint(resp.creation, 16, "ALIVE2_RESP", "creation")
    )


def _encode_port2(resp: Port2Resp) -> bytes:
    result = _check_uint(resp.result, 8, "PORT2_RESP", "result")
    if result != 0:
        if resp.entry is not None:
            raise LocalProtocolError("PORT2_RESP: an error result carries no entry")
        return bytes([PORT2_RESP, result])
    if resp.entry is None:
        raise LocalProtocolError("PORT2_RESP: result 0 needs an entry")
    return bytes([PORT2_RESP, 0]) + _encode_node("PORT2_RESP", resp.entry)


def _encode_names(resp: NamesResp) -> bytes:
    lines = []
    for name, port in resp.names:
        _name_bytes(name, "NAMES_RESP")
        lines.append(f"name {name} at port {_check_uint(port, 16, 'NAMES_RESP', 'port')}\n")
    return _U32.pack(_check_uint(resp.epmd_port, 32, "NAMES_RESP", "epmd_port")) + "".join(lines).encode("utf-8")


def _encode_dump(resp: DumpResp) -> bytes:
    return _U32.pack(_check_uint(resp.epmd_port, 32, "DUMP_RESP", "epmd_port")) + resp.text.encode("utf-8")


_RESPONSE_ENCODERS: dict[type, Callable[[object], bytes]] = {
    Alive2XResp: _encode_alive2_x,  # type: ignore[dict-item]
    Alive2Resp: _encode_alive2_old,  # type: ignore[dict-item]
    Port2Resp: _encode_port2,  # type: ignore[dict-item]
    NamesResp: _encode_names,  # type: ignore[dict-item]
    DumpResp: _encode_dump,  # type: ignore[dict-item]
    KillResp: lambda resp: b"OK" if resp.ok else b"NO",  # type: ignore[attr-defined]
    StopResp: lambda resp: b"STOPPED" if resp.stopped else b"NOEXIST",  # type: ignore[attr-defined]
}


def encode_response(response: Response) -> bytes:
    """Return the bytes a port mapper sends for ``response`` (no length prefix).

    Raises :class:`~pymesh._errors.LocalProtocolError` if a field does not fit.
    """
    encoder = _RESPONSE_ENCODERS.get(type(response))
    if encoder is None:
        raise LocalProtocolError(f"not an EPMD response: {response!r}")
    return encoder(response)


# --- responses: decoding (the client side) -----------------------------------------------------

_ALIVE2_RESPONSES: dict[int, tuple[int, Callable[[int, int], Alive2XResp | Alive2Resp]]] = {
    # code: (total size, constructor)
    ALIVE2_X_RESP: (6, Alive2XResp),
    ALIVE2_RESP: (4, Alive2Resp),
}


def parse_alive2_response(data: bytes) -> Alive2XResp | Alive2Resp | None:
    """Parse the answer to ``ALIVE2_REQ``; ``None`` while ``data`` is incomplete.

    Raises :class:`~pymesh._errors.RemoteProtocolError` on an unknown response
    code or bytes beyond the response (the port mapper must send nothing more).
    """
    if not data:
        return None
    shape = _ALIVE2_RESPONSES.get(data[0])
    if shape is None:
        raise RemoteProtocolError(f"unexpected response code {data[0]} to ALIVE2_REQ")
    size, make = shape
    if len(data) < size:
        return None
    if len(data) > size:
        raise RemoteProtocolError(f"ALIVE2 response: {len(data) - size} trailing bytes")
    creation = _U32.unpack_from(data, 2)[0] if size == 6 else _U16.unpack_from(data, 2)[0]
    return make(data[1], creation)


def parse_port2_response(data: bytes) -> Port2Resp | None:
    """Parse the answer to ``PORT_PLEASE2_REQ``; ``None`` while incomplete.

    Raises :class:`~pymesh._errors.RemoteProtocolError` on a wrong code, a bad
    entry, or bytes beyond the response.
    """
    if len(data) < 2:
        return None
    if data[0] != PORT2_RESP:
        raise RemoteProtocolError(f"unexpected response code {data[0]} to PORT_PLEASE2_REQ")
    result = data[1]
    if result != 0:
        if len(data) > 2:
            raise RemoteProtocolError(f"PORT2_RESP: {len(data) - 2} trailing bytes after an error result")
        return Port2Resp(result)
    decoded = _decode_node("PORT2_RESP", data[2:])
    if decoded is None:
        return None
    entry, used = decoded
    if 2 + used != len(data):
        raise RemoteProtocolError(f"PORT2_RESP: {len(data) - 2 - used} trailing bytes")
    return Port2Resp(0, entry)


def _listing_head(what: str, data: bytes) -> tuple[int, bytes]:
    if len(data) < 4:
        raise RemoteProtocolError(f"{what}: truncated ({len(data)} of at least 4 bytes)")
    if len(data) > MAX_LISTING:
        raise RemoteProtocolError(f"{what}: {len(data)} bytes exceeds {MAX_LISTING}")
    return _U32.unpack_from(data)[0], data[4:]


_NAMES_LINE = re.compile(r"name (.+) at port (\d{1,5})")


def parse_names_response(data: bytes) -> NamesResp:
    """Parse a complete ``NAMES_REQ`` answer (everything up to the close).

    Raises :class:`~pymesh._errors.RemoteProtocolError` if it is truncated,
    too large, not UTF-8, or a line is not ``name N at port P``.
    """
    epmd_port, text = _listing_head("NAMES response", data)
    try:
        lines = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"NAMES response is not valid UTF-8 ({exc.reason})") from None
    if lines and not lines.endswith("\n"):
        raise RemoteProtocolError("NAMES response: last line is not terminated")
    names: list[tuple[str, int]] = []
    for line in lines[:-1].split("\n") if lines else ():
        match = _NAMES_LINE.fullmatch(line)
        if match is None or int(match[2]) > 0xFFFF:
            raise RemoteProtocolError(f"NAMES response: malformed line {line[:80]!r}")
        names.append((match[1], int(match[2])))
    return NamesResp(epmd_port, tuple(names))


def parse_dump_response(data: bytes) -> DumpResp:
    """Parse a complete ``DUMP_REQ`` answer (everything up to the close).

    epmd ends each line with ``\\n`` and a NUL byte; the NULs are dropped.
    Raises :class:`~pymesh._errors.RemoteProtocolError` if it is truncated, too
    large or not UTF-8.
    """
    epmd_port, text = _listing_head("DUMP response", data)
    try:
        return DumpResp(epmd_port, text.replace(b"\0", b"").decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"DUMP response is not valid UTF-8 ({exc.reason})") from None


def parse_kill_response(data: bytes) -> KillResp:
    """Parse a complete ``KILL_REQ`` answer: ``OK`` or ``NO``.

    Raises :class:`~pymesh._errors.RemoteProtocolError` on anything else.
    """
    answers = {b"OK": KillResp(True), b"NO": KillResp(False)}
    try:
        return answers[bytes(data)]
    except KeyError:
        raise RemoteProtocolError(f"unexpected answer to KILL_REQ: {bytes(data[:16])!r}") from None


def parse_stop_response(data: bytes) -> StopResp:
    """Parse a complete ``STOP_REQ`` answer: ``STOPPED`` or ``NOEXIST``.

    Raises :class:`~pymesh._errors.RemoteProtocolError` on anything else.
    """
    answers = {b"STOPPED": StopResp(True), b"NOEXIST": StopResp(False)}
    try:
        return answers[bytes(data)]
    except KeyError:
        raise RemoteProtocolError(f"unexpected answer to STOP_REQ: {bytes(data[:16])!r}") from None
