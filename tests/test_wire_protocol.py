"""The distribution protocol with no I/O: two in-memory :class:`DistProtocol` peers.

Like h11's ``ConnectionPair``: an initiator and an acceptor wired back to back,
bytes pumped from one's ``data_to_send()`` into the other's ``receive_data()``.
Every handshake path, every status, every error and every row of
:data:`TRANSITIONS` is driven here without a socket, a clock or a sleep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest

from pymesh import (
    AuthenticationError,
    EncodeError,
    FrameTooLarge,
    HandshakeError,
    LocalProtocolError,
    RemoteProtocolError,
)
from pymesh.wire import (
    FLAG_HIDDEN,
    PROTOCOL_VERSION,
    STATUSES,
    TRANSITIONS,
    Connected,
    DistProtocol,
    FrameReader,
    PeerNamed,
    Pid,
    Refused,
    Role,
    State,
    _protocol,
    encode,
)
from pymesh.wire._control import ARITY, DISCONNECT, NODES, REG_SEND, SEND
from pymesh.wire._frames import frame

I_NAME = "alpha@host"
A_NAME = "beta@host"
COOKIE = "secret-cookie"


# --- the pair -------------------------------------------------------------------------------


class Pair:
    """An initiator and an acceptor wired back to back; events collected per side."""

    def __init__(
        self,
        *,
        i_cookie: str = COOKIE,
        a_cookie: str = COOKIE,
        i_flags: int = 0,
        a_flags: int = 0,
        i_max_frame: int = 1 << 20,
        a_max_frame: int = 1 << 20,
    ) -> None:
        self.i = DistProtocol(
            Role.INITIATOR, I_NAME, i_cookie, flags=i_flags, creation=7, peer=A_NAME, max_frame=i_max_frame
        )
        self.a = DistProtocol(Role.ACCEPTOR, A_NAME, a_cookie, flags=a_flags, creation=9, max_frame=a_max_frame)
        self.i_events: list[Any] = []
        self.a_events: list[Any] = []

    def i_to_a(self) -> list[Any]:
        events = self.a.receive_data(self.i.data_to_send())
        self.a_events += events
        return events

    def a_to_i(self) -> list[Any]:
        events = self.i.receive_data(self.a.data_to_send())
        self.i_events += events
        return events

    def pump(self, rounds: int = 10) -> None:
        """Move bytes both ways until both sides are quiet (bounded)."""
        for _ in range(rounds):
            a_bytes = self.i.data_to_send()
            i_bytes = b""
            if a_bytes:
                self.a_events += self.a.receive_data(a_bytes)
            i_bytes = self.a.data_to_send()
            if i_bytes:
                self.i_events += self.i.receive_data(i_bytes)
            if not a_bytes and not i_bytes:
                return
        raise AssertionError("the peers kept talking after 10 rounds")

    def to_decide(self) -> PeerNamed:
        """Run the handshake until the acceptor must decide; return its PeerNamed."""
        (named,) = self.i_to_a()
        assert type(named) is PeerNamed
        assert self.a.state is State.DECIDE
        return named

    def connect(self, status: str = "ok") -> None:
        self.to_decide()
        assert self.a.decide(status) is None
        self.pump()
        assert self.i.state is State.CONNECTED and self.a.state is State.CONNECTED


def hs_frame(**msg: Any) -> bytes:
    """One handshake frame, as a peer would write it."""
    return frame(msgpack.packb(msg, use_bin_type=True))


def read_hs(data: bytes) -> list[dict[str, Any]]:
    """The handshake messages in ``data``."""
    reader = FrameReader()
    reader.feed(data)
    return [msgpack.unpackb(p) for p in reader.pop_all()]


def frames_of(data: bytes) -> list[bytes]:
    reader = FrameReader()
    reader.feed(data)
    out = reader.pop_all()
    assert reader.buffered == 0
    return out


# --- the handshake --------------------------------------------------------------------------


def test_full_handshake_connects_both_sides_with_each_others_details() -> None:
    pair = Pair(i_flags=0, a_flags=FLAG_HIDDEN)
    named = pair.to_decide()
    assert named == PeerNamed(I_NAME, 0, 7, PROTOCOL_VERSION)
    assert pair.a.decide("ok") is None
    pair.pump()
    i_up = [e for e in pair.i_events if type(e) is Connected]
    a_up = [e for e in pair.a_events if type(e) is Connected]
    assert i_up == [Connected(A_NAME, FLAG_HIDDEN, 9, PROTOCOL_VERSION)]
    assert a_up == [Connected(I_NAME, 0, 7, PROTOCOL_VERSION)]
    assert i_up[0].hidden and not a_up[0].hidden
    assert pair.i.state is State.CONNECTED and pair.a.state is State.CONNECTED


def test_handshake_survives_bytes_arriving_one_at_a_time() -> None:
    pair = Pair()
    data = pair.i.data_to_send()
    events: list[Any] = []
    for b in data:
        events += pair.a.receive_data(bytes([b]))
    assert [type(e) for e in events] == [PeerNamed]
    pair.a.decide("ok")
    for side_from, side_to, sink in ((pair.a, pair.i, pair.i_events), (pair.i, pair.a, pair.a_events)):
        for b in side_from.data_to_send():
            sink += side_to.receive_data(bytes([b]))
    for b in pair.a.data_to_send():
        pair.i_events += pair.i.receive_data(bytes([b]))
    assert pair.i.state is State.CONNECTED and pair.a.state is State.CONNECTED


def test_the_digest_never_carries_the_cookie() -> None:
    pair = Pair()
    wire = b""
    wire += pair.i.data_to_send()
    pair.a.receive_data(wire)
    pair.a.decide("ok")
    for _ in range(3):
        out_a = pair.a.data_to_send()
        wire += out_a
        pair.i.receive_data(out_a)
        out_i = pair.i.data_to_send()
        wire += out_i
        pair.a.receive_data(out_i)
    assert pair.a.state is State.CONNECTED
    assert COOKIE.encode() not in wire


def test_wrong_cookie_fails_on_the_acceptor_that_checks_the_reply() -> None:
    pair = Pair(i_cookie="cookie-one", a_cookie="cookie-two")
    pair.to_decide()
    pair.a.decide("ok")
    pair.a_to_i()  # challenge -> the initiator answers with a digest made of the wrong cookie
    assert pair.i.state is State.WAIT_ACK
    with pytest.raises(AuthenticationError, match="cookies differ"):
        pair.i_to_a()
    assert pair.a.state is State.CLOSED
    assert pair.a.data_to_send() == b""  # no ack for an impostor
    assert pair.a.receive_data(b"anything") == []  # closed stays closed


def test_wrong_ack_digest_fails_on_the_initiator() -> None:
    pair = Pair()
    pair.to_decide()
    pair.a.decide("ok")
    pair.a_to_i()
    assert pair.i.state is State.WAIT_ACK
    with pytest.raises(AuthenticationError):
        pair.i.receive_data(hs_frame(op="ack", digest=b"\0" * 32))
    assert pair.i.state is State.CLOSED


def test_acceptor_that_reflects_our_own_challenge_is_rejected() -> None:
    """The role tag in the digest: an impostor acceptor cannot answer with our own digest."""
    pair = Pair()
    pair.to_decide()
    pair.a.decide("ok")
    pair.a_to_i()
    (reply,) = read_hs(pair.i.data_to_send())
    assert reply["op"] == "reply"
    with pytest.raises(AuthenticationError):
        pair.i.receive_data(hs_frame(op="ack", digest=reply["digest"]))


# --- statuses -------------------------------------------------------------------------------


GO_ON = ["ok", "ok_simultaneous"]
REFUSING = ["nok", "not_allowed"]


@pytest.mark.parametrize("status", GO_ON)
def test_go_on_statuses_connect(status: str) -> None:
    pair = Pair()
    pair.connect(status)
    assert [type(e) for e in pair.i_events] == [Connected]
    assert [type(e) for e in pair.a_events] == [PeerNamed, Connected]


@pytest.mark.parametrize("status", REFUSING)
def test_refusing_statuses_end_the_handshake_on_both_sides(status: str) -> None:
    pair = Pair()
    pair.to_decide()
    refused = pair.a.decide(status, "because")
    assert refused == Refused(status, "because")
    assert pair.a.state is State.CLOSED
    assert pair.a_to_i() == [Refused(status, "because")]
    assert pair.i.state is State.CLOSED
    assert pair.i.data_to_send() == b""


def test_refusal_without_a_reason_names_the_status() -> None:
    pair = Pair()
    pair.to_decide()
    assert pair.a.decide("nok") == Refused("nok", "nok")
    assert pair.a_to_i() == [Refused("nok", "nok")]


def test_alive_with_continue_true_goes_on_to_connect() -> None:
    pair = Pair()
    pair.to_decide()
    assert pair.a.decide("alive") is None
    assert pair.a.state is State.WAIT_ALIVE
    assert pair.a_to_i() == []
    # the initiator dials, so it holds no live connection: it says "continue"
    out = pair.i.data_to_send()
    assert read_hs(out) == [{"op": "alive", "continue": True}]
    pair.a_events += pair.a.receive_data(out)
    assert pair.a.state is State.WAIT_REPLY
    pair.pump()
    assert pair.i.state is State.CONNECTED and pair.a.state is State.CONNECTED
    assert type(pair.a_events[-1]) is Connected


def test_alive_with_continue_false_ends_the_handshake() -> None:
    pair = Pair()
    pair.to_decide()
    pair.a.decide("alive")
    pair.a.data_to_send()
    events = pair.a.receive_data(hs_frame(op="alive", **{"continue": False}))
    assert events == [Refused("alive", "the peer keeps its existing connection")]
    assert pair.a.state is State.CLOSED
    assert pair.a.data_to_send() == b""  # no challenge follows


def test_alive_without_a_boolean_continue_is_a_handshake_error() -> None:
    pair = Pair()
    pair.to_decide()
    pair.a.decide("alive")
    with pytest.raises(HandshakeError, match="continue"):
        pair.a.receive_data(hs_frame(op="alive", **{"continue": 1}))


def test_unknown_status_from_the_acceptor_is_a_handshake_error() -> None:
    pair = Pair()
    pair.i.data_to_send()
    with pytest.raises(HandshakeError, match="unknown handshake status"):
        pair.i.receive_data(hs_frame(op="status", status="maybe"))
    assert pair.i.state is State.CLOSED


def test_every_status_has_its_tests_here() -> None:
    # the go-on and refusing tests above are parametrized by these; "alive" has its own
    assert set(GO_ON + REFUSING + ["alive"]) == set(STATUSES)


# --- version negotiation and names ------------------------------------------------------------


def test_version_negotiation_picks_the_highest_common_version() -> None:
    pair = Pair()
    pair.i.data_to_send()
    (named,) = pair.a.receive_data(
        hs_frame(op="name", vmin=1, vmax=PROTOCOL_VERSION + 5, name=I_NAME, flags=0, creation=1)
    )
    assert named.version == PROTOCOL_VERSION
    pair.a.decide("ok")
    msgs = read_hs(pair.a.data_to_send())
    assert [m["op"] for m in msgs] == ["status", "challenge"]
    assert msgs[1]["version"] == PROTOCOL_VERSION


def test_no_common_version_is_refused_with_not_allowed() -> None:
    pair = Pair()
    (refused,) = pair.a.receive_data(
        hs_frame(op="name", vmin=PROTOCOL_VERSION + 1, vmax=PROTOCOL_VERSION + 3, name=I_NAME, flags=0, creation=1)
    )
    assert type(refused) is Refused and refused.status == "not_allowed"
    assert "no common protocol version" in refused.reason
    assert pair.a.state is State.CLOSED
    (status,) = read_hs(pair.a.data_to_send())
    assert status["op"] == "status" and status["status"] == "not_allowed"
    # ... and the initiator that reads it gives up with the reason
    assert pair.i.receive_data(hs_frame(**status)) == [Refused("not_allowed", refused.reason)]


def test_challenge_with_a_version_we_do_not_speak_is_a_handshake_error() -> None:
    pair = Pair()
    pair.i.receive_data(hs_frame(op="status", status="ok"))
    with pytest.raises(HandshakeError, match="version"):
        pair.i.receive_data(
            hs_frame(op="challenge", version=PROTOCOL_VERSION + 1, name=A_NAME, flags=0, creation=1,
                     challenge=b"c" * 32)
        )


def test_challenge_from_a_node_we_did_not_dial_is_a_handshake_error() -> None:
    pair = Pair()
    pair.i.receive_data(hs_frame(op="status", status="ok"))
    with pytest.raises(HandshakeError, match="calls itself"):
        pair.i.receive_data(
            hs_frame(op="challenge", version=PROTOCOL_VERSION, name="gamma@host", flags=0, creation=1,
                     challenge=b"c" * 32)
        )


@pytest.mark.parametrize("name", ["nohost", "a@b@c", "@host", "node@", "x" * 250 + "@hosty"])
def test_invalid_peer_names_are_refused(name: str) -> None:
    pair = Pair()
    (refused,) = pair.a.receive_data(hs_frame(op="name", vmin=1, vmax=1, name=name, flags=0, creation=1))
    assert refused.status == "not_allowed" and "invalid node name" in refused.reason


@pytest.mark.parametrize(
    "msg",
    [
        {"op": "name", "vmin": 1, "vmax": 1, "name": I_NAME, "flags": 0},  # no creation
        {"op": "name", "vmin": "1", "vmax": 1, "name": I_NAME, "flags": 0, "creation": 0},
        {"op": "name", "vmin": 1, "vmax": 1, "name": b"alpha@host", "flags": 0, "creation": 0},
        {"op": "name", "vmin": 1, "vmax": 1, "name": I_NAME, "flags": True, "creation": 0},
    ],
)
def test_name_message_with_missing_or_mistyped_fields_is_a_handshake_error(msg: dict[str, Any]) -> None:
    pair = Pair()
    with pytest.raises(HandshakeError, match="field"):
        pair.a.receive_data(hs_frame(**msg))


@pytest.mark.parametrize(
    "payload",
    [b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"op": 5}), msgpack.packb({1: "name"}), b""],
)
def test_handshake_frame_that_is_not_a_message_map_is_a_handshake_error(payload: bytes) -> None:
    pair = Pair()
    with pytest.raises(HandshakeError):
        pair.a.receive_data(frame(payload))


def test_challenge_of_the_wrong_length_is_a_handshake_error() -> None:
    pair = Pair()
    pair.i.receive_data(hs_frame(op="status", status="ok"))
    with pytest.raises(HandshakeError, match="length"):
        pair.i.receive_data(
            hs_frame(op="challenge", version=PROTOCOL_VERSION, name=A_NAME, flags=0, creation=1, challenge=b"c")
        )


# --- unexpected messages in every state --------------------------------------------------------

OPS = ["name", "status", "alive", "challenge", "reply", "ack", "bogus"]


def _in_state(state: State) -> DistProtocol:
    """A protocol object driven (by a real peer) into ``state``."""
    pair = Pair()
    if state is State.WAIT_STATUS:
        return pair.i
    if state is State.WAIT_NAME:
        return pair.a
    pair.to_decide()
    if state is State.DECIDE:
        return pair.a
    if state is State.WAIT_ALIVE:
        pair.a.decide("alive")
        return pair.a
    pair.a.decide("ok")
    if state is State.WAIT_REPLY:
        return pair.a
    pair.a_to_i()
    if state is State.WAIT_ACK:
        return pair.i
    if state is State.WAIT_CHALLENGE:
        fresh = Pair()
        fresh.i.receive_data(hs_frame(op="status", status="ok"))
        return fresh.i
    raise AssertionError(state)


HANDSHAKE_STATES = [s for s in State if s not in (State.CONNECTED, State.CLOSED)]


@pytest.mark.parametrize("state", HANDSHAKE_STATES, ids=lambda s: s.value)
def test_every_message_not_in_the_table_is_a_handshake_error(state: State) -> None:
    for op in OPS:
        if (state, op) in TRANSITIONS:
            continue
        proto = _in_state(state)
        assert proto.state is state
        with pytest.raises(HandshakeError, match="unexpected handshake message"):
            proto.receive_data(hs_frame(op=op))
        assert proto.state is State.CLOSED


def test_the_table_has_one_row_per_expected_message() -> None:
    assert set(TRANSITIONS) == {
        (State.WAIT_STATUS, "status"),
        (State.WAIT_CHALLENGE, "challenge"),
        (State.WAIT_ACK, "ack"),
        (State.WAIT_NAME, "name"),
        (State.WAIT_ALIVE, "alive"),
        (State.WAIT_REPLY, "reply"),
    }
    for handler in TRANSITIONS.values():
        assert callable(getattr(DistProtocol, handler))


def test_handshake_frames_are_limited_to_4_kib() -> None:
    pair = Pair(a_max_frame=1 << 20)
    with pytest.raises(FrameTooLarge):
        pair.a.receive_data((8192).to_bytes(4, "big"))
    assert pair.a.state is State.CLOSED


# --- commands -------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [s for s in State if s is not State.DECIDE], ids=lambda s: s.value)
def test_decide_outside_the_decide_state_is_a_local_protocol_error(state: State) -> None:
    if state is State.CONNECTED:
        pair = Pair()
        pair.connect()
        proto = pair.a
    elif state is State.CLOSED:
        pair = Pair()
        pair.to_decide()
        pair.a.decide("nok")
        proto = pair.a
    else:
        proto = _in_state(state)
    with pytest.raises(LocalProtocolError, match="decide"):
        proto.decide("ok")
    assert proto.state is state  # our misuse does not break the connection


def test_decide_with_an_unknown_status_is_a_local_protocol_error() -> None:
    pair = Pair()
    pair.to_decide()
    with pytest.raises(LocalProtocolError, match="unknown handshake status"):
        pair.a.decide("perhaps")
    assert pair.a.state is State.DECIDE
    assert pair.a.decide("ok") is None


def test_an_initiator_must_name_its_peer() -> None:
    with pytest.raises(LocalProtocolError):
        DistProtocol(Role.INITIATOR, I_NAME, COOKIE)


def test_local_and_remote_errors_are_apart() -> None:
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)
    for remote in (HandshakeError, AuthenticationError, FrameTooLarge):
        assert issubclass(remote, RemoteProtocolError)


# --- after the handshake: control messages ------------------------------------------------------

P1 = Pid(I_NAME, 1, 7)
P2 = Pid(A_NAME, 2, 9)


def test_control_messages_sent_before_connect_wait_and_arrive_in_order() -> None:
    pair = Pair()
    pair.i.send_control([SEND, P2, "early-1"])
    pair.i.send_control([REG_SEND, P1, "box", ("early", 2)])
    # the first bytes are the name message and nothing else
    first = pair.i.data_to_send()
    assert [m["op"] for m in read_hs(first)] == ["name"]
    pair.a_events += pair.a.receive_data(first)
    pair.a.send_control([SEND, P1, "from-acceptor-early"])
    pair.a.decide("ok")
    # the acceptor's challenge does not carry its queued message either
    challenge = pair.a.data_to_send()
    assert [m["op"] for m in read_hs(challenge)] == ["status", "challenge"]
    pair.i_events += pair.i.receive_data(challenge)
    pair.pump()
    assert pair.a_events[-2:] == [[SEND, P2, "early-1"], [REG_SEND, P1, "box", ("early", 2)]]
    assert pair.i_events[-1] == [SEND, P1, "from-acceptor-early"]
    assert type(pair.i_events[-2]) is Connected


def test_many_messages_leave_in_one_frame_and_arrive_in_order() -> None:
    pair = Pair()
    pair.connect()
    sizes = [pair.i.send_control([SEND, P2, i]) for i in range(500)]
    assert pair.i.pending_bytes == sum(sizes)
    data = pair.i.data_to_send()
    assert pair.i.pending_bytes == 0
    assert len(frames_of(data)) == 1
    assert pair.a.receive_data(data) == [[SEND, P2, i] for i in range(500)]
    assert pair.i.data_to_send() == b""


def test_batch_larger_than_max_frame_is_split_into_frames_within_the_limit() -> None:
    pair = Pair(i_max_frame=200, a_max_frame=200)
    pair.connect()
    msgs = [[SEND, P2, "x" * 30 + str(i)] for i in range(40)]
    for m in msgs:
        pair.i.send_control(m)
    data = pair.i.data_to_send()
    frames = frames_of(data)
    assert len(frames) > 1
    assert all(0 < len(f) <= 200 for f in frames)
    assert pair.a.receive_data(data) == msgs


def test_message_larger_than_max_frame_is_refused_at_send_and_nothing_is_queued() -> None:
    pair = Pair(i_max_frame=100)
    pair.connect()
    with pytest.raises(EncodeError, match="frame limit"):
        pair.i.send_control([SEND, P2, "y" * 200])
    assert pair.i.pending_bytes == 0
    pair.i.send_control([SEND, P2, "small"])
    assert pair.a.receive_data(pair.i.data_to_send()) == [[SEND, P2, "small"]]


def test_unencodable_control_message_raises_encode_error_and_leaves_the_connection_alone() -> None:
    pair = Pair()
    pair.connect()
    with pytest.raises(EncodeError):
        pair.i.send_control([SEND, P2, object()])
    pair.i.send_control([SEND, P2, "after"])
    assert pair.a.receive_data(pair.i.data_to_send()) == [[SEND, P2, "after"]]


def test_frame_larger_than_max_frame_raises_frame_too_large_before_its_body() -> None:
    pair = Pair(a_max_frame=1000)
    pair.connect()
    with pytest.raises(FrameTooLarge, match="1001"):
        pair.a.receive_data((1001).to_bytes(4, "big"))
    assert pair.a.state is State.CLOSED


def test_ticks_are_empty_frames_that_produce_no_events() -> None:
    pair = Pair()
    pair.to_decide()
    pair.i.send_tick()  # not connected: no tick
    assert pair.i.data_to_send() == b""
    pair.a.decide("ok")
    pair.pump()
    pair.i.send_tick()
    assert pair.i.data_to_send() == b"\0\0\0\0"
    assert pair.a.receive_data(b"\0\0\0\0" * 3) == []


@pytest.mark.parametrize(
    "term",
    [
        [99, "unknown op"],
        [SEND, P2],  # arity 3 wanted
        [SEND, P2, "a", "b"],
        [DISCONNECT],
        [NODES, [], "extra"],
        [],
        ["send", P2, 1],
        [1.0, P2, 1],
        (SEND, P2, 1),  # a tuple is not a control message
        "hello",
        None,
    ],
    ids=repr,
)
def test_malformed_control_message_is_a_remote_protocol_error(term: Any) -> None:
    pair = Pair()
    pair.connect()
    pair.i.send_control([SEND, P2, "before"])
    pair.i.send_encoded(encode(term))
    with pytest.raises(RemoteProtocolError, match="malformed control message"):
        pair.a.receive_data(pair.i.data_to_send())
    assert pair.a.state is State.CLOSED


def test_every_op_with_its_arity_is_accepted() -> None:
    pair = Pair()
    pair.connect()
    msgs = [[op] + [None] * (n - 1) for op, n in ARITY.items()]
    for m in msgs:
        pair.i.send_control(m)
    assert pair.a.receive_data(pair.i.data_to_send()) == msgs


def test_undecodable_frame_is_a_remote_protocol_error() -> None:
    pair = Pair()
    pair.connect()
    with pytest.raises(RemoteProtocolError):
        pair.a.receive_data(frame(b"\xc1\xc1\xc1"))
    assert pair.a.state is State.CLOSED


def test_eof_inside_a_frame_is_a_remote_protocol_error_and_clean_eof_is_not() -> None:
    pair = Pair()
    pair.connect()
    pair.a.receive_data(b"\0\0\0\x10abc")
    with pytest.raises(RemoteProtocolError, match="inside a frame"):
        pair.a.receive_eof()
    other = Pair()
    other.connect()
    other.a.receive_eof()
    assert other.a.state is State.CLOSED


# --- every row of the table ----------------------------------------------------------------------


@contextmanager
def recording_transitions() -> Iterator[set[tuple[State, str]]]:
    """Record the (state, op) rows that the handshake runs through while inside."""
    seen: set[tuple[State, str]] = set()
    original = DistProtocol._handshake_frame

    def spy(self: DistProtocol, payload: bytes) -> Any:
        msg = msgpack.unpackb(payload, strict_map_key=False)
        if type(msg) is dict and (self.state, msg.get("op")) in TRANSITIONS:
            seen.add((self.state, msg["op"]))
        return original(self, payload)

    DistProtocol._handshake_frame = spy  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        DistProtocol._handshake_frame = original  # type: ignore[method-assign]


def test_every_row_of_transitions_is_exercised_by_these_scenarios() -> None:
    scenarios: list[Callable[[], None]] = [
        test_full_handshake_connects_both_sides_with_each_others_details,
        test_alive_with_continue_true_goes_on_to_connect,
        test_alive_with_continue_false_ends_the_handshake,
        test_wrong_cookie_fails_on_the_acceptor_that_checks_the_reply,
        test_wrong_ack_digest_fails_on_the_initiator,
        lambda: test_refusing_statuses_end_the_handshake_on_both_sides("nok"),
    ]
    with recording_transitions() as seen:
        for scenario in scenarios:
            scenario()
    assert seen == set(TRANSITIONS), f"rows never run: {set(TRANSITIONS) - seen}"


def test_protocol_module_keeps_no_io() -> None:
    """The sans-IO promise, checked on the imports of the module."""
    source = Path(_protocol.__file__).read_text(encoding="utf-8")
    for forbidden in ("import asyncio", "import socket", "import time", "import select"):
        assert forbidden not in source


# --- zero-copy receive, batches and large payloads -------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pymesh import DecodeError  # noqa: E402
from pymesh.wire._frames import FrameBuffer  # noqa: E402
from pymesh.wire import decode  # noqa: E402
from pymesh.wire._control import SEND_TUPLE  # noqa: E402
from pymesh.wire._terms import batch_header, decode_batch, encode_send  # noqa: E402

BIG = bytes(range(256)) * 256  # 64 KiB


def read_into(proto: DistProtocol, data: bytes, sizes: list[int]) -> list[Any]:
    """Deliver ``data`` the way a BufferedProtocol transport does: each read
    fills at most the room get_buffer offers, in reads of the given sizes."""
    events: list[Any] = []
    pos, k = 0, 0
    while pos < len(data):
        room = proto.get_buffer(-1)
        n = min(len(room), len(data) - pos, sizes[k % len(sizes)] if sizes else len(data))
        room[:n] = data[pos : pos + n]
        room.release()
        events += proto.buffer_updated(n)
        pos += n
        k += 1
    return events


@settings(max_examples=60, deadline=None)
@given(
    payloads=st.lists(st.sampled_from([b"", b"x", BIG, BIG[:5000], BIG * 3]), min_size=1, max_size=12),
    sizes=st.lists(st.integers(min_value=1, max_value=300_000), min_size=1, max_size=8),
)
def test_reads_into_the_buffer_of_any_sizes_give_the_same_messages(payloads: list[bytes], sizes: list[int]) -> None:
    pair = Pair(i_max_frame=1 << 22, a_max_frame=1 << 22)
    pair.connect()
    for i, p in enumerate(payloads):
        pair.i.send_encoded(encode_send(P2, ("msg", i, p)))
        if i % 3 == 2:
            pair.i.send_tick()
    data = pair.i.data_to_send()
    assert read_into(pair.a, data, sizes) == [[SEND, P2, ("msg", i, p)] for i, p in enumerate(payloads)]
    assert pair.a._reader.buffered == 0


def test_receive_buffer_grows_while_reads_fill_it_and_fits_a_frame_larger_than_that() -> None:
    buf = FrameBuffer(max_frame=1 << 24, initial=4096, largest=64 * 1024)
    sizes = []
    for _ in range(8):  # reads that fill all the room: the buffer doubles, up to largest
        room = buf.get_buffer()
        sizes.append(len(room))
        room[:] = b"\0" * len(room)  # ticks
        buf.written(len(room))
        assert all(f == b"" for f in buf.pop_all())
    assert sizes[0] == 4096 and max(sizes) == 64 * 1024
    # a 1 MiB frame: the buffer grows to hold all of it, and it comes out whole
    body = BIG * 16
    buf.feed(len(body).to_bytes(4, "big") + body[:10])
    assert buf.pop_all() == []
    room = buf.get_buffer()
    assert len(room) >= len(body) - 10
    room[: len(body) - 10] = body[10:]
    buf.written(len(body) - 10)
    (frame_view,) = buf.pop_all()
    assert bytes(frame_view) == body and buf.buffered == 0


def test_a_grown_receive_buffer_shrinks_back_once_empty_but_not_while_a_frame_is_partial() -> None:
    buf = FrameBuffer(initial=4096, largest=1 << 20)
    body = BIG * 4
    buf.feed(len(body).to_bytes(4, "big") + body[:100])
    buf.get_buffer().release()  # the next read is offered room for the whole frame
    assert buf.capacity > len(body)
    assert not buf.shrink()  # a frame is in progress: keep it
    buf.feed(body[100:])
    assert [bytes(v) for v in buf.pop_all()] == [body]
    assert buf.shrink() and buf.capacity == 4096
    assert not buf.shrink()
    buf.feed(frame(b"after"))
    assert [bytes(v) for v in buf.pop_all()] == [b"after"]


def test_frames_handed_out_stay_valid_until_the_next_read_and_a_partial_frame_is_kept() -> None:
    buf = FrameBuffer(initial=64)
    data = frame(b"a" * 20) + frame(b"b" * 20) + frame(b"c" * 20)[:10]
    buf.feed(data[:60])
    views = buf.pop_all()
    assert [bytes(v) for v in views] == [b"a" * 20, b"b" * 20]
    buf.get_buffer()  # moves the partial third frame to the front while the views live
    buf.feed(data[60:] + frame(b"c" * 20)[10:])
    assert [bytes(v) for v in buf.pop_all()] == [b"c" * 20]


def test_frames_are_batches_of_messages_and_bare_messages_are_accepted_too() -> None:
    pair = Pair()
    pair.connect()
    pair.i.send_control([SEND, P2, 1])
    pair.i.send_control([SEND, P2, 2])
    (payload,) = frames_of(pair.i.data_to_send())
    assert payload[:5] == batch_header(2)
    assert decode_batch(payload) == [[SEND, P2, 1], [SEND, P2, 2]]
    # one message after another with no batch header: what a hand-written frame is
    assert pair.a.receive_data(frame(encode([SEND, P2, 3]) + encode([SEND, P2, 4]))) == [
        [SEND, P2, 3],
        [SEND, P2, 4],
    ]


@pytest.mark.parametrize(
    "payload",
    [
        batch_header(3) + encode([SEND, P2, 1]) + encode([SEND, P2, 2]),  # one short
        batch_header(1) + encode([SEND, P2, 1]) + encode([SEND, P2, 2]),  # one extra
        batch_header(1) + encode([SEND, P2, "x"])[:-1],  # truncated
        b"\xdd\x00\x00",  # a header cut short
    ],
    ids=["short", "extra", "truncated", "cut-header"],
)
def test_a_batch_whose_count_does_not_match_is_a_remote_protocol_error(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_batch(payload)
    pair = Pair()
    pair.connect()
    with pytest.raises(RemoteProtocolError):
        pair.a.receive_data(frame(payload))
    assert pair.a.state is State.CLOSED


def test_a_large_payload_is_written_as_the_object_sent_never_copied() -> None:
    pair = Pair(i_max_frame=1 << 22, a_max_frame=1 << 22)
    pair.connect()
    payload = BIG * 2
    parts = encode_send(P2, ("msg", 1, payload))
    assert type(parts) is list and any(p is payload for p in parts)
    assert decode(b"".join(parts)) == [SEND_TUPLE, P2, "msg", 1, payload]  # the items inline
    for i in range(50):
        pair.i.send_control([SEND, P2, i])  # small ones around it are joined into one buffer
    pair.i.send_encoded(parts)
    pair.i.send_control([SEND, P2, "after"])
    buffers = pair.i.buffers_to_send()
    assert any(b is payload for b in buffers)
    assert len(buffers) <= 4
    events = pair.a.receive_data(b"".join(buffers))
    assert events[-2:] == [[SEND, P2, ("msg", 1, payload)], [SEND, P2, "after"]]
    assert len(events) == 52


def test_a_batch_of_large_payloads_over_max_frame_splits_between_whole_messages() -> None:
    pair = Pair(i_max_frame=200_000, a_max_frame=200_000)
    pair.connect()
    for i in range(7):
        pair.i.send_encoded(encode_send(P2, ("msg", i, BIG)))
    frames = frames_of(pair.i.data_to_send())
    assert len(frames) == 3  # 3 + 3 + 1 messages of 64 KiB under a 200 kB limit
    assert all(len(f) <= 200_000 for f in frames)
    terms = [m for f in frames for m in decode_batch(f)]
    assert terms == [[SEND_TUPLE, P2, "msg", i, BIG] for i in range(7)]


@pytest.mark.parametrize(
    "msg",
    [(), ("one",), ("msg", 1, {"k": (1, [2])}), tuple(range(13)), tuple(range(14)), tuple(range(40)),
     ("big", BIG, "tail", BIG[:4096]), (("nested",), [("in", "list")], {("k",): frozenset({1})})],
    ids=["empty", "one", "small", "13", "14", "40", "big", "nested"],
)
def test_a_sent_tuple_travels_with_its_items_inline_and_arrives_as_a_send(msg: tuple[Any, ...]) -> None:
    pair = Pair()
    pair.connect()
    data = encode_send(P2, msg)
    raw = decode(data if type(data) is bytes else b"".join(data))
    assert raw == [SEND_TUPLE, P2, *msg]
    pair.i.send_encoded(data)
    pair.i.send_encoded(encode_send(P2, [1, ("list", "not a tuple")]))  # anything else: a plain SEND
    assert pair.a.receive_data(pair.i.data_to_send()) == [[SEND, P2, msg], [SEND, P2, [1, ("list", "not a tuple")]]]


@pytest.mark.parametrize("term", [[SEND_TUPLE], [SEND_TUPLE, P2, "x"][:1]], ids=["no-pid", "op-only"])
def test_a_send_tuple_without_its_pid_is_a_remote_protocol_error(term: list[Any]) -> None:
    pair = Pair()
    pair.connect()
    pair.i.send_encoded(encode(term))
    with pytest.raises(RemoteProtocolError, match="malformed control message"):
        pair.a.receive_data(pair.i.data_to_send())
