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

Limits on decode (each a :class:`~pymesh.DecodeError` when exceeded): tuple/set
nesting depth (``MAX_DEPTH``), and the size limits of the frame carrying the term.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
from msgpack import ExtType, Packer

from .._errors import DecodeError, EncodeError
from ._types import NO_NODE, Pid, Ref, RemoteError

__all__ = ["encode", "decode", "decode_all", "MAX_DEPTH", "EXT_TUPLE", "EXT_PID", "EXT_REF"]

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


def _pack_nested(code: int, obj: Any) -> ExtType:
    global _depth
    if _depth >= MAX_DEPTH:
        raise EncodeError(f"term nests tuples/sets deeper than {MAX_DEPTH} levels")
    _depth += 1
    try:
        return ExtType(code, _packer_at(_depth).pack(obj))
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
            return ExtType(EXT_PID, msgpack.packb((_local_node[0], pid.id, _local_node[1])))
        wire = msgpack.packb((pid.node, pid.id, pid.creation))
        object.__setattr__(pid, "_wire", wire)
    return ExtType(EXT_PID, wire)


def _pack_ref(ref: Ref) -> ExtType:
    if ref.node == NO_NODE and _local_node is not None:
        return ExtType(EXT_REF, msgpack.packb((_local_node[0], ref.id, _local_node[1])))
    return ExtType(EXT_REF, msgpack.packb((ref.node, ref.id, ref.creation)))


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


def encode(term: Any) -> bytes:
    """Encode one term; raise :class:`EncodeError` naming the first bad object."""
    global _depth
    try:
        return _top.pack(term)
    except EncodeError:
        raise
    except (TypeError, ValueError, OverflowError) as e:
        raise EncodeError(f"cannot encode term: {e}") from None
    finally:
        _depth = 0


# --- decoding ---------------------------------------------------------------------

_pid_cache: dict[bytes, Pid] = {}
_dec_depth = 0


def _unpack_inner(data: bytes) -> Any:
    global _dec_depth
    if _dec_depth >= MAX_DEPTH:
        raise DecodeError(f"term nests tuples/sets deeper than {MAX_DEPTH} levels")
    _dec_depth += 1
    try:
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
    decoder = _EXT_DECODERS.get(code)
    if decoder is None:
        raise DecodeError(f"unknown ext type {code}")
    return decoder(data)


def _as_decode_error(e: Exception) -> DecodeError:
    if isinstance(e, DecodeError):
        return e
    return DecodeError(f"malformed term: {type(e).__name__}: {e}")


def decode(data: bytes) -> Any:
    """Decode exactly one term; raise :class:`DecodeError` on any malformed input."""
    global _dec_depth
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, strict_map_key=False, use_list=True)
    except Exception as e:
        raise _as_decode_error(e) from None
    finally:
        _dec_depth = 0


def decode_all(data: bytes) -> list[Any]:
    """Decode every term of a concatenation (one frame's payload), in order.

    Raises :class:`DecodeError` at the first malformed or truncated term; a
    frame is accepted or rejected whole.
    """
    global _dec_depth
    unpacker = msgpack.Unpacker(
        ext_hook=_ext_hook, strict_map_key=False, use_list=True, max_buffer_size=max(len(data), 1)
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
        _dec_depth = 0
    # The Unpacker stops silently before a truncated tail, and its tell() then
    # counts the bytes of a half-read container: measure up to the last whole term.
    if end != len(data):
        raise DecodeError(f"truncated term at byte {end} of {len(data)}")
    return terms
