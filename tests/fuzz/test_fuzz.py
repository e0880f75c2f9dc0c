"""The fuzzers' share of the test suite (well under 20 s): corpus replay, Hypothesis, a short engine run.

* every seed and every crasher in ``corpus/`` passes its target, and the
  recorded handshakes still replay to ``CONNECTED`` (else the protocol
  targets would silently stop reaching the control-message decoder);
* structured mutation: Hypothesis edits valid handshakes, frames, terms and
  port mapper messages (and shrinks what breaks to the smallest edit);
* term-level mutation: well-framed control messages whose fields are
  replaced by arbitrary terms;
* a handshake state machine (:class:`HandshakeWithAnAdversary`): two real
  peers, and an adversary that delays, cuts, corrupts, drops, duplicates and
  injects frames, with the invariants checked after every step;
* headers that announce gigabytes are refused without allocating them;
* a few thousand inputs of the mutation engine, and proof that it finds a
  planted bug.

The million-input run is ``python -m tests.fuzz --inputs 1000000``.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from pymesh import (
    AuthenticationError,
    DecodeError,
    EncodeError,
    FrameTooLarge,
    HandshakeError,
    RemoteProtocolError,
)
from pymesh.wire import (
    STATUSES,
    Connected,
    DistProtocol,
    FrameReader,
    PeerNamed,
    Refused,
    Role,
    State,
    decode,
    encode,
)
from pymesh.wire._control import ARITY
from pymesh.wire._frames import frame

from . import targets as T
from .corpus import CORPUS, CRASHERS, SENDS, control_messages, seeds
from .engine import fuzz


def fast(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SEEDS = seeds()


# --- the corpus ----------------------------------------------------------------------------------------


def _corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.bin")) + sorted(CRASHERS.glob("*.bin"))


def test_the_corpus_on_disk_is_the_seeds_plus_crashers() -> None:
    on_disk = {p.stem for p in CORPUS.glob("*.bin")}
    assert on_disk == set(SEEDS), "run: python -m tests.fuzz --write-seeds"


@pytest.mark.parametrize("path", _corpus_files(), ids=lambda p: p.name)
def test_every_corpus_entry_passes_its_target(path: Path) -> None:
    T.TARGETS[path.name.split("-")[0]](path.read_bytes())


def test_recorded_handshakes_replay_to_connected_and_reach_the_control_messages() -> None:
    n_control = 2 * len(control_messages()) + 4 + len(SENDS)
    for name, role in (("acceptor-ok", Role.ACCEPTOR), ("acceptor-alive", Role.ACCEPTOR), ("initiator-ok", Role.INITIATOR)):
        data = SEEDS[name]
        got: list[Any] = []
        with T.fixed_challenges():
            if role is Role.ACCEPTOR:
                proto = DistProtocol(role, T.A_NAME, T.COOKIE, creation=5, max_frame=T.MAX_FRAME)
            else:
                proto = DistProtocol(role, T.I_NAME, T.COOKIE, creation=3, peer=T.A_NAME, max_frame=T.MAX_FRAME)
            for chunk in T._chunks(data[2:], data[1]):
                for event in proto.receive_data(chunk):
                    got.append(event)
                    if type(event) is PeerNamed:
                        proto.decide(STATUSES[data[0]])
        assert proto.state is State.CONNECTED, name
        assert Connected in [type(e) for e in got], name
        assert sum(type(e) is list for e in got) == n_control, name


# --- structured mutation ---------------------------------------------------------------------------------

edits = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "insert", "delete", "truncate", "length", "duplicate"]),
        st.integers(0, 4096),
        st.integers(0, 2**32 - 1),
    ),
    min_size=1,
    max_size=4,
)


def apply_edits(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    """Deterministic edits, so that Hypothesis can shrink a failure to the one edit that matters."""
    buf = bytearray(data)
    for op, pos, value in ops:
        n = len(buf)
        at = pos % (n + 1)
        if op == "flip" and n:
            buf[at % n] ^= 1 << (value % 8)
        elif op == "set" and n:
            buf[at % n] = value & 0xFF
        elif op == "insert":
            buf[at:at] = value.to_bytes(4, "big")[: 1 + value % 4]
        elif op == "delete":
            del buf[at : at + 1 + value % 16]
        elif op == "truncate":
            del buf[at:]
        elif op == "length" and n >= 4:
            buf[at % (n - 3) : at % (n - 3) + 4] = value.to_bytes(4, "big")
        elif op == "duplicate":
            buf[at:at] = buf[at : at + 1 + value % 64]
    return bytes(buf)


@fast(600)
@given(st.sampled_from(sorted(SEEDS)), edits)
def test_edited_seeds_parse_or_raise_a_documented_error(name: str, ops: list[tuple[str, int, int]]) -> None:
    T.TARGETS[name.split("-")[0]](apply_edits(SEEDS[name], ops))


# --- term-level mutation ------------------------------------------------------------------------------------

leaf_terms = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.binary(max_size=8),
    st.sampled_from([T.I_NAME, T.A_NAME, "", "a@b@c", 2**64, -1]),
)
any_terms = st.recursive(
    leaf_terms,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.lists(inner, max_size=4).map(tuple),
                            st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=10,
)


@fast(300)
@given(st.lists(st.tuples(st.integers(0, 13), st.integers(0, 5), any_terms), min_size=1, max_size=5),
       st.sampled_from(list(Role)))
def test_control_messages_with_any_fields_are_accepted_with_their_arity_or_refused(
    changes: list[tuple[int, int, Any]], role: Role
) -> None:
    msgs = control_messages()
    batch = []
    for which, field, value in changes:
        msg = list(msgs[which])
        if field == 0:
            msg[0] = value  # the op itself
        elif field < len(msg):
            msg[field] = value
        else:
            msg.append(value)  # one field too many
        batch.append(msg)
    i, a = T.pair()
    proto = a if role is Role.ACCEPTOR else i
    try:
        events = proto.receive_data(frame(b"".join(encode(m) for m in batch)))
    except RemoteProtocolError:
        assert proto.state is State.CLOSED
        return
    for event in events:
        assert type(event) is list and ARITY.get(event[0]) == len(event)


# --- the handshake as a state machine, with an adversary in the middle --------------------------------------

hs_ops = st.sampled_from(["name", "status", "alive", "challenge", "reply", "ack", "bogus"])
hs_values = st.one_of(
    st.sampled_from([*STATUSES, T.I_NAME, T.A_NAME, "x", 0, 1, 2, True, False, b"\x5a" * 32, b"", None]),
    st.integers(-3, 3), st.binary(max_size=40), st.text(max_size=10),
)
hs_fields = st.sampled_from(["op", "vmin", "vmax", "name", "flags", "creation", "status", "continue", "challenge",
                             "version", "digest", "reason"])


class HandshakeWithAnAdversary(RuleBasedStateMachine):
    """An initiator and an acceptor whose bytes pass through an adversary.

    The adversary moves bytes in pieces (or all at once), and may corrupt,
    drop, duplicate, or inject handshake frames. Invariants, after every step:
    only documented errors, and a side that raised is CLOSED for good; a side
    connects at most once, to the peer it expects, and never leaves
    ``CONNECTED`` except to ``CLOSED``; nobody connects when the cookies
    differ; and when nobody interfered, a go-on decision connects both sides
    and the control messages sent either way arrive, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sides: dict[str, DistProtocol] = {}
        self.wire: dict[str, bytearray] = {"i": bytearray(), "a": bytearray()}  # bytes in flight *from* a side
        self.errors: dict[str, BaseException] = {}
        self.connected: dict[str, int] = {"i": 0, "a": 0}
        self.received: dict[str, list[Any]] = {"i": [], "a": []}
        self.sent: dict[str, list[Any]] = {"i": [], "a": []}
        self.tampered = False
        self.same_cookie = True
        self.decision: str | None = None

    @initialize(same_cookie=st.booleans(), hidden=st.booleans(), max_frame=st.sampled_from([64, 1 << 16]),
                handshake_first=st.booleans())
    def start(self, same_cookie: bool, hidden: bool, max_frame: int, handshake_first: bool) -> None:
        self.same_cookie = same_cookie
        self.sides["i"] = DistProtocol(Role.INITIATOR, T.I_NAME, T.COOKIE, flags=int(hidden), creation=3,
                                       peer=T.A_NAME, max_frame=max_frame)
        self.sides["a"] = DistProtocol(Role.ACCEPTOR, T.A_NAME, T.COOKIE if same_cookie else "other", creation=5,
                                       max_frame=max_frame)
        self._collect()
        if handshake_first:  # half the runs attack an established connection
            self.pump()
            self.decide("ok")
            self.pump()

    def _collect(self) -> None:
        for side, proto in self.sides.items():
            self.wire[side] += proto.data_to_send()

    def _deliver(self, to: str, data: bytes) -> None:
        proto = self.sides[to]
        if to in self.errors:
            assert proto.receive_data(data) == []
            return
        try:
            events = proto.receive_data(data)
        except (AuthenticationError, HandshakeError, FrameTooLarge, DecodeError, RemoteProtocolError) as e:
            assert proto.state is State.CLOSED
            self.errors[to] = e
            return
        for event in events:
            if type(event) is PeerNamed:
                assert to == "a" and proto.state is State.DECIDE
            elif type(event) is Connected:
                self.connected[to] += 1
                assert event.name == (T.A_NAME if to == "i" else T.I_NAME)
            elif type(event) is list:
                self.received[to].append(event)
            else:
                assert type(event) is Refused

    @rule(direction=st.sampled_from(["i", "a"]), size=st.integers(1, 64), everything=st.booleans())
    def move(self, direction: str, size: int, everything: bool) -> None:
        buf = self.wire[direction]
        n = len(buf) if everything else min(size, len(buf))
        data, self.wire[direction] = bytes(buf[:n]), buf[n:]
        self._deliver("a" if direction == "i" else "i", data)
        self._collect()

    @rule()
    def pump(self) -> None:
        """Both ways, until quiet (what an honest network does)."""
        for _ in range(10):
            if not (self.wire["i"] or self.wire["a"]):
                return
            for direction in ("i", "a"):
                if self.wire[direction]:
                    self.move(direction, 0, True)

    @precondition(lambda self: self.sides["a"].state is State.DECIDE and self.decision is None)
    @rule(status=st.sampled_from(STATUSES))
    def decide(self, status: str) -> None:
        self.decision = status
        self.sides["a"].decide(status)
        self._collect()

    @rule(direction=st.sampled_from(["i", "a"]), pos=st.integers(0, 10_000), bit=st.integers(0, 7))
    def corrupt(self, direction: str, pos: int, bit: int) -> None:
        buf = self.wire[direction]
        if buf:
            buf[pos % len(buf)] ^= 1 << bit
            self.tampered = True

    @rule(direction=st.sampled_from(["i", "a"]), keep=st.integers(0, 100))
    def drop(self, direction: str, keep: int) -> None:
        buf = self.wire[direction]
        if buf:
            del buf[keep % len(buf) :]
            self.tampered = True

    @rule(direction=st.sampled_from(["i", "a"]), length=st.integers(1, 40))
    def duplicate(self, direction: str, length: int) -> None:
        buf = self.wire[direction]
        if buf:
            buf += buf[:length]
            self.tampered = True

    @rule(to=st.sampled_from(["i", "a"]), op=hs_ops, fields=st.dictionaries(hs_fields, hs_values, max_size=6))
    def inject(self, to: str, op: str, fields: dict[str, Any]) -> None:
        fields.setdefault("op", op)
        self.tampered = True
        self._deliver(to, frame(msgpack.packb(fields, use_bin_type=True)))
        self._collect()

    @rule(side=st.sampled_from(["i", "a"]), which=st.integers(0, 13))
    def send_control(self, side: str, which: int) -> None:
        proto = self.sides[side]
        if proto.state is State.CLOSED or side in self.errors:
            return
        msg = control_messages()[which]
        try:
            proto.send_control(msg)
        except EncodeError:  # documented: larger than max_frame; nothing queued
            return
        self.sent[side].append(msg)
        self._collect()

    @invariant()
    def only_the_allowed_outcomes(self) -> None:
        for side, proto in self.sides.items():
            assert self.connected[side] <= 1
            if side in self.errors:
                assert proto.state is State.CLOSED
            if not self.same_cookie:
                assert self.connected[side] == 0, "connected without the cookie"
            if self.connected[side] and side not in self.errors:
                assert proto.state in (State.CONNECTED, State.CLOSED)

    def teardown(self) -> None:
        note_event(f"connected: {sorted(s for s, n in self.connected.items() if n)}; errors: {sorted(self.errors)}; "
              f"tampered: {self.tampered}")
        if not self.sides or self.tampered or not self.same_cookie or self.errors:
            return
        self.pump()
        if self.sides["a"].state is State.DECIDE and self.decision is None:
            self.decide("ok")
        self.pump()
        if self.decision in ("ok", "ok_simultaneous", "alive"):
            assert self.connected == {"i": 1, "a": 1}, (self.decision, self.errors)
            assert self.received["a"] == [_wire(m) for m in self.sent["i"]]
            assert self.received["i"] == [_wire(m) for m in self.sent["a"]]
        elif self.decision in ("nok", "not_allowed"):
            assert self.connected == {"i": 0, "a": 0}


