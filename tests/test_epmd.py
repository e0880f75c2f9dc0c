"""The port mapper for real: our server and client on loopback, the daemon,
the CLI, and interop with Erlang's own ``epmd`` and ``erl``.

Every port is a free loopback port (never 4369), every subprocess is stopped by
its pid, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from conftest import require_binary

from pymesh._errors import ConfigError, EpmdError, NameTaken
from pymesh.runtime import _epmd as epmd_module
from pymesh.runtime._epmd import (
    EpmdServer,
    NodeEntry,
    default_epmd_port,
    ensure_running,
    names,
    port_please,
    register,
)
from pymesh.wire._epmd import (
    Alive2Req,
    Alive2Resp,
    DumpReq,
    KillReq,
    NamesReq,
    StopReq,
    encode_request,
    parse_alive2_response,
    parse_dump_response,
)

T = TypeVar("T")


# --- helpers ---------------------------------------------------------------------------------


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Run ``coro`` on a fresh event loop, failing if it takes over ``timeout`` seconds."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        await asyncio.sleep(0.05)


async def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes to 127.0.0.1:port; return everything answered before the close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        writer.close()


async def run_command(*argv: str, env: dict[str, str] | None = None, timeout: float = 20.0) -> tuple[int, str, str]:
    """Run a command without blocking the loop (our server may be on it)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM ``proc`` by pid, SIGKILL it if it lingers, and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@contextlib.asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[EpmdServer]:
    server = await EpmdServer.start(port=0, **options)
    assert server.port not in (0, 4369)
    try:
        yield server
    finally:
        await server.close()


PYMESH = [sys.executable, "-m", "pymesh"]


# --- configuration ---------------------------------------------------------------------------


def test_default_epmd_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYMESH_EPMD_PORT", raising=False)
    monkeypatch.delenv("ERL_EPMD_PORT", raising=False)
    assert default_epmd_port() == 4369
    monkeypatch.setenv("ERL_EPMD_PORT", "6000")
    assert default_epmd_port() == 6000
    monkeypatch.setenv("PYMESH_EPMD_PORT", " 5000 ")
    assert default_epmd_port() == 5000
    assert default_epmd_port(7000) == 7000
    assert default_epmd_port(0) == 0
    monkeypatch.setenv("PYMESH_EPMD_PORT", "")
    assert default_epmd_port() == 6000
    monkeypatch.setenv("ERL_EPMD_PORT", "epmd")
    with pytest.raises(ConfigError, match="ERL_EPMD_PORT='epmd' is not an integer"):
        default_epmd_port()
    monkeypatch.setenv("PYMESH_EPMD_PORT", "70000")
    with pytest.raises(ConfigError, match="PYMESH_EPMD_PORT"):
        default_epmd_port()
    with pytest.raises(ConfigError):
        default_epmd_port(-1)


# --- our server, our client ------------------------------------------------------------------


def test_register_port_please_and_names() -> None:
    async def scenario() -> None:
        async with serving() as server:
            port = server.port
            async with (
                await register("alpha", 40001, epmd_port=port) as alpha,
                await register("beta", 40002, hidden=True, extra=b"\x01x", epmd_port=port) as beta,
            ):
                assert alpha.creation != 0 and beta.creation != 0
                assert alpha.epmd_port == port and not alpha.closed.is_set()
                entry = await port_please("beta", epmd_port=port)
                assert entry == NodeEntry("beta", 40002, 72, 0, 6, 6, b"\x01x")
                assert entry.hidden
                alpha_entry = await port_please("alpha", epmd_port=port)
                assert alpha_entry is not None and not alpha_entry.hidden
                assert await port_please("nobody", epmd_port=port) is None
                assert await names(epmd_port=port) == [("alpha", 40001), ("beta", 40002)]
                assert server.names() == [("alpha", 40001), ("beta", 40002)]
                assert server.lookup("alpha") == alpha_entry

    run(scenario())


def test_server_listens_on_both_loopback_addresses() -> None:
    async def scenario() -> None:
        async with serving() as server:
            assert server.addresses[0] == f"127.0.0.1:{server.port}"
            if socket.has_ipv6 and len(server.addresses) > 1:
                assert server.addresses[1] == f"[::1]:{server.port}"
                assert await names("::1", server.port) == []

    run(scenario())


