"""The EPMD codec on its own: no sockets, no event loop."""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pymesh._errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError
from pymesh.wire._epmd import (
    MAX_EXTRA,
    MAX_NAME,
    MAX_REQUEST,
    NODE_TYPE_HIDDEN,
    Alive2Req,
    Alive2Resp,
    Alive2XResp,
    DumpReq,
    DumpResp,
    KillReq,
    KillResp,
    NamesReq,
    NamesResp,
    NodeEntry,
    Port2Resp,
    PortPlease2Req,
    RequestParser,
    StopReq,
    StopResp,
    encode_request,
    encode_response,
    parse_alive2_response,
    parse_dump_response,
    parse_kill_response,
    parse_names_response,
    parse_port2_response,
    parse_stop_response,
)

# --- strategies -------------------------------------------------------------------------------

node_names = st.text(
    st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]), min_size=1, max_size=63
).filter(lambda name: len(name.encode()) <= MAX_NAME)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
extras = st.binary(max_size=MAX_EXTRA)

alive2_requests = st.builds(Alive2Req, node_names, u16, u8, u8, u16, u16, extras)
requests = st.one_of(
    alive2_requests,
    st.builds(PortPlease2Req, node_names),
    st.just(NamesReq()),
    st.just(DumpReq()),
    st.just(KillReq()),
    st.builds(StopReq, node_names),
)
entries = st.builds(NodeEntry, node_names, u16, u8, u8, u16, u16, extras)


def parse_all(data: bytes, chunk: int | None = None) -> list[object]:
    """Every request in ``data``, fed in chunks of ``chunk`` bytes (all at once if None)."""
    parser = RequestParser()
    found: list[object] = []
    step = chunk or max(len(data), 1)
    for at in range(0, len(data), step):
        parser.receive_data(data[at : at + step])
        while (request := parser.next_request()) is not None:
            found.append(request)
    parser.receive_eof()
    assert parser.next_request() is None
    return found


# --- known bytes ------------------------------------------------------------------------------


def test_alive2_req_matches_the_documented_layout() -> None:
    # 120, PortNo, NodeType, Protocol, HighestVersion, LowestVersion, Nlen, NodeName, Elen, Extra
    body = bytes([120]) + struct.pack(">HBBHHH", 4000, 77, 0, 6, 5, 3) + b"foo" + struct.pack(">H", 2) + b"xy"
    expected = struct.pack(">H", len(body)) + body
    assert encode_request(Alive2Req("foo", 4000, 77, 0, 6, 5, b"xy")) == expected
    assert parse_all(expected) == [Alive2Req("foo", 4000, 77, 0, 6, 5, b"xy")]


def test_short_requests_match_the_documented_layout() -> None:
    assert encode_request(PortPlease2Req("foo")) == b"\x00\x04zfoo"
    assert encode_request(NamesReq()) == b"\x00\x01n"
    assert encode_request(DumpReq()) == b"\x00\x01d"
    assert encode_request(KillReq()) == b"\x00\x01k"
    assert encode_request(StopReq("foo")) == b"\x00\x04sfoo"


def test_responses_match_the_documented_layout() -> None:
    assert encode_response(Alive2XResp(0, 0x01020304)) == b"v\x00\x01\x02\x03\x04"
    assert encode_response(Alive2Resp(1, 99)) == b"y\x01\x00\x63"
    assert encode_response(Port2Resp(1)) == b"w\x01"
    entry = NodeEntry("n", 9, NODE_TYPE_HIDDEN, 0, 6, 6, b"")
    assert encode_response(Port2Resp(0, entry)) == b"w\x00" + struct.pack(">HBBHHH", 9, 72, 0, 6, 6, 1) + b"n\x00\x00"
    assert encode_response(NamesResp(4369, (("a", 1), ("b", 65535)))) == (
        struct.pack(">I", 4369) + b"name a at port 1\nname b at port 65535\n"
    )
    assert encode_response(KillResp(True)) == b"OK"
    assert encode_response(KillResp(False)) == b"NO"
    assert encode_response(StopResp(True)) == b"STOPPED"
    assert encode_response(StopResp(False)) == b"NOEXIST"


def test_entry_hidden_property() -> None:
    assert NodeEntry("a", 1, node_type=72).hidden
    assert NodeEntry("a", 1, node_type=104).hidden  # pre-R6 hidden node
    assert not NodeEntry("a", 1).hidden
    assert Alive2Req("a", 1, extra=b"e").entry == NodeEntry("a", 1, extra=b"e")


# --- round trips ------------------------------------------------------------------------------


@given(requests)
def test_request_round_trip(message: object) -> None:
    assert parse_all(encode_request(message)) == [message]  # type: ignore[arg-type]