def _wire(msg: list[Any]) -> Any:
    """A control message as the peer decodes it."""
    return decode(encode(msg))


TestHandshakeWithAnAdversary = HandshakeWithAnAdversary.TestCase
TestHandshakeWithAnAdversary.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- headers that announce more than is there ------------------------------------------------------------

HUGE = [
    b"\xdd\xff\xff\xff\xff",  # array of 4 Gi elements
    b"\xdf\xff\xff\xff\xff",  # map of 4 Gi pairs
    b"\xdb\xff\xff\xff\xff",  # str of 4 GiB
    b"\xc6\xff\xff\xff\xff",  # bin of 4 GiB
    b"\xc9\xff\xff\xff\xff\x01",  # ext (tuple) of 4 GiB
    msgpack.packb(msgpack.ExtType(1, b"\xdd\xff\xff\xff\xff")),  # a tuple announcing 4 Gi elements
    msgpack.packb(msgpack.ExtType(5, b"\xdc\xff\xff")),  # a set announcing 64 Ki elements
]


@pytest.mark.parametrize("data", HUGE, ids=lambda d: d[:6].hex())
def test_a_term_announcing_gigabytes_is_refused_without_allocating_them(data: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_frame_announcing_gigabytes_is_refused_before_its_body() -> None:
    reader = FrameReader(1 << 16)
    reader.feed(b"\xff\xff\xff\xff" + b"x" * 10)
    with pytest.raises(FrameTooLarge):
        reader.pop_all()
    _i, a = T.pair()
    with pytest.raises(FrameTooLarge):
        a.receive_data(b"\x00\x01\x00\x01")  # 64 KiB + 1, one more than this connection allows
    assert a.state is State.CLOSED


def test_a_connection_with_a_tiny_max_frame_still_handshakes() -> None:
    # found by HandshakeWithAnAdversary: the handshake frames (~100 bytes) were held to
    # min(max_frame, 4096), so a node with max_frame=64 could never connect to anyone
    i, a = T.pair(max_frame=64)
    assert i.state is a.state is State.CONNECTED
    with pytest.raises(EncodeError):
        i.send_control([1, control_messages()[1][1], "x" * 100])
    i.send_control([2, control_messages()[1][1], "e", 1])
    assert a.receive_data(i.data_to_send()) == [[2, control_messages()[1][1], "e", 1]]


# --- the engine -----------------------------------------------------------------------------------------------


def test_a_few_thousand_mutated_inputs_break_no_target() -> None:
    stats = fuzz(6000, seed=20260611, memory_every=500)
    assert not stats.crashes, stats.summary()
    assert stats.slowest[0] < 1.0, stats.summary()


def test_the_engine_finds_a_planted_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    real = T.decode

    def buggy(data: bytes) -> Any:
        if b"\xd6" in data:  # a fixext 4 anywhere: our planted bug
            raise IndexError("planted")
        return real(data)

    monkeypatch.setattr(T, "decode", buggy)
    stats = fuzz(3000, seed=1, targets=["terms"], memory_every=0)
    assert any(sig.startswith("IndexError: planted") for sig in stats.crashes), stats.summary()
