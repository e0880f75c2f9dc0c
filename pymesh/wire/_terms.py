"""The term codec: Python values <-> msgpack bytes, with the BEAM's term shapes kept.

Type mapping (what a receiver gets for what a sender sent):

==========================  ============================  ==========================
Python value sent           on the wire                   Python value received
==========================  ============================  ==========================
``None``, ``bool``          nil, bool                     same
``int`` (64-bit)            int                           ``int``
``int`` (larger)            ext 4 (signed big-endian)     ``int``
``float``                   float 64                      ``float``
``str``                     str (UTF-8)                   ``str``
``bytes``, ``bytearray``,   bin                           ``bytes`` (``str`` and
``memoryview``                                            ``bytes`` never mix)
``list``                    array                         ``list``
``tuple``                   ext 1 (packed array)          ``tuple``
``dict``                    map (any encodable keys)      ``dict``
``set`` / ``frozenset``     ext 5 / ext 6                 ``set`` / ``frozenset``
:class:`Pid`                ext 2                         :class:`Pid`
:class:`Ref`                ext 3                         :class:`Ref`
``BaseException``           ext 7 (type name, message)    :class:`RemoteError`
==========================  ============================  ==========================

Anything else raises :class:`~pymesh.EncodeError` at encode time; nothing is sent.
Decoding never executes or imports anything named by a peer.

Limits on decode (each a :class:`~pymesh.DecodeError` when exceeded):

* nesting: tuples, sets and frozenset (ext types, decoded by recursion) nest at
  most ``MAX_DEPTH`` deep; lists and dicts are decoded by msgpack's C unpacker,
  which has a stack of its own and refuses more than 1024 levels (per tuple
  level) — never a crash, always a :class:`~pymesh.DecodeError`;
* sizes: a term is never larger than the frame that carries it, and
  :class:`DecodeLimits` (given to :func:`decode_all`; defaults from the frame
  limit, :meth:`DecodeLimits.for_frame`) caps string, bytes, list, dict and
  ext lengths, inside tuples too, so a small frame cannot claim a huge container.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack
from msgpack import ExtType, Packer

from .._errors import DecodeError, EncodeError
from ._types import NO_NODE, Pid, Ref, RemoteError

__all__ = ["encode", "encode_send", "decode", "decode_all", "decode_batch", "BATCH_HEAD", "DecodeLimits", "MAX_DEPTH", "EXT_TUPLE", "EXT_PID", "EXT_REF"]

EXT_TUPLE = 1
EXT_PID = 2
EXT_REF = 3
EXT_BIGINT = 4
EXT_SET = 5
EXT_FROZENSET = 6
EXT_EXCEPTION = 7

#: How deeply tuples, sets and frozensets may nest inside one term.
MAX_DEPTH = 64

_INT64_MIN = -(1 << 63)
_UINT64_MAX = (1 << 64) - 1

# The msgpack Packer is not re-entrant, and a tuple's ext payload is itself a
# packed array: one Packer per nesting depth keeps every level's buffer apart.
_packers: list[Packer] = []
_depth = 0


def _packer_at(depth: int) -> Packer:
    while len(_packers) <= depth:
        _packers.append(Packer(default=_default, strict_types=True, use_bin_type=True))
    return _packers[depth]


# ExtType is a namedtuple whose Python-level __new__ checks its arguments; ours
# are right by construction, and skipping the checks halves the cost of a tuple.
_new_tuple = tuple.__new__


def _ext(code: int, data: bytes) -> ExtType:
    return _new_tuple(ExtType, (code, data))  # type: ignore[no-any-return]


def _pack_nested(code: int, obj: Any) -> ExtType:
    global _depth
    if _depth >= MAX_DEPTH:
        raise EncodeError(f"term nests tuples/sets deeper than {MAX_DEPTH} levels")
    _depth += 1
    try:
        return _ext(code, _packer_at(_depth).pack(obj))
    finally:
        _depth -= 1


# Pids and refs made before this runtime became a named node carry NO_NODE; on
# the wire they must name the node they live on now, as local pids do on the BEAM.
_local_node: tuple[str, int] | None = None


def set_local_node(name: str | None, creation: int = 0) -> None:
    """Tell the codec this runtime's node name, for pids made before it had one."""
    global _local_node
    _local_node = (name, creation) if name else None


