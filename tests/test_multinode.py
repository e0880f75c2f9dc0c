"""Real nodes as real OS processes on loopback.

Each test starts the node subprocesses it needs (``tests/nodes/testnode.py``,
in parallel) through the :class:`Cluster` fixture, drives them over their
stdin/stdout, and often takes part itself as a node of its own
(:func:`local_node`). The port mapper is pymesh's, started once on a private
port (never 4369); Erlang's ``epmd`` is used for the interop test.

Every subprocess is killed by its pid in a fixture's teardown; every wait is
bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import eventually, free_port, require_binary, run
from support.nodeproc import NodeProc, RemoteFailure, stop_process

import pymesh
from pymesh import (
    ReceiveTimeout,
    ANY,
    CallExit,
    CallTimeout,
    NameTaken,
    Node,
    Pid,
    RemoteError,
    RpcError,
    SpawnError,
    call,
    monitor,
    receive,
    rpc_call,
    rpc_eval,
    self,
    send,
    spawn,
    trap_exit,
)
from pymesh.wire import Connected, DistProtocol, Role, encode
from pymesh.wire._control import REG_SEND, SEND
from pymesh.wire._frames import frame

pytestmark = pytest.mark.timeout(90)

HOST = socket.gethostname().split(".")[0]
COOKIE = "multinode-" + secrets.token_hex(8)
NODES_DIR = Path(__file__).parent / "nodes"
TESTNODE = NODES_DIR / "testnode.py"


def unique(tag: str = "") -> str:
    """A node short name no other test (or earlier run) uses."""
    return f"t{secrets.token_hex(4)}{tag}"


# --- node subprocesses ---------------------------------------------------------------------------


class Cluster:
    """Starts node subprocesses for one test and kills every one of them afterwards."""

    def __init__(self, epmd_port: int) -> None:
        self.epmd_port = epmd_port
        self.nodes: list[NodeProc] = []

    def spawn(
        self,
        short: str | None = None,
        *,
        cookie: str | None = COOKIE,
        hidden: bool = False,
        connect_all: bool = True,
        tick_time: float | None = None,
        epmd_port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> NodeProc:
        short = short or unique()
        argv = [sys.executable, str(TESTNODE), short, "--epmd-port", str(epmd_port or self.epmd_port)]
        if cookie is not None:
            argv += ["--cookie", cookie]
        if hidden:
            argv.append("--hidden")
        if not connect_all:
            argv.append("--no-connect-all")
        if tick_time is not None:
            argv += ["--tick-time", str(tick_time)]
        node = NodeProc(short, argv, {**os.environ, **(env or {})})
        self.nodes.append(node)
        return node

    async def start(self, count: int = 1, **options: Any) -> list[NodeProc]:
        """Start ``count`` nodes with the same options, in parallel; wait until all are ready."""
        nodes = [self.spawn(**options) for _ in range(count)]
        await asyncio.gather(*(n.wait_ready() for n in nodes))
        return nodes

    def close(self) -> None:
        for node in self.nodes:
            stop_process(node.popen)


@pytest.fixture(scope="module")
def epmd_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """pymesh's port mapper on a private port, for every test here (never 4369).

    Module-scoped so that the environment it sets ends with this module.
    """
    port = free_port()
    log = (tmp_path_factory.mktemp("epmd") / "epmd.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pymesh", "epmd", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    saved = {k: os.environ.get(k) for k in ("PYMESH_EPMD_PORT", "PYMESH_COOKIE")}
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the port mapper on port {port} did not start")
            time.sleep(0.05)
        # in-process nodes and anything they start use this port mapper only
        os.environ["PYMESH_EPMD_PORT"] = str(port)
        os.environ.pop("PYMESH_COOKIE", None)
        yield port
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop_process(proc)
        log.close()


@pytest.fixture
def cluster(epmd_port: int) -> Iterator[Cluster]:
    c = Cluster(epmd_port)
    try:
        yield c
    finally:
        c.close()


@contextlib.asynccontextmanager
async def local_node(short: str | None = None, **options: Any) -> AsyncIterator[str]:
    """This test process as a node too (stopped on the way out, whatever happens)."""
    options.setdefault("cookie", COOKIE)
    name = await pymesh.start(short or unique("x"), listen_host="127.0.0.1", **options)
    try:
        yield name
    finally:
        await pymesh.stop()


async def connected(node: NodeProc | None, expected: list[str], kind: str = "visible") -> None:
    """Wait until ``node`` (None: this process) lists exactly ``expected``."""
    want = sorted(expected)
    if node is None:

        await eventually(lambda: Node.list(kind) == want, f"this node lists {want}")  # type: ignore[arg-type]
    else:
        await node.until(f"Node.list({kind!r}) == {want!r}")


# --- connecting ----------------------------------------------------------------------------------


def test_monitoring_an_unreachable_node_delivers_nodedown(cluster: Cluster) -> None:
    """Erlang's monitor_node/2: the node is dialed; a failed dial is a nodedown."""

    async def scenario() -> None:
        async with local_node() as me:
            ghost = f"{unique('ghost')}@{me.partition('@')[2]}"
            Node.monitor(ghost)
            assert await receive(("nodedown", ghost), timeout=10) == ("nodedown", ghost)
            Node.monitor(me)  # this node itself: never fires
            with pytest.raises(ReceiveTimeout):
                await receive(("nodedown", me), timeout=0.2)

    run(scenario)


