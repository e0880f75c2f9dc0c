"""A real etcd (Debian's ``etcd-server``) for the etcd registry tests: loopback, random ports, killed by pid.

A missing binary skips the tests that need it locally and fails them under
``CI=true`` (tests/conftest.py's ``require_binary``).
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, require_binary

from .cluster import kill_pid


class Etcd:
    """One single-member etcd on 127.0.0.1; ``url`` is its client endpoint."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.peer_port = free_port()
        while self.peer_port == self.port:
            self.peer_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        log = (self.directory / "etcd.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "--name=default", f"--data-dir={self.directory / 'data'}",
             f"--listen-client-urls={self.url}", f"--advertise-client-urls={self.url}",
             f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
             f"--initial-cluster=default={peer}", "--log-level=error"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited: {(self.directory / 'etcd.log').read_text()[-2000:]}")
            try:
                req = urllib.request.Request(f"{self.url}/v3/kv/range", data=b'{"key":"AA=="}', method="POST")
                with urllib.request.urlopen(req, timeout=0.5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError("etcd did not answer within 20 s")

    def stop(self) -> None:
        if self.proc is not None:
            kill_pid(self.proc)
            self.proc = None


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """One etcd for the session; tests use distinct registry names."""
    server = Etcd(require_binary("etcd"), tmp_path_factory.mktemp("etcd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