def test_taken_name_raises_name_taken_and_creation_increments() -> None:
    async def scenario() -> None:
        async with serving() as server:
            first = await register("alpha", 40001, epmd_port=server.port)
            with pytest.raises(NameTaken, match="'alpha'"):
                await register("alpha", 40009, epmd_port=server.port)
            assert await names(epmd_port=server.port) == [("alpha", 40001)]
            assert not first.closed.is_set()
            await first.close()
            await eventually(lambda: _no_names(server.port), "alpha is unregistered")
            second = await register("alpha", 40002, epmd_port=server.port)
            assert second.creation == first.creation + 1
            await second.close()

    run(scenario())


async def _no_names(port: int) -> bool:
    return await names(epmd_port=port) == []


def test_registration_vanishes_when_its_connection_closes() -> None:
    async def scenario() -> None:
        async with serving() as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(encode_request(Alive2Req("raw", 40003)))
            answer = parse_alive2_response(await reader.readexactly(6))
            assert answer is not None and answer.result == 0
            assert await port_please("raw", epmd_port=server.port) is not None
            writer.transport.abort()  # the node dies without a goodbye
            await eventually(lambda: _no_names(server.port), "raw is unregistered")
            assert await port_please("raw", epmd_port=server.port) is None

    run(scenario())


def test_registration_closed_is_set_when_the_port_mapper_goes_away() -> None:
    async def scenario() -> None:
        server = await EpmdServer.start(port=0)
        registration = await register("alpha", 40001, epmd_port=server.port)
        await server.close()
        async with asyncio.timeout(5):
            await registration.closed.wait()
        assert registration.lost
        await registration.close()  # still fine

    run(scenario())