def test_connect_and_list_on_both_sides(cluster: Cluster) -> None:
    async def scenario() -> None:
        a, b = await cluster.start(2)
        assert await a.eval("Node.list()") == []
        assert await a.eval(f"await Node.connect({b.name!r})") is True
        assert await a.eval("Node.list()") == [b.name]
        await connected(b, [a.name])
        assert await a.eval(f"await Node.connect({b.name!r})") is True  # idempotent
        assert await b.eval(f"await Node.ping({a.name!r})") == "pong"
        up_a = await a.until(f"[e for e in EVENTS if e[0] == 'nodeup' and e[1] == {b.name!r}]")
        up_b = await b.until(f"[e for e in EVENTS if e[0] == 'nodeup' and e[1] == {a.name!r}]")
        assert len(up_a) == 1 and len(up_b) == 1
        assert up_a[0][2]["node_type"] == "visible"
        stats = await a.eval(f"Node.statistics({b.name!r}).state")
        assert stats == "up"
        assert await a.eval(f"await Node.connect('nobody{unique()}@{HOST}')") is False
        assert await a.eval("Node.list()") == [b.name]

    run(scenario)


def test_remote_send_to_pid_and_to_registered_name(cluster: Cluster) -> None:
    async def scenario() -> None:
        (b,) = await cluster.start()
        async with local_node():
            me = self()
            send(("echo", b.name), (me, ("by name", 1)))
            assert await receive(timeout=10) == ("by name", 1)
            echo_pid, text = await rpc_eval(b.name, "whereis('echo')")
            assert type(echo_pid) is Pid and echo_pid.node == b.name and text == repr(echo_pid)
            payload = ("by pid", [1, (2, b"3")], {"k": {4, 5}}, 2**70, me)
            send(echo_pid, (me, payload))
            assert await receive(timeout=5) == payload
            send(("nobody_here", b.name), "dropped")  # an unknown remote name is no error
            send(("echo", b.name), (me, "still fine"))
            assert await receive(timeout=5) == "still fine"

    run(scenario)


def test_message_order_between_two_nodes_is_preserved_both_ways(cluster: Cluster) -> None:
    count = 10_000

    async def scenario() -> None:
        (b,) = await cluster.start()
        async with local_node():
            me = self()
            for i in range(count):
                send(("sink", b.name), i)
            send(("sink", b.name), ("$dump", me))
            _, got = await receive(("sink", list), timeout=20)
            assert got == list(range(count))

            await b.eval(f"[send(Pid.parse({repr(me)!r}), ('seq', i)) for i in range({count})] and None")
            got = [(await receive(("seq", int), timeout=10))[1] for _ in range(count)]
            assert got == list(range(count))

    run(scenario)