def _pack_pid(pid: Pid) -> ExtType:
    wire = pid._wire
    if wire is None:
        if pid.node == NO_NODE and _local_node is not None:
            return _ext(EXT_PID, msgpack.packb((_local_node[0], pid.id, _local_node[1])))
        wire = msgpack.packb((pid.node, pid.id, pid.creation))
        object.__setattr__(pid, "_wire", wire)
    return _ext(EXT_PID, wire)


def _pack_ref(ref: Ref) -> ExtType:
    if ref.node == NO_NODE and _local_node is not None:
        return _ext(EXT_REF, msgpack.packb((_local_node[0], ref.id, _local_node[1])))
    return _ext(EXT_REF, msgpack.packb((ref.node, ref.id, ref.creation)))


def _pack_bigint(n: int) -> ExtType:
    return ExtType(EXT_BIGINT, n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True))


def _pack_exception(exc: BaseException) -> ExtType:
    if isinstance(exc, RemoteError):
        name, message = exc.type_name, exc.message
    else:
        cls = type(exc)
        name = f"{cls.__module__}.{cls.__qualname__}"
        message = str(exc)
    return ExtType(EXT_EXCEPTION, msgpack.packb((name, message)))


_BY_TYPE: dict[type, Callable[[Any], Any]] = {
    tuple: lambda t: _pack_nested(EXT_TUPLE, list(t)),
    Pid: _pack_pid,
    Ref: _pack_ref,
    set: lambda s: _pack_nested(EXT_SET, list(s)),
    frozenset: lambda s: _pack_nested(EXT_FROZENSET, list(s)),
    bytearray: bytes,
    memoryview: bytes,
}


def _default(obj: Any) -> Any:
    packer = _BY_TYPE.get(type(obj))
    if packer is not None:
        return packer(obj)
    if isinstance(obj, int) and not isinstance(obj, bool):
        if type(obj) is int and not (_INT64_MIN <= obj <= _UINT64_MAX):
            return _pack_bigint(obj)
        return int(obj)  # an int subclass (IntEnum, ...) travels as its value
    if isinstance(obj, BaseException):
        return _pack_exception(obj)
    if isinstance(obj, tuple):  # namedtuples travel as plain tuples
        return _pack_nested(EXT_TUPLE, list(obj))
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, float):
        return float(obj)
    raise EncodeError(f"cannot encode {type(obj).__qualname__} object: {_short_repr(obj)}")


def _short_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = f"<{type(obj).__qualname__}>"
    return text if len(text) <= 80 else text[:77] + "..."


_top = _packer_at(0)
_nested = _packer_at(1)

# msgpack's own headers, so that the fast path below writes the very bytes the
# Packer would.
_FIXARRAY = [bytes((0x90 | n,)) for n in range(16)]
_FIXEXT = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}


def _array_header(n: int) -> bytes:
    if n < 16:
        return _FIXARRAY[n]
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _ext_header(code: int, n: int) -> bytes:
    fix = _FIXEXT.get(n)
    if fix is not None:
        return bytes((fix, code))
    if n < 0x100:
        return bytes((0xC7, n, code))
    if n < 0x10000:
        return b"\xc8" + n.to_bytes(2, "big") + bytes((code,))
    return b"\xc9" + n.to_bytes(4, "big") + bytes((code,))


# A pid's whole ext (header and payload): every message to a process carries one.
_pid_bytes: dict[Pid, bytes] = {}


