"""Hardening: what an unauthenticated stranger, or a broken peer, can and cannot do.

* digests and cookies are compared in constant time, and nothing a peer sends
  is evaluated or imported outside the authenticated ``rpc``/spawn paths
  (checked on the source, so that a change that breaks it fails here);
* failed handshakes are rate-limited per address, and pending handshakes are
  capped (a real ``pymesh run`` node, raw sockets; the test process as a node);
* the term decoder's limits: nesting of lists, dicts and tuples, container
  sizes, and error reports that stay safe on hostile terms (sans-IO pairs, and
  once over a real connection);
* SSH logins are rate-limited per address (the shell's ``AuthPolicy``, with a
  real asyncssh client and server, no terminal needed).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import msgpack
import pytest
from support.cluster import epmd, eventually, run, unique  # noqa: F401 - the fixture
from support.reliability import HOST, RunNode

import pymesh
from pymesh import DecodeError, Node, RemoteProtocolError, rpc_call
from pymesh.runtime._guard import HandshakeGuard
from pymesh.wire import Connected, DistProtocol, Refused, Role, State
from pymesh.wire._control import SEND
from pymesh.wire._frames import frame
from pymesh.wire._terms import MAX_DEPTH, DecodeLimits, decode_all, encode

pytestmark = pytest.mark.timeout(60)

COOKIE = "hard-" + secrets.token_hex(6)
ROOT = Path(__file__).resolve().parent.parent


# --- on the source ----------------------------------------------------------------------------------


def _sources(*dirs: str) -> Iterator[tuple[Path, ast.Module]]:
    for d in dirs:
        for path in sorted((ROOT / d).rglob("*.py")):
            yield path, ast.parse(path.read_text(), str(path))


def test_digests_and_cookies_are_only_compared_in_constant_time() -> None:
    offenders = []
    for path, tree in _sources("pymesh", "shell"):
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
                text = ast.unparse(node).lower()
                if "digest" in text or "cookie" in text:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []
    protocol = (ROOT / "pymesh/wire/_protocol.py").read_text()
    assert protocol.count("hmac.compare_digest(") == 2  # the reply, and the ack


# Every place pymesh may evaluate or import something by name, and why that is safe.
ALLOWED_DYNAMIC = {
    ("pymesh/runtime/_rpc.py", "compile"): "rpc_eval: an authenticated node's source (the feature)",
    ("pymesh/runtime/_rpc.py", "eval"): "rpc_eval: an authenticated node's source (the feature)",
    ("pymesh/runtime/_node.py", "importlib.import_module"): "resolve_function: rpc_call and SPAWN_REQUEST "
    "from an authenticated node, or local code",
    ("pymesh/services/discovery/_config.py", "importlib.import_module"): "a strategy named in the local config file",
}


def test_nothing_from_a_peer_is_evaluated_outside_rpc_and_spawn() -> None:
    dangerous = {"eval", "exec", "compile", "__import__", "importlib.import_module", "pickle.loads", "marshal.loads"}
    found = {}
    for path, tree in _sources("pymesh"):
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name in dangerous:
                    found[(rel, name)] = node.lineno
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(m.split(".")[0] in ("pickle", "marshal", "shelve") for m in mods), (rel, mods)
    assert set(found) == set(ALLOWED_DYNAMIC), found
    # and the codec never resolves a name: an exception travels as RemoteError(type name, message)
    (term,) = decode_all(encode(OSError("boom")))
    assert type(term) is pymesh.RemoteError and term.type_name == "builtins.OSError"


# --- the guard, with a fake clock -----------------------------------------------------------------


def test_handshake_guard_token_bucket_and_pending_cap() -> None:
    g = HandshakeGuard(max_pending=2, max_failures=3, window=60.0)
    assert g.admit("a", 0.0).ok and g.admit("a", 0.0).ok
    full = g.admit("b", 0.0)
    assert not full.ok and "pending" in full.reason and full.warn
    assert not g.admit("b", 1.0).warn  # one warning every few seconds, not one per connection
    g.settled()
    g.settled()
    assert not g.failed("a", 0.0) and not g.failed("a", 0.0)
    assert g.failed("a", 0.0)  # the third failure used the last token
    refused = g.admit("a", 0.0)
    assert not refused.ok and "more than 3 failed handshakes within 60s" in refused.reason
    assert g.admit("other", 0.0).ok  # per address
    g.settled()
    assert not g.admit("a", 19.0).ok  # a token grows back in window / max_failures = 20 s
    assert g.admit("a", 21.0).ok
    assert g.refused == 4
    off = HandshakeGuard(max_pending=None, max_failures=None)
    for _ in range(1000):
        off.failed("a", 0.0)
        assert off.admit("a", 0.0).ok


# --- raw connections to a node ------------------------------------------------------------------


async def raw_handshake(port: int, peer: str, cookie: str, me: str | None = None) -> tuple[Any, Any, Any]:
    """Dial ``peer`` on ``port`` with a sans-IO initiator over a plain socket.

    Returns ``(outcome, reader, writer)``: outcome is ``Connected``, ``Refused``,
    or ``"closed"`` when the node closed the connection first.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    proto = DistProtocol(Role.INITIATOR, me or f"{unique('raw')}@{HOST}", cookie, peer=peer)
    writer.write(proto.data_to_send())
    while True:
        try:
            data = await asyncio.wait_for(reader.read(65536), 10)
        except ConnectionResetError:  # an abort
            data = b""
        if not data:
            return "closed", reader, writer
        try:
            events = proto.receive_data(data)
        except RemoteProtocolError:
            return "closed", reader, writer
        writer.write(proto.data_to_send())
        for ev in events:
            if type(ev) in (Connected, Refused):
                return ev, reader, writer


