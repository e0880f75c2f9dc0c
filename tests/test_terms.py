"""The term codec and the byte-level parsers, by property.

* every term Hypothesis can build from the documented types comes back equal
  *and of the same shape* (a tuple stays a tuple, ``str`` and ``bytes`` never
  mix, a ``bool`` is not an ``int``);
* anything else raises :class:`~pymesh.EncodeError` at encode time;
* any bytes at all fed to ``decode``, ``decode_all``, :class:`FrameReader` or
  :meth:`DistProtocol.receive_data` either parse or raise the documented error —
  never anything else.
"""

from __future__ import annotations

import collections
import enum
import itertools
import math
from decimal import Decimal
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymesh import DecodeError, EncodeError, FrameTooLarge, RemoteProtocolError
from pymesh.wire import (
    NO_NODE,
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
    decode,
    decode_all,
    encode,
)
from pymesh.wire._terms import EXT_TUPLE, MAX_DEPTH

# the recursive strategies print long reprs when Hypothesis describes them
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

# --- strategies -----------------------------------------------------------------------------

_word = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8)
node_names = st.builds("{}@{}".format, _word, _word).filter(lambda n: n != NO_NODE)
pids = st.builds(Pid, node_names, st.integers(0, 2**32), st.integers(0, 2**32))
refs = st.builds(Ref, node_names, st.integers(0, 2**63), st.integers(0, 2**32))
ints = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.integers(),  # unbounded: big ints travel as ext 4
    st.sampled_from([2**64, -(2**63) - 1, 2**64 - 1, -(2**63), 10**100, -(10**100)]),
)
floats = st.floats(allow_nan=False)
scalars = st.one_of(
    st.none(), st.booleans(), ints, floats, st.text(max_size=30), st.binary(max_size=30), pids, refs
)
hashables = st.recursive(
    st.one_of(st.none(), st.booleans(), ints, st.text(max_size=10), st.binary(max_size=10), pids, refs),
    lambda inner: st.one_of(st.tuples(inner), st.tuples(inner, inner), st.frozensets(inner, max_size=3)),
    max_leaves=8,
)
terms = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(hashables, inner, max_size=5),
        st.sets(hashables, max_size=5),
        st.frozensets(hashables, max_size=5),
    ),
    max_leaves=25,
)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same type all the way down (``1 == True`` is not enough)."""
    if type(a) is not type(b):
        return False
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        if len(a) != len(b):
            return False
        keys_b = list(b)
        for key_a, key_b in zip(a, keys_b):  # msgpack keeps insertion order
            if not same(key_a, key_b) or not same(a[key_a], b[key_b]):
                return False
        return True
    if type(a) in (set, frozenset):
        return a == b and all(any(same(x, y) for y in b) for x in a)
    if type(a) is float:
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


# --- round trips ----------------------------------------------------------------------------


@settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])
@given(terms)
def test_every_term_round_trips_with_its_shape(term: Any) -> None:
    back = decode(encode(term))
    assert same(term, back), (term, back)


@settings(max_examples=60)
@given(st.lists(terms, max_size=5))
def test_decode_all_returns_each_term_of_a_concatenation_in_order(batch: list[Any]) -> None:
    data = b"".join(encode(t) for t in batch)
    back = decode_all(data)
    assert len(back) == len(batch)
    assert all(same(a, b) for a, b in zip(batch, back))


def test_shapes_that_msgpack_alone_would_lose_are_kept() -> None:
    assert type(decode(encode((1, 2)))) is tuple
    assert type(decode(encode([1, 2]))) is list
    assert decode(encode(("a", b"a"))) == ("a", b"a")
    assert type(decode(encode("x"))) is str and type(decode(encode(b"x"))) is bytes
    assert decode(encode({(1, "a"): [()]})) == {(1, "a"): [()]}
    assert type(decode(encode(frozenset({1})))) is frozenset
    assert type(decode(encode({1}))) is set
    assert decode(encode(True)) is True and type(decode(encode(1))) is int
    assert decode(encode(2**200)) == 2**200 and decode(encode(-(2**200))) == -(2**200)
    assert decode(encode(set())) == set() and decode(encode(())) == ()


def test_byte_likes_arrive_as_bytes_and_int_and_tuple_subclasses_as_their_base() -> None:
    class Color(enum.IntEnum):
        RED = 3

    Point = collections.namedtuple("Point", "x y")
    assert decode(encode(bytearray(b"ab"))) == b"ab"
    assert decode(encode(memoryview(b"cd"))) == b"cd"
    red = decode(encode(Color.RED))
    assert red == 3 and type(red) is int
    point = decode(encode(Point(1, 2)))
    assert point == (1, 2) and type(point) is tuple


def test_exceptions_travel_as_remote_errors_naming_their_type() -> None:
    back = decode(encode(ZeroDivisionError("division by zero")))
    assert back == RemoteError("builtins.ZeroDivisionError", "division by zero")
    assert decode(encode(back)) == back  # and they travel on unchanged


@given(pids)
def test_pid_identity_survives_the_wire(pid: Pid) -> None:
    back = decode(encode(pid))
    assert back == pid and hash(back) == hash(pid) and repr(back) == repr(pid)
    assert Pid.parse(repr(pid)) == pid


# --- what cannot be encoded ---------------------------------------------------------------------


class Opaque:
    pass


@pytest.mark.parametrize(
    "bad",
    [object(), Opaque(), Opaque, len, lambda: 1, 1j, Decimal("1.5"), [1, (2, {3: object()})], {"k": Opaque()},
     {Opaque()}, range(3), Pid("a@b", 2**70, 0)],
    ids=lambda v: type(v).__name__,
)
def test_unencodable_objects_raise_encode_error(bad: Any) -> None:
    with pytest.raises(EncodeError):
        encode(bad)
    # the codec's packers are reused: a failure must not leave junk behind
    assert decode(encode(((1,), [2, (3,)]))) == ((1,), [2, (3,)])


def test_encode_error_names_the_offending_type_and_is_a_type_error() -> None:
    with pytest.raises(EncodeError, match="Opaque") as info:
        encode([1, Opaque()])
    assert isinstance(info.value, TypeError)


# --- nesting limits ---------------------------------------------------------------------------


def nested_tuple(depth: int) -> Any:
    term: Any = "core"
    for _ in range(depth):
        term = (term,)
    return term


def nested_tuple_bytes(depth: int) -> bytes:
    """The wire form of ``depth`` nested tuples, built without our encoder's limit."""
    data = msgpack.packb("core")
    for _ in range(depth):
        data = msgpack.packb(msgpack.ExtType(EXT_TUPLE, b"\x91" + data))
    return data