def _pid_ext(pid: Pid) -> bytes:
    data = _pid_bytes.get(pid)
    if data is None:
        ext = _pack_pid(pid)
        data = _ext_header(EXT_PID, len(ext.data)) + ext.data
        if pid.node != NO_NODE:  # a NO_NODE pid's bytes change when the node starts
            if len(_pid_bytes) >= 65536:
                _pid_bytes.clear()
            _pid_bytes[pid] = data
    return data


#: A bytes object at least this long inside a top-level tuple is not copied
#: into a packer's buffer: its bin header is written and the object itself
#: joins the output, so a large payload is copied once on its way out.
_BIG_BYTES = 4096


def _bin_header(n: int) -> bytes:
    if n < 0x100:
        return bytes((0xC4, n))
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def _tuple_parts(t: tuple[Any, ...], append: Callable[[bytes], None]) -> None:
    """Append the ext of a tuple at the top of a term (depth 1) to the output."""
    global _depth
    _depth = 1
    try:
        for x in t:
            if type(x) is bytes and len(x) >= _BIG_BYTES:
                break
        else:
            body = _nested.pack(list(t))
            append(_ext_header(EXT_TUPLE, len(body)))
            append(body)
            return
        parts = [_array_header(len(t))]
        _item_parts(t, parts)
        append(_ext_header(EXT_TUPLE, sum(map(len, parts))))
        for p in parts:
            append(p)
    finally:
        _depth = 0


def _encode_list(term: list[Any]) -> bytes:
    """A top-level list (every control message is one): its pids and tuples are
    written here rather than through the Packer's ``default`` hook, which costs
    a Python call and an ExtType each."""
    parts = [_array_header(len(term))]
    append = parts.append
    pack = _top.pack
    for x in term:
        t = type(x)
        if t is Pid:
            append(_pid_ext(x))
        elif t is tuple:
            _tuple_parts(x, append)
        else:
            append(pack(x))
    return b"".join(parts)


def encode_send(to: Pid, msg: Any) -> bytes | list[bytes]:
    """Encode the control message a ``send`` of ``msg`` to remote ``to`` becomes.

    A tuple — nearly every message — travels as ``[SEND_TUPLE, to, *items]``:
    its items inline in the control message rather than wrapped in a tuple
    ext, so the receiver's C decoder builds them with no Python call (the
    protocol hands the message on as ``[SEND, to, tuple(items)]``). Anything
    else is ``[SEND, to, msg]``, as :func:`encode` would write it.

    When the tuple holds a bytes payload of :data:`_BIG_BYTES` or more, the
    result is a *list* of parts to be written one after another: the payload
    object itself is one of them, so that the socket write (a ``writelines``)
    is the only copy of it on this side, and the receiver's decoder the only
    one on the other."""
    global _depth
    pid = _pid_bytes.get(to)
    if pid is None:
        pid = _pid_ext(to)
    try:
        if type(msg) is tuple:
            n = len(msg)
            for x in msg:
                if type(x) is bytes and len(x) >= _BIG_BYTES:
                    return _send_tuple_parts(pid, msg)
            _depth = 1  # nested tuples pack on the packers below this one
            items = _nested_pack(list(msg))
            if n < 14:  # [SEND_TUPLE, to, *items] is a fixarray; so was items
                return _SEND_TUPLE_HEADS[n] + pid + items[1:]
            return _array_header(n + 2) + _SEND_TUPLE_OP + pid + items[len(_array_header(n)) :]
        return _SEND_HEAD + pid + _top.pack(msg)
    except EncodeError:
        raise
    except (TypeError, ValueError, OverflowError) as e:
        raise EncodeError(f"cannot encode term: {e}") from None
    finally:
        _depth = 0


def _send_tuple_parts(pid: bytes, t: tuple[Any, ...]) -> list[bytes]:
    """``[SEND_TUPLE, to, *items]`` as parts, each large bytes item its own."""
    global _depth
    _depth = 1
    parts = [_array_header(len(t) + 2) + _SEND_TUPLE_OP + pid]
    _item_parts(t, parts)
    return join_small(parts, _BIG_BYTES)