def test_connections_are_transitive(cluster: Cluster) -> None:
    async def scenario() -> None:
        a, b, c = await cluster.start(3)
        assert await a.eval(f"await Node.connect({b.name!r})")
        assert await c.eval(f"await Node.connect({b.name!r})")
        await connected(a, [b.name, c.name])
        await connected(c, [a.name, b.name])
        await connected(b, [a.name, c.name])

    run(scenario)


def test_connect_all_false_does_not_follow_the_peers_nodes(cluster: Cluster) -> None:
    async def scenario() -> None:
        a, b = await cluster.start(2)
        (c,) = await cluster.start(connect_all=False)
        assert await a.eval(f"await Node.connect({b.name!r})")
        assert await c.eval(f"await Node.connect({b.name!r})")
        await connected(b, [a.name, c.name])
        await asyncio.sleep(1.5)  # the transitive test connects well within this
        assert await c.eval("Node.list('connected')") == [b.name]
        assert await a.eval("Node.list('connected')") == [b.name]

    run(scenario)


def test_hidden_node_is_listed_as_hidden_and_not_propagated(cluster: Cluster) -> None:
    async def scenario() -> None:
        a, b = await cluster.start(2)
        (h,) = await cluster.start(hidden=True)
        # the hidden node first: when a connects, b must not tell it about h
        assert await h.eval(f"await Node.connect({b.name!r})")
        await connected(b, [h.name], "hidden")
        assert await a.eval(f"await Node.connect({b.name!r})")
        await connected(b, [a.name])
        assert await b.eval("Node.list('connected')") == sorted([a.name, h.name])
        assert await h.eval("Node.list()") == []
        assert await h.eval("Node.list('hidden')") == [b.name]
        up = await b.until(f"[e for e in EVENTS if e[0] == 'nodeup' and e[1] == {h.name!r}]")
        assert up[0][2]["node_type"] == "hidden"
        await asyncio.sleep(1.5)
        assert await a.eval("Node.list('connected')") == [b.name]
        assert await h.eval("Node.list('connected')") == [b.name]
        assert await a.eval(f"[e for e in EVENTS if e[1] == {h.name!r}]") == []

    run(scenario)


def test_simultaneous_connect_ends_with_exactly_one_connection(cluster: Cluster) -> None:
    # the dial of the node whose name sorts greater wins: fix the order, and let
    # either node dial first by a little, or both at the same moment
    skews = [-0.003, -0.002, -0.001, -0.0005, 0.0, 0.0, 0.0005, 0.001, 0.002, 0.003]
    # record every acceptor decision a node takes (a test-only wrapper)
    record = (
        "dist = pymesh.runtime._node.current_distribution(); DECISIONS = []; plain = dist.decide; "
        "dist.decide = lambda ch, ev: DECISIONS.append(plain(ch, ev)) or DECISIONS[-1]"
    )
    channels = "len(pymesh.runtime._node.current_distribution().channels)"

    async def scenario() -> None:
        tag = secrets.token_hex(3)
        a, b = cluster.spawn(f"tz{tag}"), cluster.spawn(f"ta{tag}")
        await asyncio.gather(a.wait_ready(), b.wait_ready())
        await a.eval(record)
        await b.eval(record)
        for i, skew in enumerate(skews):
            at = time.time() + 0.3
            dial = "await asyncio.sleep({at} - __import__('time').time()) or await Node.connect({peer!r})"
            dial_a = a.eval(dial.format(at=at, peer=b.name))
            dial_b = b.eval(dial.format(at=at + skew, peer=a.name))
            assert await asyncio.gather(dial_a, dial_b) == [True, True], f"round {i}"
            await connected(a, [b.name])
            await connected(b, [a.name])
            # a losing attempt closes soon; two lasting connections never would
            await a.until(f"{channels} == 1")
            await b.until(f"{channels} == 1")
            # no connection was up and then dropped on the way
            for node, other in ((a, b), (b, a)):
                events = await node.eval(f"[e[0] for e in EVENTS if e[1] == {other.name!r}]")
                assert events == ["nodeup", "nodedown"] * i + ["nodeup"], f"round {i} on {node.name}: {events}"
            assert await a.eval(f"Node.disconnect({b.name!r})") is True
            await connected(a, [])
            await connected(b, [])
        decisions = await a.eval("DECISIONS") + await b.eval("DECISIONS")
        # both dials met in at least some rounds, or this test proved nothing
        assert {"nok", "ok_simultaneous"} & set(decisions), decisions

    run(scenario, timeout=80)