def test_tuples_nest_up_to_max_depth_and_no_deeper() -> None:
    assert decode(encode(nested_tuple(MAX_DEPTH))) == nested_tuple(MAX_DEPTH)
    with pytest.raises(EncodeError, match="deeper"):
        encode(nested_tuple(MAX_DEPTH + 1))
    assert encode(nested_tuple(3)) == nested_tuple_bytes(3)
    assert decode(nested_tuple_bytes(MAX_DEPTH)) == nested_tuple(MAX_DEPTH)
    with pytest.raises(DecodeError, match="deeper"):
        decode(nested_tuple_bytes(MAX_DEPTH + 1))
    with pytest.raises(DecodeError, match="deeper"):
        decode_all(nested_tuple_bytes(MAX_DEPTH + 1) * 2)
    # a failed decode leaves no depth behind
    assert decode(nested_tuple_bytes(MAX_DEPTH)) == nested_tuple(MAX_DEPTH)


def test_deeply_nested_lists_fail_cleanly_both_ways() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(EncodeError):
        encode(deep)
    with pytest.raises(DecodeError):
        decode(b"\x91" * 100_000 + b"\xc0")
    with pytest.raises(DecodeError):
        decode_all(b"\x91" * 100_000 + b"\xc0")


# --- any bytes: parse or raise the documented error ------------------------------------------------


def test_decode_rejects_trailing_and_truncated_input() -> None:
    with pytest.raises(DecodeError):
        decode(encode(1) + encode(2))
    with pytest.raises(DecodeError, match="truncated"):
        decode_all(encode([1, 2, 3])[:-1])
    with pytest.raises(DecodeError, match="unknown ext type"):
        decode(msgpack.packb(msgpack.ExtType(42, b"")))
    with pytest.raises(DecodeError):
        decode(msgpack.packb(msgpack.ExtType(2, msgpack.packb(("node", "not-an-int", 0)))))


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_decode_of_any_bytes_returns_a_term_or_raises_decode_error(data: bytes) -> None:
    try:
        decode(data)
    except DecodeError:
        pass


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_decode_all_of_any_bytes_returns_terms_or_raises_decode_error(data: bytes) -> None:
    try:
        assert type(decode_all(data)) is list
    except DecodeError:
        pass


