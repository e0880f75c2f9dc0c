"""Plain helpers shared by the discovery tests: fakes, a tiny HTTP server, loops with bounds.

Everything here talks to loopback only, and every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import inspect
import ipaddress
import json
import random
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


def run(coro: Awaitable[Any], timeout: float = 20.0) -> Any:
    """Run a coroutine to completion in a fresh event loop, failing after ``timeout`` seconds."""

    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate`` (plain or async) every 20 ms until true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def free_port(kind: str = "tcp") -> int:
    """A random port free for TCP, UDP or both (``kind`` = "tcp", "udp", "both") on 127.0.0.1."""
    types = {"tcp": [socket.SOCK_STREAM], "udp": [socket.SOCK_DGRAM], "both": [socket.SOCK_STREAM, socket.SOCK_DGRAM]}
    for _ in range(200):
        candidate = random.randint(20000, 60000)
        sockets = []
        try:
            for sock_type in types[kind]:
                s = socket.socket(socket.AF_INET, sock_type)
                sockets.append(s)
                s.bind(("127.0.0.1", candidate))
            return candidate
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port found")


# --- fakes ---------------------------------------------------------------------------


class FakeOps:
    """A ClusterOps that records calls; nodes in ``reachable`` accept connections."""

    def __init__(self, name: str = "me@host", reachable: Iterable[str] | None = None, dist_port: int | None = 9000):
        self.name = name
        self.port = dist_port
        self.reachable: set[str] | None = set(reachable) if reachable is not None else None
        self.connected: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    async def connect(self, node: str) -> bool:
        self.calls.append(("connect", node))
        if self.reachable is not None and node not in self.reachable:
            return False
        self.connected.add(node)
        return True

    def disconnect(self, node: str) -> bool:
        self.calls.append(("disconnect", node))
        was = node in self.connected
        self.connected.discard(node)
        return was

    def list_nodes(self) -> list[str]:
        return sorted(self.connected)

    def self_name(self) -> str:
        return self.name

    def dist_port(self) -> int | None:
        return self.port

    def drop(self, node: str) -> None:
        """Simulate the connection to ``node`` breaking (nodedown)."""
        self.connected.discard(node)

    def count(self, op: str, node: str | None = None) -> int:
        return sum(1 for o, n in self.calls if o == op and (node is None or n == node))


@dataclass
class FakeReport:
    """A Report that records what a strategy says, for testing strategies alone."""

    answers: list[frozenset[str]] = field(default_factory=list)
    seen_nodes: list[str] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)

    async def found(self, nodes: Iterable[str]) -> None:
        self.answers.append(frozenset(nodes))

    async def seen(self, node: str) -> None:
        self.seen_nodes.append(node)

    def failed(self, error: BaseException) -> None:
        self.failures.append(error)

    def note(self, key: str, problem: str) -> None:
        self.notes.append((key, problem))

    @property
    def last(self) -> frozenset[str] | None:
        return self.answers[-1] if self.answers else None


# --- a tiny HTTP server ------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes sent as is
    headers: dict[str, str] = field(default_factory=dict)


class FakeHTTP:
    """A threaded HTTP(S) server on 127.0.0.1 whose answers come from ``handler(request) -> Reply``.

    Every request is recorded in ``requests``. Stop it with :meth:`stop`.
    """

    def __init__(self, handler: Callable[[Request], Reply], tls: ssl.SSLContext | None = None):
        self.handler = handler
        self.requests: list[Request] = []
        self._connections: set[socket.socket] = set()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                owner._connections.add(self.connection)

            def finish(self) -> None:
                owner._connections.discard(self.connection)
                super().finish()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                owner.requests.append(request)
                try:
                    reply = owner.handler(request)
                except Exception as exc:  # a bug in a test handler: answer 599 so it shows
                    reply = Reply(599, f"handler error: {exc!r}")
                payload = reply.body
                content_type = "application/json"
                if isinstance(payload, (dict, list)):
                    data = json.dumps(payload).encode()
                elif isinstance(payload, str):
                    data, content_type = payload.encode(), "text/plain"
                elif payload is None:
                    data = b""
                else:
                    data = bytes(payload)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.headers.get("Content-Type", content_type))
                self.send_header("Content-Length", str(len(data)))
                for key, value in reply.headers.items():
                    if key != "Content-Type":
                        self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and cut kept-alive connections, as a server that went away would."""
        self.server.shutdown()
        self.server.server_close()
        for connection in list(self._connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def paths(self, method: str | None = None) -> list[str]:
        return [r.path for r in self.requests if method is None or r.method == method]


def make_tls(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1; returns (server context, CA file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pymesh test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file = directory / "server.crt"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "server.key"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, ca_file


def udp_garbage_server(reply: Callable[[bytes], bytes]) -> tuple[int, Callable[[], None]]:
    """A UDP server on 127.0.0.1 answering each datagram with ``reply(datagram)``; returns (port, stop)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                data, addr = sock.recvfrom(4096)
            except OSError:
                continue
            answer = reply(data)
            if answer:
                sock.sendto(answer, addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(timeout=2)
        sock.close()

    return sock.getsockname()[1], stop