def test_wrong_cookie_refuses_the_connection_and_both_nodes_carry_on(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        (bad,) = await cluster.start(cookie="not-the-cookie")
        (good,) = await cluster.start()
        caplog.set_level(logging.INFO, logger="pymesh")
        async with local_node() as me:
            assert await Node.connect(bad.name) is False
            assert Node.list() == []
            # the node that checked our digest says who failed it
            await eventually(lambda: me in bad.log and "cookies differ" in bad.log, "the refusing node logs the peer")
            assert any(bad.name in r.getMessage() for r in caplog.records), "our log names the peer"
            # both go on: we connect elsewhere, the refusing node still works
            assert await Node.connect(good.name) is True
            assert await bad.eval("Node.list()") == []
            assert await bad.eval(f"await Node.connect({good.name!r})") is False
            assert Node.list() == [good.name]
            # the failed attempt left nothing behind: with the right cookie it connects
            Node.set_cookie("not-the-cookie")
            assert await Node.connect(bad.name, timeout=5) is True
            assert Node.list() == sorted([bad.name, good.name])
            assert await bad.eval("Node.list()") == [me]

    run(scenario)


# --- failures of peers ---------------------------------------------------------------------------


def test_kill_9_of_a_peer_gives_noconnection_to_links_monitors_and_node_monitors(cluster: Cluster) -> None:
    async def linked_sleeper(remote: Pid) -> None:
        pymesh.link(remote)
        await receive("never")

    async def scenario() -> None:
        (b,) = await cluster.start()
        async with local_node():
            trap_exit(True)
            Node.monitor_nodes(True, reasons=True)
            me = self()
            pid = await Node.spawn(b.name, "nodefns:report_home", me, "hello", link=True)
            _, reported, node, os_pid = await receive(("hello", ANY, ANY, ANY), timeout=10)
            assert (reported, node, os_pid) == (pid, b.name, b.pid)
            assert (await receive(("nodeup", b.name, ANY), timeout=5))[2]["node_type"] == "visible"
            mref = monitor(pid)
            nref = monitor(("kv", b.name))
            Node.monitor(b.name)
            victim = spawn(linked_sleeper, pid)
            vref = monitor(victim)
            send(pid, "ping")
            assert await receive(("echo", "ping"), timeout=5)  # everything above is in place

            b.signal(signal.SIGKILL)
            assert await receive(("EXIT", pid, ANY), timeout=10) == ("EXIT", pid, "noconnection")
            assert await receive(("DOWN", mref, ANY, ANY, ANY), timeout=5) == (
                "DOWN", mref, "process", pid, "noconnection")
            assert await receive(("DOWN", nref, ANY, ANY, ANY), timeout=5) == (
                "DOWN", nref, "process", ("kv", b.name), "noconnection")
            assert await receive(("DOWN", vref, ANY, ANY, ANY), timeout=5) == (
                "DOWN", vref, "process", victim, "noconnection")
            assert await receive(("nodedown", b.name), timeout=5) == ("nodedown", b.name)
            down = await receive(("nodedown", b.name, ANY), timeout=5)
            assert down[2]["nodedown_reason"] == "connection_closed"
            assert Node.list() == [] and Node.down_reason(b.name) == "connection_closed"

    run(scenario)


def test_graceful_stop_is_seen_as_nodedown_disconnect(cluster: Cluster) -> None:
    async def scenario() -> None:
        b, c = await cluster.start(2)
        async with local_node() as me:
            Node.monitor_nodes(True, reasons=True)
            assert await Node.connect(b.name) and await Node.connect(c.name)
            await connected(b, [me, c.name])
            b.signal(signal.SIGTERM)
            down = await receive(("nodedown", b.name, ANY), timeout=10)
            assert down[2]["nodedown_reason"] == "disconnect"
            assert await b.wait_exit() == 0
            await eventually(b.stopped.is_set, "b reports that it stopped")
            # and c sees the same
            reason = await c.until(f"[e[2]['nodedown_reason'] for e in EVENTS if e[:2] == ('nodedown', {b.name!r})]")
            assert reason == ["disconnect"]
        # pymesh.stop() of this node, as its peer c sees it
        reason = await c.until(f"[e[2]['nodedown_reason'] for e in EVENTS if e[:2] == ('nodedown', {me!r})]")
        assert reason == ["disconnect"]
        assert await c.eval("Node.list()") == []

    run(scenario)


def test_a_silent_peer_is_dropped_with_net_tick_timeout(cluster: Cluster) -> None:
    async def scenario() -> None:
        (b,) = await cluster.start(tick_time=1)
        async with local_node(tick_time=1):
            Node.monitor_nodes(True, reasons=True)
            assert await Node.connect(b.name)
            # idle but healthy for several tick times: the ticks keep it up
            await asyncio.sleep(2.5)
            assert Node.list() == [b.name]
            assert await b.eval("[e for e in EVENTS if e[0] == 'nodedown']") == []
            b.signal(signal.SIGSTOP)
            try:
                down = await receive(("nodedown", b.name, ANY), timeout=8)
                assert down[2]["nodedown_reason"] == "net_tick_timeout"
            finally:
                b.signal(signal.SIGCONT)
                b.signal(signal.SIGKILL)

    run(scenario)


# --- what a peer may send ------------------------------------------------------------------------


class FakePeer:
    """A node of our own making: a :class:`DistProtocol` over a plain socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proto: DistProtocol) -> None:
        self.reader, self.writer, self.proto = reader, writer, proto
        self.name = proto.name
        self.inbox: list[Any] = []

    @classmethod
    async def connect(cls, target: NodeProc, cookie: str = COOKIE) -> FakePeer:
        name = f"{unique('fake')}@{HOST}"
        reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        proto = DistProtocol(Role.INITIATOR, name, cookie, peer=target.name)
        peer = cls(reader, writer, proto)
        writer.write(proto.data_to_send())
        async with asyncio.timeout(10):
            while True:
                data = await reader.read(65536)
                assert data, f"{target.name} closed the handshake"
                events = proto.receive_data(data)
                writer.write(proto.data_to_send())
                if any(type(e) is Connected for e in events):
                    peer.inbox += [e for e in events if type(e) is list]
                    return peer

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def closed_by_peer(self, timeout: float) -> bool:
        """True when the other side closes within ``timeout`` (data before that is read and kept)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        data = await self.reader.read(65536)
                    except ConnectionError:
                        return True
                    if not data:
                        return True
        except TimeoutError:
            return False

    async def receive_control(self, predicate: Callable[[list[Any]], bool], timeout: float = 5.0) -> list[Any]:
        async with asyncio.timeout(timeout):
            while True:
                for m in self.inbox:
                    if predicate(m):
                        self.inbox.remove(m)
                        return m
                data = await self.reader.read(65536)
                assert data, "the node closed this connection"
                self.inbox += self.proto.receive_data(data)

    async def echo_round_trip(self, token: Any) -> None:
        """REG_SEND to the node's echo process; wait for the SEND it answers with."""
        me = Pid(self.name, 1, 0)
        self.proto.send_control([REG_SEND, me, "echo", (me, token)])
        self.writer.write(self.proto.data_to_send())
        msg = await self.receive_control(lambda m: m[0] == SEND and m[2] == token)
        assert msg == [SEND, me, token]

    def close(self) -> None:
        self.writer.close()


GARBAGE_AFTER_HANDSHAKE = {
    "undecodable": frame(b"\xc1\xc1\xc1\xc1"),
    "oversized": b"\xff\xff\xff\xff" + b"x" * 100,
    "unknown_op": frame(encode([99, "what"])),
    "wrong_arity": frame(encode([SEND, Pid("x@y", 1, 0)])),
    "not_a_list": frame(encode(("tuple", "message"))),
    "send_to_a_non_pid": frame(encode([SEND, "echo", "hi"])),
    "truncated_term": frame(encode([SEND, Pid("x@y", 1, 0), [1, 2, 3]])[:-1]),
}


def test_garbage_after_a_real_handshake_closes_only_that_connection(cluster: Cluster) -> None:
    async def scenario() -> None:
        (b,) = await cluster.start()
        async with local_node() as me:
            assert await Node.connect(b.name)
            good = await FakePeer.connect(b)
            await good.echo_round_trip("before")
            try:
                for label, garbage in GARBAGE_AFTER_HANDSHAKE.items():
                    bad = await FakePeer.connect(b)
                    await bad.echo_round_trip(f"{label}: works until the garbage")
                    bad.send_raw(garbage)
                    assert await bad.closed_by_peer(5), f"{label}: the node kept the connection"
                    bad.close()
                    # the node says which peer it dropped
                    dropped = bad.name
                    await eventually(
                        lambda: any(dropped in line and "closed" in line for line in b.log_lines),  # noqa: B023
                        f"{label}: a log line names the dropped peer",
                    )
                    await good.echo_round_trip(f"after {label}")
                    send(("echo", b.name), (self(), label))
                    assert await receive(timeout=5) == label
                assert await b.eval("Node.list()") == sorted([me, good.name])
            finally:
                good.close()

    run(scenario)


def test_a_handshake_that_does_not_finish_in_7_seconds_is_closed(cluster: Cluster) -> None:
    async def scenario() -> None:
        (b,) = await cluster.start()
        async with local_node() as me:
            assert await Node.connect(b.name)
            silent = await asyncio.open_connection("127.0.0.1", b.port)
            partial = await asyncio.open_connection("127.0.0.1", b.port)
            partial[1].write(b"\x00\x00\x00\x40{")  # a frame that never completes
            http = await asyncio.open_connection("127.0.0.1", b.port)
            http[1].write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                # nonsense that cannot be a handshake goes at once
                assert await asyncio.wait_for(http[0].read(), 5) == b""
                # silence is tolerated for a while ...
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(silent[0].read(), 3)
                # ... but not for 7 seconds
                assert await asyncio.wait_for(silent[0].read(), 8) == b""
                assert await asyncio.wait_for(partial[0].read(), 3) == b""
                assert time.monotonic() - started < 10
                await eventually(lambda: "handshake not finished within 7.0s" in b.log, "the node logs why")
                # the real connection never noticed
                assert Node.list() == [b.name]
                send(("echo", b.name), (self(), "still here"))
                assert await receive(timeout=5) == "still here"
                assert await b.eval("Node.list()") == [me]
            finally:
                for _, writer in (silent, partial, http):
                    writer.close()

    run(scenario)


# --- spawn, rpc, GenServer across nodes ----------------------------------------------------------


def test_node_spawn_runs_module_function_on_the_remote_node(cluster: Cluster) -> None:
    async def scenario() -> None:
        (b,) = await cluster.start()
        async with local_node():
            pid = await Node.spawn(b.name, "nodefns:report_home", self(), "spawned")
            assert pid.node == b.name
            assert await receive(("spawned", ANY, ANY, ANY), timeout=10) == ("spawned", pid, b.name, b.pid)
            send(pid, (1, "two"))
            assert await receive(("echo", ANY), timeout=5) == ("echo", (1, "two"))
            ref = monitor(pid)
            send(pid, "crash")
            down = await receive(("DOWN", ref, ANY, ANY, ANY), timeout=5)
            assert down[4] == RemoteError("builtins.RuntimeError", "asked to crash")
            with pytest.raises(SpawnError):
                await Node.spawn(b.name, "nodefns:no_such_function")
            with pytest.raises(SpawnError):
                await Node.spawn(b.name, "no_such_module_here:f")
            with pytest.raises(SpawnError):
                await Node.spawn(f"nobody{unique()}@{HOST}", "nodefns:wait_forever")

    run(scenario)


def test_rpc_call_and_rpc_eval(cluster: Cluster) -> None:
    async def scenario() -> None:
        (b,) = await cluster.start()
        async with local_node() as me:
            assert await rpc_call(b.name, "nodefns:add", 2, 3) == 5
            assert await rpc_call(b.name, "nodefns:slow_add", 2, 40) == 42
            assert await rpc_call(b.name, "os:getpid") == b.pid
            with pytest.raises(RpcError) as info:
                await rpc_call(b.name, "nodefns:fail", "on purpose")
            assert info.value.reason == RemoteError("builtins.ValueError", "on purpose")
            value, text = await rpc_eval(b.name, "Node.list()")
            assert value == [me] and text == repr([me])
            assert await rpc_eval(b.name, "x_for_test = 41") == (None, "None")
            value, _ = await rpc_eval(b.name, "Node.self()")
            assert value == b.name
            value, text = await rpc_eval(b.name, "object()")  # cannot travel: the repr does
            assert value is None and text.startswith("<object object")
            with pytest.raises(RpcError) as info:
                await rpc_eval(b.name, "1 / 0")
            assert info.value.reason == RemoteError("builtins.ZeroDivisionError", "division by zero")
            with pytest.raises(RpcError) as info:
                await rpc_call(f"nobody{unique()}@{HOST}", "os:getpid")
            assert info.value.reason == "noconnection"

    run(scenario)


def test_genserver_calls_across_nodes(cluster: Cluster) -> None:
    async def scenario() -> None:
        b, c = await cluster.start(2)
        async with local_node():
            kv = ("kv", b.name)
            assert await call(kv, ("put", "k", (1, [2]))) == "ok"
            assert await call(kv, ("get", "k")) == (1, [2])
            assert await call(kv, ("where",)) == (b.name, b.pid)
            with pytest.raises(CallTimeout):
                await call(("kv", c.name), ("hang",), timeout=0.3)
            with pytest.raises(CallExit) as info:
                await call(("no_such_server", b.name), ("get", "k"))
            assert info.value.reason == "noproc"
            with pytest.raises(CallExit) as info:
                await call(kv, ("crash",))
            assert info.value.reason == RemoteError("builtins.RuntimeError", "kv crashed on request")

            # a call in flight when its server's node dies (c's kv still hangs)
            kv_c = ("kv", c.name)
            pending = asyncio.ensure_future(call(kv_c, ("hang",), timeout=30))
            await asyncio.sleep(0.3)
            c.signal(signal.SIGKILL)
            with pytest.raises(CallExit) as info:
                await asyncio.wait_for(pending, 10)
            assert info.value.reason == "noconnection"

    run(scenario)


def test_a_call_and_its_monitor_leave_in_one_write(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """``call`` corks the connection: MONITOR and ``$gen_call`` (and the last
    call's lazy DEMONITOR) go out together, one write per call, not three."""
    from pymesh.runtime._connection import Channel

    async def scenario() -> None:
        (b,) = await cluster.start(1)
        async with local_node():
            kv = ("kv", b.name)
            assert await call(kv, ("put", "k", 1)) == "ok"
            writes: list[int] = []
            flush = Channel.flush

            def counting_flush(self: Channel) -> None:
                pending = self.proto.pending_bytes
                flush(self)
                if pending:
                    writes.append(pending)

            monkeypatch.setattr(Channel, "flush", counting_flush)
            for _ in range(50):  # back to back: each call's demonitor leaves with the next call
                assert await call(kv, ("get", "k")) == 1
            await asyncio.sleep(0.05)
            assert 50 <= len(writes) <= 52, writes
            for _ in range(5):  # on an idle connection too, a call is one write
                await asyncio.sleep(0.02)
                writes.clear()
                assert await call(kv, ("get", "k")) == 1
                assert len(writes) == 1, writes

    run(scenario)


# --- names, cookies and port mappers -------------------------------------------------------------


def test_a_name_held_at_the_port_mapper_raises_name_taken(cluster: Cluster) -> None:
    async def scenario() -> None:
        (a,) = await cluster.start()
        with pytest.raises(NameTaken):
            await pymesh.start(a.short, cookie=COOKIE, listen_host="127.0.0.1")
        assert not Node.alive() and Node.self() == "nonode@nohost"
        twin = cluster.spawn(a.short)
        with pytest.raises(RemoteFailure, match="NameTaken"):
            await twin.wait_ready()
        assert await twin.wait_exit() == 3
        async with local_node() as me:  # the failed start left nothing behind
            assert await Node.connect(a.name)
            assert await a.eval("Node.list()") == [me]

    run(scenario)


def test_cookie_file_is_created_0600_and_shared_by_the_nodes_of_a_user(
    cluster: Cluster, tmp_path: Path
) -> None:
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config"), "PYMESH_COOKIE": ""}

    async def scenario() -> None:
        first = await cluster.spawn(cookie=None, env=env).wait_ready()
        path = tmp_path / "config" / "pymesh" / "cookie"
        assert path.is_file()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        cookie = path.read_text().strip()
        assert len(cookie) >= 16
        assert await first.eval("Node.get_cookie()") == cookie
        second = await cluster.spawn(cookie=None, env=env).wait_ready()
        assert await second.eval("Node.get_cookie()") == cookie
        assert await second.eval(f"await Node.connect({first.name!r})") is True
        # a node of another user (another cookie) is refused
        (stranger,) = await cluster.start()
        assert await stranger.eval(f"await Node.connect({first.name!r})") is False

    run(scenario)


def test_interop_with_erlangs_epmd(cluster: Cluster) -> None:
    epmd = require_binary("epmd")
    port = free_port()
    daemon = subprocess.Popen(
        [epmd, "-port", str(port)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    async def scenario() -> None:
        async def answering() -> bool:
            proc = await asyncio.create_subprocess_exec(
                epmd, "-port", str(port), "-names",
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )
            out, _ = await proc.communicate()
            return proc.returncode == 0 and b"up and running" in out

        await eventually(answering, "epmd answers")
        a = cluster.spawn(epmd_port=port)
        b = cluster.spawn(epmd_port=port)
        await asyncio.gather(a.wait_ready(), b.wait_ready())
        proc = await asyncio.create_subprocess_exec(
            epmd, "-names", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "ERL_EPMD_PORT": str(port)},
        )
        out, _ = await proc.communicate()
        listing = out.decode()
        assert f"name {a.short} at port {a.port}" in listing
        assert f"name {b.short} at port {b.port}" in listing
        assert await a.eval(f"await Node.connect({b.name!r})") is True
        await connected(b, [a.name])
        assert await a.eval(f"await rpc_call({b.name!r}, 'os:getpid')") == b.pid

    try:
        run(scenario)
    finally:
        stop_process(daemon)