async def closed_at_once(port: int, payload: bytes = b"") -> bool:
    """Whether the node closes a new connection before answering anything."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if payload:
            writer.write(payload)
        try:
            return await asyncio.wait_for(reader.read(1), 5) == b""
        except ConnectionResetError:  # an abort
            return True
    finally:
        writer.close()


GARBAGE = frame(msgpack.packb({"op": "hello"}))  # a frame, but no handshake message


@pytest.fixture
def target(epmd: int) -> Iterator[RunNode]:
    node = RunNode([], cookie=COOKIE, epmd_port=epmd).wait_ready()
    try:
        yield node
    finally:
        node.close()


def test_failed_handshakes_from_one_address_are_rate_limited(target: RunNode) -> None:
    async def scenario() -> None:
        # 20 failures (the default per minute): wrong cookies, then garbage
        for _ in range(5):
            outcome, _, w = await raw_handshake(target.port, target.name, "wrong")
            assert outcome == "closed"
            w.close()
        for _ in range(15):
            assert await closed_at_once(target.port, GARBAGE)
        target.wait_log(r"too many failed handshakes from 127\.0\.0\.1; refusing it for a while")
        # now even a right cookie is refused at once, unread
        outcome, _, w = await raw_handshake(target.port, target.name, COOKIE)
        assert outcome == "closed"
        w.close()
        target.wait_log(r"refused at once: more than 20 failed handshakes within 60s")
        assert target.log.count("refused at once") == 1  # the log is not flooded either
        # a token grows back every 3 s: a well-behaved node gets in again
        await asyncio.sleep(3.2)
        outcome, _, w = await raw_handshake(target.port, target.name, COOKIE)
        assert type(outcome) is Connected
        w.close()

    run(scenario)


def test_pending_handshakes_are_capped(epmd: int, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        me = await pymesh.start(
            unique("p"), cookie=COOKIE, epmd_port=epmd, listen_host="127.0.0.1", max_pending_handshakes=4
        )
        try:
            idle = [await asyncio.open_connection("127.0.0.1", Node.port()) for _ in range(4)]
            await asyncio.sleep(0.05)
            assert await closed_at_once(Node.port())  # the fifth
            assert "refused at once: 4 handshakes are pending already" in caplog.text
            for _, w in idle:
                w.close()
            await eventually(lambda: pymesh.runtime._node.current_distribution().guard.pending == 0, "idle gone")
            outcome, _, w = await raw_handshake(Node.port(), me, COOKIE)
            assert type(outcome) is Connected  # idle connections that just close are no failures
            w.close()
        finally:
            await pymesh.stop()

    run(scenario)


# --- decoder limits, sans-IO ---------------------------------------------------------------------


def connected_pair(**acceptor: Any) -> tuple[DistProtocol, DistProtocol]:
    i = DistProtocol(Role.INITIATOR, "i@h", "c", peer="a@h")
    a = DistProtocol(Role.ACCEPTOR, "a@h", "c", **acceptor)
    a.receive_data(i.data_to_send())
    a.decide("ok")
    for _ in range(4):
        i.receive_data(a.data_to_send())
        a.receive_data(i.data_to_send())
    assert i.state is State.CONNECTED and a.state is State.CONNECTED
    return i, a


raw_frame = frame


def nested_list(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"


def nested_map(depth: int) -> bytes:
    return b"\x81\x00" * depth + b"\xc0"


@pytest.mark.parametrize("depth", [1025, 5000, 100_000])
@pytest.mark.parametrize("kind", [nested_list, nested_map])
def test_lists_and_dicts_nested_past_msgpacks_stack_are_a_decode_error(kind: Any, depth: int) -> None:
    _, a = connected_pair()
    payload = b"\x93\x01" + kind(depth) + b"\xc0"  # [SEND, <deep>, nil]
    with pytest.raises(DecodeError, match="StackError"):
        a.receive_data(raw_frame(payload))
    assert a.state is State.CLOSED


def test_tuples_nested_past_max_depth_are_a_decode_error() -> None:
    term: Any = "x"
    inner = msgpack.packb("x")  # the wire bytes, made without our encoder's own limit
    for _ in range(MAX_DEPTH + 1):
        term = (term,)
        inner = msgpack.packb(msgpack.ExtType(1, b"\x91" + inner))  # a tuple: ext 1 over an array
    _, a = connected_pair()
    with pytest.raises(DecodeError, match="deeper than"):
        a.receive_data(raw_frame(b"\x93\x01" + inner + b"\xc0"))
    with pytest.raises(pymesh.EncodeError):
        encode(term)


def test_a_deep_but_legal_term_in_a_malformed_message_reports_safely() -> None:
    # 1000 levels decode (msgpack allows 1024) but make repr() recurse too deeply:
    # the error report must still be a RemoteProtocolError, not a RecursionError
    _, a = connected_pair()
    with pytest.raises(RemoteProtocolError, match=r"malformed control message: \[\[\[\["):
        a.receive_data(raw_frame(b"\x92" + nested_list(1000) + b"\xc0"))


def test_decode_limits_cap_strings_bytes_lists_and_dicts_inside_tuples_too() -> None:
    limits = DecodeLimits(max_str_len=100, max_bin_len=50, max_array_len=10, max_map_len=5, max_ext_len=1000)
    ok = encode([SEND, "x" * 100, (b"y" * 50, list(range(10)), {i: i for i in range(5)})])
    assert decode_all(ok, limits)
    for bad in (
        "x" * 101,
        (b"y" * 51,),
        ("t", list(range(11))),
        (("deep", {i: i for i in range(6)}),),
        ("e" * 990, "more"),  # a tuple payload over max_ext_len
    ):
        with pytest.raises(DecodeError, match="exceeds max_"):
            decode_all(encode([SEND, bad, None]), limits)
    _, a = connected_pair(limits=limits)
    with pytest.raises(DecodeError):
        a.receive_data(raw_frame(encode([SEND, ("t", list(range(11))), None])))
    # the batch a frame carries is no term: it may hold more messages than max_array_len
    i, a = connected_pair(limits=limits)
    for n in range(40):
        i.send_control([SEND, "p", n])
    assert len(a.receive_data(i.data_to_send())) == 40
    i.send_control([SEND, "p", 1])
    i.send_control([SEND, "p", list(range(11))])  # but a message's list may not
    with pytest.raises(DecodeError, match="exceeds max_array_len"):
        a.receive_data(i.data_to_send())
    d = DecodeLimits.for_frame(1 << 20)
    assert (d.max_str_len, d.max_bin_len, d.max_array_len, d.max_map_len) == (1 << 20, 1 << 20, 1 << 20, 1 << 19)
    with pytest.raises(ValueError):
        DecodeLimits(0, 1, 1, 1, 1)


def test_a_frame_before_the_handshake_is_at_most_4_kib() -> None:
    a = DistProtocol(Role.ACCEPTOR, "a@h", "c")
    with pytest.raises(pymesh.FrameTooLarge):
        a.receive_data(b"\x00\x00\x10\x01")  # announces 4097 bytes: refused before they come


# --- decoder limits, over a real connection ----------------------------------------------------------


def test_hostile_terms_close_the_connection_and_the_node_lives_on(target: RunNode) -> None:
    async def scenario() -> None:
        for payload, expect in (
            (b"\x93\x01" + nested_list(1000) + b"\xc0", "SEND to a non-pid"),  # once a RecursionError
            (b"\x93\x01" + nested_list(5000) + b"\xc0", "DecodeError: malformed term: StackError"),
            (b"\x93\x01" + b"\xdd\xff\xff\xff\xff", "DecodeError"),  # a list claiming 4 G elements
        ):
            outcome, reader, writer = await raw_handshake(target.port, target.name, COOKIE)
            assert type(outcome) is Connected
            writer.write(raw_frame(payload))
            with contextlib.suppress(ConnectionResetError):
                while await asyncio.wait_for(reader.read(65536), 10):
                    pass  # until the node closes
            writer.close()
            target.wait_log(expect)
        await pymesh.start(unique("h"), cookie=COOKIE, listen_host="127.0.0.1")
        try:
            assert await rpc_call(target.name, "os:getpid") == target.pid  # alive and well
        finally:
            await pymesh.stop()
        assert "Traceback" not in target.log

    run(scenario)


# --- SSH logins -----------------------------------------------------------------------------------


def test_ssh_logins_are_rate_limited_per_address(tmp_path: Path) -> None:
    from pymesh.shell._ssh import SshServer

    good = asyncssh.generate_private_key("ssh-ed25519")
    bad = asyncssh.generate_private_key("ssh-ed25519")
    (tmp_path / "good").write_bytes(good.export_private_key())
    (tmp_path / "bad").write_bytes(bad.export_private_key())
    keys = tmp_path / "authorized_keys"
    keys.write_bytes(good.export_public_key())

    async def login(key: str) -> int:
        async with asyncssh.connect(
            "127.0.0.1", server.port, username="t", known_hosts=None, agent_path=None,
            client_keys=[str(tmp_path / key)], password=None, kbdint_auth=False, gss_host=None, connect_timeout=10,
        ) as conn:
            result = await conn.run("1 + 1", check=False)
            return int(result.exit_status or 0)

    server = SshServer(host="127.0.0.1", port=0, authorized_keys=keys, host_key=tmp_path / "host_key")
    server.policy.max_failures = 3

    async def scenario() -> None:
        await server.start()
        try:
            assert await login("good") == 0
            for _ in range(3):
                with pytest.raises(asyncssh.PermissionDenied):
                    await login("bad")
            await eventually(lambda: server.policy.blocked("127.0.0.1"), "the address is blocked")
            with pytest.raises((asyncssh.PermissionDenied, asyncssh.DisconnectError)):
                await login("good")  # even the right key, from this address, for now
        finally:
            await server.stop()

    run(scenario)