def test_version_5_node_gets_a_16_bit_creation_in_1_to_3() -> None:
    async def scenario() -> None:
        async with serving() as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(encode_request(Alive2Req("old", 40004, highest=5, lowest=5)))
            answer = parse_alive2_response(await reader.readexactly(4))
            assert isinstance(answer, Alive2Resp)
            assert answer.result == 0 and 1 <= answer.creation <= 3
            entry = await port_please("old", epmd_port=server.port)
            assert entry is not None and (entry.highest, entry.lowest) == (5, 5)
            writer.close()

    run(scenario())


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"\x00\x05GARBA", "unknown request code 71"),
        (b"\xff\xff", "exceeds 2048"),
        (b"\x00\x00", "empty request"),
        (b"\x00\x03z\xff\xfe", "not valid UTF-8"),
        (b"\x00\x09x\x00", "connection closed inside a request"),
        (encode_request(NamesReq()) * 2, "one request per connection"),
    ],
)
def test_garbage_closes_only_that_connection(garbage: bytes, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pymesh.epmd")

    async def scenario() -> None:
        async with serving() as server:
            async with await register("keep", 40001, epmd_port=server.port) as keep:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                local_port = writer.get_extra_info("sockname")[1]
                writer.write(garbage)
                if reason.startswith("connection closed"):
                    writer.write_eof()
                async with asyncio.timeout(5):
                    assert await reader.read() == b""  # closed without an answer
                writer.close()
                assert await names(epmd_port=server.port) == [("keep", 40001)]
                assert not keep.closed.is_set()
                lines = [r.getMessage() for r in caplog.records if r.name == "pymesh.epmd"]
                assert any(f"peer=127.0.0.1:{local_port}" in line and reason in line for line in lines), lines

    run(scenario())


def test_data_after_registration_unregisters_only_that_node(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pymesh.epmd")

    async def scenario() -> None:
        async with serving() as server:
            async with await register("keep", 40001, epmd_port=server.port):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(encode_request(Alive2Req("chatty", 40002)))
                await reader.readexactly(6)
                writer.write(b"hello?")
                async with asyncio.timeout(5):
                    assert await reader.read() == b""
                writer.close()
                assert await names(epmd_port=server.port) == [("keep", 40001)]
        assert any("unexpected bytes on the registration of 'chatty'" in r.getMessage() for r in caplog.records)

    run(scenario())


def test_silent_connections_are_closed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pymesh.epmd")

    async def scenario() -> None:
        async with serving(idle_timeout=0.3) as server:
            for opening in (b"", b"\x00\x05z"):  # nothing at all, half a request
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(opening)
                async with asyncio.timeout(5):
                    assert await reader.read() == b""
                writer.close()
            assert await names(epmd_port=server.port) == []
        assert sum("no request within 0.3s" in r.getMessage() for r in caplog.records) == 2

    run(scenario())


def test_registration_is_refused_from_non_loopback_peers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Tests stay on loopback, so make the server believe the peer is remote.
    monkeypatch.setattr(epmd_module, "_is_loopback", lambda host: False)
    caplog.set_level(logging.INFO, logger="pymesh.epmd")

    async def scenario() -> None:
        async with serving() as server:
            with pytest.raises(EpmdError, match="without answering ALIVE2_REQ"):
                await register("remote", 40001, epmd_port=server.port)
            assert await names(epmd_port=server.port) == []  # lookups are for everyone
            assert await port_please("remote", epmd_port=server.port) is None
            assert await exchange(server.port, encode_request(KillReq())) == b""

    run(scenario())
    assert any("ALIVE2_REQ from a non-loopback address" in r.getMessage() for r in caplog.records)


def test_dump_kill_and_stop() -> None:
    async def scenario() -> None:
        async with serving() as server:
            registration = await register("alpha", 40001, epmd_port=server.port)
            dump = parse_dump_response(await exchange(server.port, encode_request(DumpReq())))
            assert dump.epmd_port == server.port
            assert "active name     <alpha> at port 40001" in dump.text
            # Like epmd: no KILL while names are registered, no STOP unless relaxed.
            assert await exchange(server.port, encode_request(KillReq())) == b"NO"
            assert await exchange(server.port, encode_request(StopReq("alpha"))) == b""
            await registration.close()
            await eventually(lambda: _no_names(server.port), "alpha is unregistered")
            assert await exchange(server.port, encode_request(KillReq())) == b"OK"
            async with asyncio.timeout(5):
                await server.wait_closed()

        async with serving(relaxed_command_check=True) as server:
            registration = await register("alpha", 40001, epmd_port=server.port)
            assert await exchange(server.port, encode_request(StopReq("alpha"))) == b"STOPPED"
            assert await exchange(server.port, encode_request(StopReq("alpha"))) == b"NOEXIST"
            async with asyncio.timeout(5):
                await registration.closed.wait()
            assert registration.lost
            await register("beta", 40002, epmd_port=server.port)
            assert await exchange(server.port, encode_request(KillReq())) == b"OK"  # relaxed: even with names
            async with asyncio.timeout(5):
                await server.wait_closed()

    run(scenario())


def test_nothing_listening_raises_epmd_error_naming_the_address() -> None:
    port = free_port()

    async def scenario() -> None:
        with pytest.raises(EpmdError, match=f"127.0.0.1:{port}"):
            await register("alpha", 40001, epmd_port=port)
        with pytest.raises(EpmdError, match=f"127.0.0.1:{port}"):
            await port_please("alpha", epmd_port=port)
        with pytest.raises(EpmdError, match=f"127.0.0.1:{port}.*Connection refused"):
            await names(epmd_port=port)

    run(scenario())


def test_a_silent_peer_raises_epmd_error_after_the_timeout() -> None:
    async def scenario() -> None:
        accepted: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)  # and never answer

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(EpmdError, match="within 0.3s"):
                await port_please("alpha", epmd_port=port, timeout=0.3)
            with pytest.raises(EpmdError, match=f"127.0.0.1:{port}"):
                await register("alpha", 40001, epmd_port=port, timeout=0.3)
        finally:
            server.close()
            for writer in accepted:
                writer.close()
            await server.wait_closed()

    run(scenario())


def test_a_taken_port_raises_epmd_error() -> None:
    async def scenario() -> None:
        async with serving() as first:
            with pytest.raises(EpmdError, match=f"cannot listen on 127.0.0.1:{first.port}"):
                await EpmdServer.start(port=first.port)

    run(scenario())


# --- the daemon ------------------------------------------------------------------------------


def listener_pids(port: int) -> set[int]:
    """Pids of processes with a socket listening on TCP ``port`` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{entry}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{entry}/fd/{fd}") in inodes:
                            pids.add(int(entry))
    return pids


def daemon_pids(port: int) -> set[int]:
    """Listeners on ``port`` that are pymesh port-mapper daemons."""
    found = set()
    for pid in listener_pids(port):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as file:
            argv = file.read().split(b"\0")
            if b"pymesh" in argv and b"epmd" in argv and str(port).encode() in argv:
                found.add(pid)
    return found


def kill_daemons(port: int) -> None:
    for pid in daemon_pids(port):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while daemon_pids(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in daemon_pids(port):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def daemon_port() -> Iterator[int]:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("finding the daemon's pid needs Linux /proc")
    port = free_port()
    try:
        yield port
    finally:
        kill_daemons(port)


def test_ensure_running_starts_a_detached_daemon_once(daemon_port: int) -> None:
    assert run(ensure_running(daemon_port, timeout=20)) is True
    (pid,) = daemon_pids(daemon_port)
    assert os.getsid(pid) == pid  # its own session: it outlives this process group
    assert run(names(epmd_port=daemon_port)) == []  # and it outlived that event loop
    assert run(ensure_running(daemon_port, timeout=20)) is False
    assert daemon_pids(daemon_port) == {pid}

    async def node() -> None:
        async with await register("alpha", 40001, epmd_port=daemon_port):
            assert await names(epmd_port=daemon_port) == [("alpha", 40001)]

    run(node())


def test_ensure_running_race_starts_exactly_one_daemon(daemon_port: int) -> None:
    async def race() -> list[bool]:
        return list(
            await asyncio.gather(ensure_running(daemon_port, timeout=20), ensure_running(daemon_port, timeout=20))
        )

    assert sorted(run(race())) == [False, True]
    assert len(daemon_pids(daemon_port)) == 1
    assert run(names(epmd_port=daemon_port)) == []


def test_ensure_running_only_starts_daemons_on_this_host() -> None:
    with pytest.raises(EpmdError, match="only be started on this host"):
        # 192.0.2.0/24 is TEST-NET-1: never routed, so nothing answers.
        run(ensure_running(free_port(), host="192.0.2.1", timeout=0.5))


# --- the command line ------------------------------------------------------------------------


@contextlib.contextmanager
def cli_port_mapper(port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [*PYMESH, "epmd", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        run(eventually(lambda: _answers(port), "pymesh epmd answers", timeout=20))
        yield proc
    finally:
        stop_process(proc)
        assert proc.stderr is not None
        proc.stderr.close()


async def _answers(port: int) -> bool:
    try:
        await names(epmd_port=port, timeout=1)
    except EpmdError:
        return False
    return True


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_epmd_and_names(signum: int) -> None:
    port = free_port()
    with cli_port_mapper(port) as proc:

        async def scenario() -> None:
            async with await register("alpha", 40001, epmd_port=port):
                status, out, err = await run_command(*PYMESH, "names", "--epmd-port", str(port))
                assert (status, out, err) == (0, "name alpha at port 40001\n", "")

        run(scenario())
        proc.send_signal(signum)
        assert proc.wait(10) == 0
        assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()


def test_cli_errors_are_one_line() -> None:
    port = free_port()
    status, out, err = run(run_command(*PYMESH, "names", "--epmd-port", str(port)))
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("pymesh names: ") and f"127.0.0.1:{port}" in err

    async def taken() -> tuple[int, str, str]:
        async with serving() as server:
            return await run_command(*PYMESH, "epmd", "--port", str(server.port))

    status, out, err = run(taken())
    assert status == 1 and err.count("\n") == 1 and "cannot listen on" in err, err


# --- interop with Erlang's epmd and erl ------------------------------------------------------


@contextlib.contextmanager
def real_epmd(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Erlang's epmd in the foreground on loopback only (-address adds nothing else)."""
    epmd = require_binary("epmd")
    proc = subprocess.Popen(
        [epmd, "-port", str(port), "-address", "127.0.0.1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        run(eventually(lambda: _answers(port), "epmd answers"))
        yield proc
    finally:
        stop_process(proc)


@contextlib.contextmanager
def erlang_node(epmd_port: int, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """``erl -sname NAME`` registering with the port mapper on ``epmd_port``."""
    erl = require_binary("erl")
    proc = subprocess.Popen(
        [
            erl,
            "-sname",
            name,
            "-setcookie",
            "x",
            "-noshell",
            "-noinput",
            "-start_epmd",
            "false",  # never spawn a stray epmd on a port of its own
            "-kernel",
            "inet_dist_use_interface",
            "{127,0,0,1}",
        ],
        env={**os.environ, "ERL_EPMD_PORT": str(epmd_port)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        stop_process(proc, timeout=15)


def node_name(tag: str) -> str:
    return f"t{os.getpid()}{tag}"


def test_our_client_with_real_epmd() -> None:
    port = free_port()
    epmd = require_binary("epmd")
    with real_epmd(port):

        async def scenario() -> None:
            first = await register("pyfoo", 40100, epmd_port=port)
            hidden = await register("pyhidden", 40101, hidden=True, extra=b"x", epmd_port=port)
            status, out, _ = await run_command(epmd, "-port", str(port), "-names")
            assert status == 0
            assert f"epmd: up and running on port {port} with data:" in out
            assert "name pyfoo at port 40100" in out and "name pyhidden at port 40101" in out
            env = {**os.environ, "ERL_EPMD_PORT": str(port)}
            status, out, _ = await run_command(epmd, "-names", env=env)
            assert "name pyfoo at port 40100" in out
            assert sorted(await names(epmd_port=port)) == [("pyfoo", 40100), ("pyhidden", 40101)]
            assert await port_please("pyhidden", epmd_port=port) == NodeEntry("pyhidden", 40101, 72, 0, 6, 6, b"x")
            assert await port_please("nobody", epmd_port=port) is None
            with pytest.raises(NameTaken, match="'pyfoo'"):
                await register("pyfoo", 40102, epmd_port=port)
            await first.close()
            await hidden.close()
            await eventually(lambda: _no_names(port), "epmd forgets the names")
            again = await register("pyfoo", 40100, epmd_port=port)
            assert again.creation == first.creation + 1  # epmd bumps creation per name, too
            await again.close()

        run(scenario())


def test_our_client_sees_a_real_erlang_node() -> None:
    port = free_port()
    name = node_name("a")
    with real_epmd(port), erlang_node(port, name):

        async def scenario() -> None:
            await eventually(lambda: _registered(port, name), f"{name} registers", timeout=30)
            entry = await port_please(name, epmd_port=port)
            assert entry is not None
            assert entry.name == name and entry.node_type == 77 and not entry.hidden
            assert entry.highest >= 6 and entry.protocol == 0
            assert (name, entry.port) in await names(epmd_port=port)

        run(scenario())


async def _registered(port: int, name: str) -> bool:
    return await port_please(name, epmd_port=port) is not None


def test_real_erlang_node_and_epmd_client_with_our_server() -> None:
    epmd = require_binary("epmd")
    name = node_name("b")

    async def scenario() -> None:
        async with serving() as server:
            port = str(server.port)
            with erlang_node(server.port, name) as erl:
                await eventually(lambda: _registered(server.port, name), f"{name} registers", timeout=30)
                entry = server.lookup(name)
                assert entry is not None and entry.highest >= 6
                async with await register("pyfoo", 40100, epmd_port=server.port):
                    status, out, _ = await run_command(epmd, "-port", port, "-names")
                    assert status == 0
                    assert f"epmd: up and running on port {port} with data:" in out
                    assert f"name {name} at port {entry.port}" in out and "name pyfoo at port 40100" in out
                    status, out, _ = await run_command(epmd, "-port", port, "-kill")
                    assert (status, out) == (1, "Killing not allowed - living nodes in database.\n")
                erl.terminate()
                await eventually(lambda: _no_names(server.port), "the Erlang node unregisters", timeout=30)
            status, out, _ = await run_command(epmd, "-port", port, "-kill")
            assert (status, out) == (0, "Killed\n")
            async with asyncio.timeout(5):
                await server.wait_closed()

    run(scenario())