def _item_parts(t: tuple[Any, ...], parts: list[bytes]) -> None:
    """Append each item of ``t`` packed (at depth 1), a large bytes item as its
    bin header followed by the object itself (not copied)."""
    pack = _nested.pack
    for x in t:
        if type(x) is bytes and len(x) >= _BIG_BYTES:
            parts.append(_bin_header(len(x)))
            parts.append(x)
        else:
            parts.append(pack(x))


_nested_pack = _nested.pack
_SEND_TUPLE = 15  # pymesh.wire._control.SEND_TUPLE (this module sits below that one)
_SEND_TUPLE_OP = bytes((_SEND_TUPLE,))
_SEND_TUPLE_HEADS = [bytes((0x90 | (n + 2), _SEND_TUPLE)) for n in range(14)]


def join_small(parts: Iterable[bytes], big: int, out: list[bytes] | None = None) -> list[bytes]:
    """Join each run of parts shorter than ``big``; keep the others as they are
    (appended to ``out``, or to a new list). What goes to a ``writelines``:
    a large payload is not copied, small pieces are not written one by one."""
    if out is None:
        out = []
    run: list[bytes] = []
    for p in parts:
        if len(p) >= big:
            if run:
                out.append(b"".join(run))
                run = []
            out.append(p)
        else:
            run.append(p)
    if run:
        out.append(b"".join(run))
    return out


_SEND_HEAD = b"\x93\x01"  # [SEND (op 1), to, msg]: a 3-element array, then the op


def encode(term: Any) -> bytes:
    """Encode one term; raise :class:`EncodeError` naming the first bad object."""
    global _depth
    try:
        if type(term) is list:
            return _encode_list(term)
        return _top.pack(term)
    except EncodeError:
        raise
    except (TypeError, ValueError, OverflowError) as e:
        raise EncodeError(f"cannot encode term: {e}") from None
    finally:
        _depth = 0