@given(st.lists(requests, max_size=5), st.integers(1, 7))
def test_requests_split_anywhere_parse_the_same(batch: list[object], chunk: int) -> None:
    data = b"".join(encode_request(request) for request in batch)  # type: ignore[arg-type]
    assert parse_all(data, chunk) == batch


@given(st.one_of(st.builds(Alive2XResp, u8, st.integers(0, 0xFFFFFFFF)), st.builds(Alive2Resp, u8, u16)))
def test_alive2_response_round_trip(response: Alive2XResp | Alive2Resp) -> None:
    data = encode_response(response)
    for cut in range(len(data)):
        assert parse_alive2_response(data[:cut]) is None
    assert parse_alive2_response(data) == response


@given(st.one_of(st.builds(Port2Resp, st.integers(1, 255)), st.builds(Port2Resp, st.just(0), entries)))
def test_port2_response_round_trip(response: Port2Resp) -> None:
    data = encode_response(response)
    for cut in range(len(data)):
        assert parse_port2_response(data[:cut]) is None
    assert parse_port2_response(data) == response


@given(st.builds(NamesResp, st.integers(0, 0xFFFFFFFF), st.lists(st.tuples(node_names, u16), max_size=8).map(tuple)))
def test_names_response_round_trip(response: NamesResp) -> None:
    # A name with a newline cannot be listed unambiguously; epmd has the same limit.
    if any("\n" in name for name, _ in response.names):
        return
    assert parse_names_response(encode_response(response)) == response


@given(st.integers(0, 0xFFFFFFFF), st.text(st.characters(blacklist_characters="\0", blacklist_categories=["Cs"])))
def test_dump_response_round_trip(port: int, text: str) -> None:
    assert parse_dump_response(encode_response(DumpResp(port, text))) == DumpResp(port, text)


def test_dump_response_drops_epmds_nul_terminators() -> None:
    data = struct.pack(">I", 4369) + b"active name     <a> at port 1, fd = 5\n\0"
    assert parse_dump_response(data).text == "active name     <a> at port 1, fd = 5\n"


def test_kill_and_stop_responses_round_trip() -> None:
    for ok in (True, False):
        assert parse_kill_response(encode_response(KillResp(ok))) == KillResp(ok)
        assert parse_stop_response(encode_response(StopResp(ok))) == StopResp(ok)


def test_names_with_multibyte_utf8_and_limits() -> None:
    longest = "é" * (MAX_NAME // 2)  # 254 bytes
    request = Alive2Req(longest, 1, extra=b"x" * MAX_EXTRA)
    assert parse_all(encode_request(request)) == [request]
    assert parse_all(encode_request(PortPlease2Req("a" * MAX_NAME))) == [PortPlease2Req("a" * MAX_NAME)]


def test_port_please_accepts_a_trailing_nul_like_epmd() -> None:
    assert parse_all(b"\x00\x05zfoo\x00") == [PortPlease2Req("foo")]


# --- random input: parse or RemoteProtocolError, nothing else --------------------------------


def _drain(parser: RequestParser) -> None:
    for _ in range(1000):
        if parser.next_request() is None:
            return
    raise AssertionError("parser returned too many requests")


@given(st.binary(max_size=3000), st.integers(1, 64))
@example(b"\x00\x00", 1)
@example(b"\xff\xff" + b"x" * 10, 3)
@example(b"\x00\x02x\x00", 4)
def test_random_bytes_parse_or_raise_remote_protocol_error(data: bytes, chunk: int) -> None:
    parser = RequestParser()
    try:
        for at in range(0, len(data), chunk):
            parser.receive_data(data[at : at + chunk])
            _drain(parser)
        parser.receive_eof()
        _drain(parser)
    except RemoteProtocolError:
        pass


@given(st.binary(max_size=2000))
def test_random_requests_with_valid_framing_parse_or_raise(body: bytes) -> None:
    data = struct.pack(">H", len(body)) + body
    try:
        parse_all(data)
    except RemoteProtocolError:
        pass


@given(st.binary(max_size=600))
@example(b"v")
@example(b"w\x00")
def test_random_responses_parse_or_raise(data: bytes) -> None:
    for parse in (
        parse_alive2_response,
        parse_port2_response,
        parse_names_response,
        parse_dump_response,
        parse_kill_response,
        parse_stop_response,
    ):
        try:
            parse(data)
        except RemoteProtocolError:
            pass


# --- malformed, oversize, truncated -----------------------------------------------------------


def _first_error(data: bytes) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        parse_all(data)
    return info.value


def _alive2(name: bytes, extra: bytes = b"", nlen: int | None = None, elen: int | None = None) -> bytes:
    body = (
        bytes([120])
        + struct.pack(">HBBHHH", 1, 77, 0, 6, 6, len(name) if nlen is None else nlen)
        + name
        + struct.pack(">H", len(extra) if elen is None else elen)
        + extra
    )
    return struct.pack(">H", len(body)) + body


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\x00\x00", "empty request"),
        (b"\x00\x01A", "unknown request code 65"),
        (b"\x00\x02nX", "NAMES_REQ: 1 unexpected bytes"),
        (b"\x00\x01z", "PORT_PLEASE2_REQ: empty node name"),
        (b"\x00\x04za\x00b", "NUL"),
        (b"\x00\x03z\xff\xfe", "not valid UTF-8"),
        (_alive2(b""), "ALIVE2_REQ: empty node name"),
        (_alive2(b"a" * (MAX_NAME + 1)), f"node name of {MAX_NAME + 1} bytes exceeds {MAX_NAME}"),
        (_alive2(b"a", b"x" * (MAX_EXTRA + 1)), f"extra field of {MAX_EXTRA + 1} bytes exceeds {MAX_EXTRA}"),
        (_alive2(b"abc", nlen=9), "ALIVE2_REQ: truncated"),
        (_alive2(b"abc", b"xy", elen=5), "ALIVE2_REQ: truncated"),
        (_alive2(b"abc", b"xy", elen=1), "1 trailing bytes"),
        (b"\x00\x05x\x00", "connection closed inside a request"),
        (b"\x00", "connection closed inside a request"),
    ],
)
def test_malformed_requests_name_the_problem(data: bytes, fragment: str) -> None:
    assert fragment in str(_first_error(data))