ext_codes = st.sampled_from([1, 2, 3, 4, 5, 6, 7])


@settings(max_examples=500)
@given(ext_codes, st.binary(max_size=40))
def test_any_ext_payload_decodes_or_raises_decode_error(code: int, payload: bytes) -> None:
    try:
        decode(msgpack.packb(msgpack.ExtType(code, payload)))
    except DecodeError:
        pass


@settings(max_examples=150)
@given(ext_codes, terms)
def test_ext_payloads_holding_wrong_terms_decode_or_raise_decode_error(code: int, inner: Any) -> None:
    try:
        decode(msgpack.packb(msgpack.ExtType(code, encode(inner))))
    except DecodeError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6), st.integers(0, 64))
def test_frame_reader_cuts_any_bytes_the_same_however_they_arrive(
    data: bytes, cuts: list[int], max_frame: int
) -> None:
    """FrameReader: frames or FrameTooLarge, and the same frames for any chunking."""

    def run(chunks: list[bytes], use_pop: bool) -> tuple[list[bytes], bool]:
        reader = FrameReader(max_frame)
        out: list[bytes] = []
        try:
            for chunk in chunks:
                reader.feed(chunk)
                if use_pop:
                    while (f := reader.pop()) is not None:
                        out.append(f)
                else:
                    out += reader.pop_all()
        except FrameTooLarge:
            return out, True
        return out, False

    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    whole = run([data], use_pop=False)
    assert run(chunks, use_pop=False) == whole
    assert run(chunks, use_pop=True) == whole
    frames, too_large = whole
    assert all(len(f) <= max_frame for f in frames)
    if not too_large:
        assert sum(4 + len(f) for f in frames) <= len(data)


def _fresh(role: Role, connected: bool) -> DistProtocol:
    """One end of a connection, before the handshake or (really) after it."""
    initiator = DistProtocol(Role.INITIATOR, "i@h", "c", peer="a@h", max_frame=1 << 16)
    acceptor = DistProtocol(Role.ACCEPTOR, "a@h", "c", max_frame=1 << 16)
    if connected:
        acceptor.receive_data(initiator.data_to_send())
        acceptor.decide("ok")
        initiator.receive_data(acceptor.data_to_send())
        acceptor.receive_data(initiator.data_to_send())
        initiator.receive_data(acceptor.data_to_send())
        assert initiator.state is acceptor.state is State.CONNECTED
    return initiator if role is Role.INITIATOR else acceptor


@settings(max_examples=400)
@given(st.sampled_from(list(Role)), st.booleans(), st.lists(st.binary(max_size=80), max_size=4))
def test_receive_data_of_any_bytes_returns_events_or_raises_remote_protocol_error(
    role: Role, connected: bool, chunks: list[bytes]
) -> None:
    proto = _fresh(role, connected)
    try:
        for chunk in chunks:
            for event in proto.receive_data(chunk):
                assert type(event) in (list, PeerNamed, Connected, Refused)
    except RemoteProtocolError:
        assert proto.state is State.CLOSED


@settings(max_examples=150)
@given(st.sampled_from(list(Role)), st.lists(terms, min_size=1, max_size=4))
def test_receive_data_of_framed_random_terms_returns_events_or_raises(role: Role, batch: list[Any]) -> None:
    """Well-framed, well-encoded terms that are probably not control messages."""
    proto = _fresh(role, connected=True)
    payload = b"".join(encode(t) for t in batch)
    try:
        events = proto.receive_data(len(payload).to_bytes(4, "big") + payload)
    except RemoteProtocolError:
        return
    assert all(type(e) is list for e in events)


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(["op", "vmin", "vmax", "name", "flags", "creation", "status", "continue", "challenge",
                         "version", "digest", "reason"]),
        st.one_of(st.sampled_from(["name", "status", "alive", "challenge", "reply", "ack", "ok", "nok", "alive",
                                   "i@h", "a@h"]), st.integers(-2, 3), st.booleans(), st.binary(max_size=40),
                  st.none()),
    ),
    st.sampled_from(list(Role)),
)
def test_handshake_messages_with_random_fields_never_raise_anything_undocumented(
    msg: dict[str, Any], role: Role
) -> None:
    proto = _fresh(role, connected=False)
    payload = msgpack.packb(msg, use_bin_type=True)
    try:
        proto.receive_data(len(payload).to_bytes(4, "big") + payload)
    except RemoteProtocolError:
        assert proto.state is State.CLOSED
