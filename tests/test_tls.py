"""Distribution over mutual TLS, between real OS processes.

The certificates are made here (a CA, node certificates with SANs 127.0.0.1,
localhost and this host's short name; a second, rogue CA; a certificate naming
another host). The nodes are ``pymesh run`` subprocesses started with the CLI's
``--tls-*`` flags; the test process takes part as a node of its own with
``pymesh.start(..., tls=TLSConfig(...))``. Every refusal is checked where it is
logged, on both sides.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cluster import epmd, run, unique  # noqa: F401 - the fixture
from support.reliability import NodeCert, Pki, RunNode, make_pki

import pymesh
from pymesh import Node, TLSConfig, rpc_call, rpc_eval

pytestmark = pytest.mark.timeout(60)

COOKIE = "tls-" + secrets.token_hex(6)


class World:
    def __init__(self, root: Path, epmd_port: int) -> None:
        self.epmd_port = epmd_port
        self.pki = make_pki(root / "good")
        self.rogue = make_pki(root / "rogue", "rogue")
        self.nodes: list[RunNode] = []
        self.a = self.node(self.pki.issue("a").flags())
        self.b = self.node(self.pki.issue("b").flags())
        self.plain = self.node([])
        # a certificate from the right CA that names another host
        self.elsewhere = self.node(self.pki.issue("h", sans=["elsewhere.invalid"]).flags(verify_hostname=False))
        for n in self.nodes:
            n.wait_ready()

    def node(self, args: list[str]) -> RunNode:
        n = RunNode(args, cookie=COOKIE, epmd_port=self.epmd_port)
        self.nodes.append(n)
        return n

    def close(self) -> None:
        for n in self.nodes:
            n.close()


@pytest.fixture(scope="module")
def world(epmd: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("tls"), epmd)
    try:
        yield w
    finally:
        w.close()


def tls(cert: NodeCert, **kw: Any) -> TLSConfig:
    return TLSConfig(cert.cert, cert.key, cert.ca, **kw)


@contextlib.asynccontextmanager
async def local(world: World, **options: Any) -> AsyncIterator[str]:
    options.setdefault("cookie", COOKIE)
    name = await pymesh.start(unique("x"), epmd_port=world.epmd_port, listen_host="127.0.0.1", **options)
    try:
        yield name
    finally:
        await pymesh.stop()


@pytest.fixture
def dist_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="pymesh.dist")
    return caplog


CHANNEL_OF = (
    "(lambda ch: (type(ch).__name__, ch._ssl.version()))"
    "(__import__('pymesh.runtime._node', fromlist=['_']).current_distribution().conns[{peer!r}].channel)"
)


def test_tls_nodes_connect_and_talk(world: World) -> None:
    a, b = world.a, world.b

    async def scenario() -> None:
        async with local(world, tls=tls(world.pki.issue("me"))) as me:
            assert await Node.connect(a.name)
            assert await rpc_call(a.name, "os:getpid") == a.pid
            kind, version = (await rpc_eval(a.name, CHANNEL_OF.format(peer=me)))[0]
            assert kind == "TlsChannel" and version in ("TLSv1.2", "TLSv1.3")
            # node to node, both started by the CLI with --tls-*
            assert (await rpc_eval(a.name, f"await Node.connect({b.name!r})"))[0] is True
            assert (await rpc_eval(a.name, f"await rpc_call({b.name!r}, 'os:getpid')"))[0] == b.pid
            kind, _ = (await rpc_eval(a.name, CHANNEL_OF.format(peer=b.name)))[0]
            assert kind == "TlsChannel"

    run(scenario)


def test_a_certificate_from_another_ca_is_refused(world: World, dist_log: pytest.LogCaptureFixture) -> None:
    a = world.a

    async def scenario() -> None:
        # a rogue certificate, though we trust the right CA: the acceptor refuses it
        async with local(world, tls=tls(world.rogue.issue("r1", trust=world.pki.ca_path))):
            assert not await Node.connect(a.name)
        a.wait_log(r"TLS handshake failed: the peer's certificate is not accepted: unable to get local issuer")
        assert "does it trust our CA?" in dist_log.text
        # a node trusting only the rogue CA refuses the acceptor's certificate
        dist_log.clear()
        async with local(world, tls=tls(world.rogue.issue("r2"))):
            assert not await Node.connect(a.name)
            assert Node.list() == []
        assert "the peer's certificate is not accepted" in dist_log.text

    run(scenario)


def test_plain_and_tls_nodes_refuse_each_other(world: World, dist_log: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with local(world):  # plain, dialing a TLS node
            assert not await Node.connect(world.a.name)
        world.a.wait_log(r"refused a plain \(non-TLS\) connection: this node requires TLS distribution")
        assert "connection refused (this node requires TLS distribution)" in dist_log.text

        dist_log.clear()
        async with local(world, tls=tls(world.pki.issue("me2"))):  # TLS, dialing a plain node
            assert not await Node.connect(world.plain.name)
        world.plain.wait_log(r"refused a TLS connection: this node does not use TLS distribution")
        assert "the peer answered without TLS: it does not use TLS distribution" in dist_log.text

    run(scenario)


def test_a_wrong_cookie_inside_tls_is_still_refused(world: World) -> None:
    async def scenario() -> None:
        async with local(world, cookie="not-" + COOKIE, tls=tls(world.pki.issue("me3"))) as me:
            assert not await Node.connect(world.a.name)
            world.a.wait_log(rf"node={me} .*AuthenticationError: .*the cookies differ")

    run(scenario)


def test_hostname_verification_and_turning_it_off(world: World, dist_log: pytest.LogCaptureFixture) -> None:
    h = world.elsewhere  # its certificate names elsewhere.invalid only
    cert = world.pki.issue("me4")

    async def scenario() -> None:
        async with local(world, tls=tls(cert)):
            assert not await Node.connect(h.name)
        assert "Hostname mismatch" in dist_log.text and "elsewhere" not in h.name
        async with local(world, tls=tls(cert, verify_hostname=False)):
            assert await Node.connect(h.name)
            assert await rpc_call(h.name, "os:getpid") == h.pid

    run(scenario)


def _cli(*args: str, epmd_port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pymesh", *args, "--cookie", COOKIE, "--epmd-port", str(epmd_port)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False,
    )


def test_the_cli_commands_take_the_tls_flags(world: World) -> None:
    cert = world.pki.issue("cli")
    ok = _cli("rpc", world.a.name, "6 * 7", *cert.flags(), epmd_port=world.epmd_port)
    assert (ok.returncode, ok.stdout.strip()) == (0, "42"), ok.stderr
    plain = _cli("rpc", world.a.name, "6 * 7", epmd_port=world.epmd_port)
    assert plain.returncode == 1 and "cannot connect" in plain.stderr
    partial = _cli("rpc", world.a.name, "1", "--tls-cert", str(cert.cert), epmd_port=world.epmd_port)
    assert partial.returncode == 1
    assert "--tls-key, --tls-ca missing" in partial.stderr
    for command in ("run", "shell", "rpc", "discovery", "tui", "bench"):
        help_text = subprocess.run(
            [sys.executable, "-m", "pymesh", command, "--help"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
        for flag in ("--tls-cert", "--tls-key", "--tls-ca", "--tls-no-verify-hostname"):
            assert flag in help_text, (command, flag)


def test_tls_config_errors_are_config_errors(tmp_path: Path) -> None:
    pki: Pki = make_pki(tmp_path)
    cert = pki.issue("x")
    with pytest.raises(pymesh.ConfigError, match="cannot load the CA"):
        TLSConfig(cert.cert, cert.key, tmp_path / "missing.pem").server_context()
    with pytest.raises(pymesh.ConfigError, match="cannot load the certificate"):
        TLSConfig(cert.cert, cert.cert, cert.ca).client_context()  # a certificate is no key
    with pytest.raises(pymesh.ConfigError, match="--tls-ca missing"):
        TLSConfig.from_options(cert.cert, cert.key)
    assert TLSConfig.from_options() is None
    ctx = TLSConfig(cert.cert, cert.key, cert.ca).client_context()
    assert ctx.minimum_version.name == "TLSv1_2" and ctx.check_hostname
    assert not TLSConfig(cert.cert, cert.key, cert.ca, verify_hostname=False).client_context().check_hostname
