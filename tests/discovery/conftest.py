"""Real servers for the discovery tests: dnsmasq (DNS) and etcd, on loopback, on random free ports.

Each server runs as a subprocess that is killed by its pid in teardown. A
missing binary skips the tests that need it locally, and fails them when
``CI=true``: in CI the servers must be there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .discovery_helpers import free_port

DNSMASQ = "/usr/sbin/dnsmasq"
ETCD = "/usr/bin/etcd"


def require_binary(path: str, package: str) -> str:
    """Return ``path`` if executable; else skip (or fail under CI=true)."""
    found = path if os.access(path, os.X_OK) else shutil.which(Path(path).name)
    if found:
        return found
    message = f"{path} not found (Debian package {package})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}: required in CI", pytrace=False)
    pytest.skip(message)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a server we started, by its pid; kill it if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


# --- dnsmasq ----------------------------------------------------------------------------


class Dnsmasq:
    """dnsmasq answering for the zone ``test.`` from a hosts file, with SRV records.

    ``set_hosts(lines)`` rewrites the hosts file and makes dnsmasq re-read it
    (SIGHUP); ``stop()`` / ``start()`` take the server away and bring it back
    on the same port. Names under ``test.`` that are not listed get NXDOMAIN,
    listed names without the asked type get an empty answer, like a real
    authoritative server.
    """

    def __init__(self, binary: str, directory: Path, srv: list[str]) -> None:
        self.binary = binary
        self.port = free_port("both")
        self.hosts = directory / "hosts"
        self.hosts.write_text("")
        self.srv = srv
        self.log = directory / "dnsmasq.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            self.binary,
            "--no-daemon",
            f"--port={self.port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--local=/test/",
            "--cache-size=0",
            f"--addn-hosts={self.hosts}",
            *[f"--srv-host={record}" for record in self.srv],
        ]
        if os.geteuid() == 0:
            args.append("--user=root")  # keep read access to the test's private tmp dir
        log = self.log.open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        import dns.message
        import dns.query

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {self.log.read_text()[-2000:]}")
            try:
                dns.query.udp(dns.message.make_query("ready.test.", "A"), "127.0.0.1", port=self.port, timeout=0.2)
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("dnsmasq did not answer within 10 s")

    def set_hosts(self, lines: list[str]) -> None:
        self.hosts.write_text("".join(line + "\n" for line in lines))
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGHUP)
            time.sleep(0.2)  # dnsmasq re-reads the file asynchronously

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[Dnsmasq]:
    """A running dnsmasq for zone ``test.``; SRV ``_pymesh._tcp.nodes.test`` -> n1, n2.nodes.test."""
    binary = require_binary(DNSMASQ, "dnsmasq-base")
    server = Dnsmasq(
        binary,
        tmp_path,
        srv=[
            "_pymesh._tcp.nodes.test,n1.nodes.test,9100,0,10",
            "_pymesh._tcp.nodes.test,n2.nodes.test,9100,0,10",
        ],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- etcd --------------------------------------------------------------------------------


# The one etcd test server class of the suite (also used by the etcd registry tests).
from support.etcd_server import Etcd  # noqa: E402


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """One etcd for the session (tests use distinct key prefixes)."""
    binary = require_binary(ETCD, "etcd-server")
    server = Etcd(binary, tmp_path_factory.mktemp("etcd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def etcd_unstarted(tmp_path: Path) -> Iterator[Etcd]:
    """An etcd with its ports chosen but not started yet (for "etcd down at start-up")."""
    binary = require_binary(ETCD, "etcd-server")
    server = Etcd(binary, tmp_path)
    try:
        yield server
    finally:
        server.stop()