# --- decoding ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """The largest string, bytes, list, dict and ext a peer's term may hold.

    Counted in bytes for ``max_str_len``, ``max_bin_len`` and ``max_ext_len``,
    in elements for ``max_array_len`` and in pairs for ``max_map_len`` (what
    msgpack's ``Unpacker`` takes). A term beyond one is a :class:`DecodeError`
    and the connection closes.
    """

    max_str_len: int
    max_bin_len: int
    max_array_len: int
    max_map_len: int
    max_ext_len: int
    _kwargs: dict[str, int] = field(init=False, repr=False, compare=False)
    _floor: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kwargs = {
            "max_str_len": self.max_str_len,
            "max_bin_len": self.max_bin_len,
            "max_array_len": self.max_array_len,
            "max_map_len": self.max_map_len,
            "max_ext_len": self.max_ext_len,
        }
        if min(kwargs.values()) < 1:
            raise ValueError(f"decode limits must be positive: {kwargs}")
        object.__setattr__(self, "_kwargs", kwargs)
        object.__setattr__(self, "_floor", min(kwargs.values()))

    @classmethod
    def for_frame(cls, max_frame: int) -> DecodeLimits:
        """The defaults for a frame limit: whatever fits in a frame — strings,
        bytes, ext payloads and lists up to ``max_frame``, dicts up to half of it
        (an entry takes two bytes at least). Tighter limits are for operators
        who know their traffic: a term over them closes the connection, and the
        sender cannot know the receiver's limits beforehand."""
        return cls(max_frame, max_frame, max_frame, max(max_frame // 2, 1), max_frame)


_pid_cache: dict[bytes, Pid] = {}
_dec_depth = 0
# The limits of the decode_all call in progress. msgpack limits a payload's
# containers to its own length by itself, so a tuple payload no longer than the
# smallest limit needs no explicit (and, per call, costly) limit arguments.
_NO_LIMITS: dict[str, int] = {}
_limits = _NO_LIMITS
_limits_floor = 1 << 62


def _unpack_inner(data: bytes) -> Any:
    global _dec_depth
    if _dec_depth >= MAX_DEPTH:
        raise DecodeError(f"term nests tuples/sets deeper than {MAX_DEPTH} levels")
    _dec_depth += 1
    try:
        if len(data) > _limits_floor:
            return msgpack.unpackb(data, ext_hook=_ext_hook, strict_map_key=False, use_list=True, **_limits)
        return msgpack.unpackb(data, ext_hook=_ext_hook, strict_map_key=False, use_list=True)
    finally:
        _dec_depth -= 1


def _unpack_triple(data: bytes, what: str) -> tuple[str, int, int]:
    node, ident, creation = msgpack.unpackb(data, use_list=False)
    if type(node) is not str or type(ident) is not int or type(creation) is not int:
        raise DecodeError(f"malformed {what}")
    return node, ident, creation


def _ext_pid(data: bytes) -> Pid:
    pid = _pid_cache.get(data)
    if pid is None:
        pid = Pid(*_unpack_triple(data, "pid"))
        object.__setattr__(pid, "_wire", data)
        if len(_pid_cache) >= 65536:
            _pid_cache.clear()
        _pid_cache[data] = pid
    return pid


def _ext_exception(data: bytes) -> RemoteError:
    name, message = msgpack.unpackb(data, use_list=False)
    if type(name) is not str or type(message) is not str:
        raise DecodeError("malformed exception term")
    return RemoteError(name, message)


_EXT_DECODERS: dict[int, Callable[[bytes], Any]] = {
    EXT_TUPLE: lambda d: tuple(_unpack_inner(d)),
    EXT_PID: _ext_pid,
    EXT_REF: lambda d: Ref(*_unpack_triple(d, "ref")),
    EXT_BIGINT: lambda d: int.from_bytes(d, "big", signed=True),
    EXT_SET: lambda d: set(_unpack_inner(d)),
    EXT_FROZENSET: lambda d: frozenset(_unpack_inner(d)),
    EXT_EXCEPTION: _ext_exception,
}


def _ext_hook(code: int, data: bytes) -> Any:
    # msgpack calls this for every tuple and pid of every message: the two
    # common cases are inlined here (the table below has the rest)
    global _dec_depth
    if code == EXT_TUPLE:
        if _dec_depth >= MAX_DEPTH:
            raise DecodeError(f"term nests tuples/sets deeper than {MAX_DEPTH} levels")
        _dec_depth += 1  # the top-level decode resets it if this raises
        if len(data) > _limits_floor:
            items = _unpackb(data, ext_hook=_ext_hook, strict_map_key=False, **_limits)
        else:
            items = _unpackb(data, ext_hook=_ext_hook, strict_map_key=False)
        _dec_depth -= 1
        return tuple(items)
    if code == EXT_PID:
        pid = _pid_cache.get(data)
        return pid if pid is not None else _ext_pid(data)
    decoder = _EXT_DECODERS.get(code)
    if decoder is None:
        raise DecodeError(f"unknown ext type {code}")
    return decoder(data)


_unpackb = msgpack.unpackb


def _use_limits(limits: DecodeLimits) -> None:
    """Apply ``limits`` to every container of the decode in progress (tuple
    payloads included, which the ext hook decodes separately)."""
    global _limits, _limits_floor
    _limits, _limits_floor = limits._kwargs, limits._floor


def _decoded() -> None:
    """A top-level decode ended, well or not: reset what it set."""
    global _dec_depth, _limits, _limits_floor
    _dec_depth = 0
    _limits, _limits_floor = _NO_LIMITS, 1 << 62


def _as_decode_error(e: Exception) -> DecodeError:
    if isinstance(e, DecodeError):
        return e
    return DecodeError(f"malformed term: {type(e).__name__}: {e}")


def decode(data: bytes) -> Any:
    """Decode exactly one term; raise :class:`DecodeError` on any malformed input."""
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, strict_map_key=False, use_list=True)
    except Exception as e:
        raise _as_decode_error(e) from None
    finally:
        _decoded()


def decode_all(data: bytes, limits: DecodeLimits | None = None) -> list[Any]:
    """Decode every term of a concatenation (one frame's payload), in order.

    ``limits`` caps container sizes (see :class:`DecodeLimits`; without it
    only the payload's own length does). Raises :class:`DecodeError` at the
    first malformed, truncated or over-limit term; a frame is accepted or
    rejected whole.
    """
    size = len(data)
    if limits is not None and size > limits._floor:
        # msgpack caps every container at the buffer's size by itself: explicit
        # limits (costly to pass) matter only for a payload larger than one
        _use_limits(limits)
        unpacker = msgpack.Unpacker(
            ext_hook=_ext_hook, strict_map_key=False, use_list=True, max_buffer_size=size, **_limits
        )
    else:
        unpacker = msgpack.Unpacker(
            ext_hook=_ext_hook, strict_map_key=False, use_list=True, max_buffer_size=max(size, 1)
        )
    unpacker.feed(data)
    terms: list[Any] = []
    append, tell = terms.append, unpacker.tell
    end = 0
    try:
        for term in unpacker:
            append(term)
            end = tell()
    except Exception as e:
        raise _as_decode_error(e) from None
    finally:
        _decoded()
    # The Unpacker stops silently before a truncated tail, and its tell() then
    # counts the bytes of a half-read container: measure up to the last whole term.
    if end != len(data):
        raise DecodeError(f"truncated term at byte {end} of {len(data)}")
    return terms


def _decode_batch_items(data: bytes, limits: DecodeLimits) -> list[Any]:
    _use_limits(limits)
    unpacker = msgpack.Unpacker(
        ext_hook=_ext_hook, strict_map_key=False, use_list=True, max_buffer_size=len(data), **_limits
    )
    unpacker.feed(data)
    try:
        count = unpacker.read_array_header()
        terms = [unpacker.unpack() for _ in range(count)]
        if unpacker.tell() != len(data):
            raise DecodeError(f"{len(data) - unpacker.tell()} bytes after the batch's {count} terms")
    except Exception as e:
        raise _as_decode_error(e) from None
    finally:
        _decoded()
    return terms


#: The first byte of a batch: a msgpack array32 header (``0xdd`` + u32 count).
BATCH_HEAD = 0xDD


def batch_header(count: int) -> bytes:
    """The header of a batch of ``count`` encoded terms (see :func:`decode_batch`)."""
    return b"\xdd" + count.to_bytes(4, "big")


def decode_batch(data: bytes | memoryview, limits: DecodeLimits | None = None) -> list[Any]:
    """Decode a batch: :func:`batch_header` followed by that many encoded terms,
    which together make one msgpack array. The terms come back as a list.

    ``data`` may be a ``memoryview`` (of a receive buffer): it is decoded where
    it lies, so its bytes are copied only into the objects built from them.
    Raises :class:`DecodeError` on anything else: a short or long count, a
    truncated term, trailing bytes, a container over ``limits``.
    """
    if len(data) < 5 or data[0] != BATCH_HEAD:
        raise DecodeError("not a batch (it must start with an array32 header)")
    if limits is not None and int.from_bytes(data[1:5], "big") > limits.max_array_len:
        # the batch array is not a term: it may hold more messages than a term
        # may hold items. Rare (tight limits set by hand): decode message by message.
        return _decode_batch_items(bytes(data), limits)
    try:
        if limits is not None and len(data) > limits._floor:
            _use_limits(limits)
            terms = msgpack.unpackb(data, ext_hook=_ext_hook, strict_map_key=False, use_list=True, **_limits)
        else:
            terms = msgpack.unpackb(data, ext_hook=_ext_hook, strict_map_key=False, use_list=True)
    except Exception as e:
        raise _as_decode_error(e) from None
    finally:
        _decoded()
    return terms  # type: ignore[no-any-return]