def test_oversize_request_is_refused_before_it_arrives() -> None:
    parser = RequestParser()
    parser.receive_data(struct.pack(">H", MAX_REQUEST + 1))
    with pytest.raises(FrameTooLarge, match=f"exceeds {MAX_REQUEST}"):
        parser.next_request()
    with pytest.raises(FrameTooLarge):  # the parser stays failed
        parser.next_request()


def test_a_request_of_the_largest_size_passes_framing() -> None:
    parser = RequestParser()
    parser.receive_data(struct.pack(">H", MAX_REQUEST) + b"z" + b"a" * (MAX_REQUEST - 1))
    with pytest.raises(RemoteProtocolError, match="exceeds 255"):  # framing fine, name too long
        parser.next_request()


def test_complete_requests_survive_a_truncated_tail() -> None:
    parser = RequestParser()
    parser.receive_data(encode_request(NamesReq()) + b"\x00\x09x")
    parser.receive_eof()
    assert parser.next_request() == NamesReq()
    with pytest.raises(RemoteProtocolError, match="closed inside a request"):
        parser.next_request()
    with pytest.raises(LocalProtocolError):
        parser.receive_data(b"more")


@pytest.mark.parametrize(
    ("parse", "data", "fragment"),
    [
        (parse_alive2_response, b"w\x00", "unexpected response code 119 to ALIVE2_REQ"),
        (parse_alive2_response, b"v\x00\x00\x00\x00\x01!", "trailing"),
        (parse_port2_response, b"v\x00", "unexpected response code 118"),
        (parse_port2_response, b"w\x01\x00", "trailing bytes after an error result"),
        (parse_names_response, b"\x00\x00", "truncated"),
        (parse_names_response, b"\x00\x00\x11\x11hello\n", "malformed line 'hello'"),
        (parse_names_response, b"\x00\x00\x11\x11name a at port 1", "not terminated"),
        (parse_names_response, b"\x00\x00\x11\x11name a at port 99999\n", "malformed line"),
        (parse_names_response, b"\x00\x00\x11\x11name \xff at port 1\n", "not valid UTF-8"),
        (parse_kill_response, b"O", "unexpected answer to KILL_REQ"),
        (parse_stop_response, b"", "unexpected answer to STOP_REQ"),
    ],
)
def test_malformed_responses_name_the_problem(parse: object, data: bytes, fragment: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse(data)  # type: ignore[operator]
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        (Alive2Req("", 1), "empty node name"),
        (Alive2Req("a" * (MAX_NAME + 1), 1), "exceeds 255"),
        (Alive2Req("a", 1, extra=b"x" * (MAX_EXTRA + 1)), "extra field"),
        (Alive2Req("a", 70000), "port=70000"),
        (Alive2Req("a", 1, node_type=-1), "node_type=-1"),
        (PortPlease2Req("a\0b"), "NUL"),
        (PortPlease2Req(b"a"), "must be str"),  # type: ignore[arg-type]
        ("not a request", "not an EPMD request"),
    ],
)
def test_encoding_what_the_protocol_cannot_carry_is_our_error(message: object, fragment: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode_request(message)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_encoding_bad_responses_is_our_error() -> None:
    with pytest.raises(LocalProtocolError, match="result 0 needs an entry"):
        encode_response(Port2Resp(0))
    with pytest.raises(LocalProtocolError, match="creation"):
        encode_response(Alive2Resp(0, 70000))
    with pytest.raises(LocalProtocolError, match="not an EPMD response"):
        encode_response("OK")  # type: ignore[arg-type]
