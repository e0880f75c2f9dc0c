"""Helpers of the reliability and security tests (TLS, backpressure, hardening).

* :func:`make_pki`: a CA and node certificates made in the test with
  ``cryptography`` (SANs ``127.0.0.1``, ``localhost`` and this host's short
  name, unless told otherwise).
* :class:`RunNode`: a ``pymesh run`` subprocess (the real CLI, with whatever
  flags a test gives it), its log captured from stderr, killed by its pid.
* :func:`rss`: the resident memory of a process, from ``/proc``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .cluster import kill_pid, unique

__all__ = ["HOST", "NodeCert", "Pki", "RunNode", "make_pki", "rss"]

HOST = socket.gethostname().split(".")[0]
TESTS_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class NodeCert:
    cert: Path
    key: Path
    ca: Path  # the CA this node trusts

    def flags(self, *, verify_hostname: bool = True) -> list[str]:
        out = ["--tls-cert", str(self.cert), "--tls-key", str(self.key), "--tls-ca", str(self.ca)]
        return out + ([] if verify_hostname else ["--tls-no-verify-hostname"])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


class Pki:
    """One CA in ``directory``; :meth:`issue` makes node certificates it signs."""

    def __init__(self, directory: Path, name: str = "ca") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"pymesh test {name}")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_path = directory / f"{name}.pem"
        self.ca_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, node: str, sans: list[str] | None = None, trust: Path | None = None) -> NodeCert:
        """A certificate for ``node`` (client and server use) naming ``sans``
        (default: 127.0.0.1, localhost and the short host name); it trusts
        ``trust`` (default: this CA)."""
        names = sans if sans is not None else ["127.0.0.1", "localhost", HOST]
        alt: list[x509.GeneralName] = []
        for n in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                alt.append(x509.DNSName(n))
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path = self.dir / f"{self.name}-{node}.pem"
        key_path = self.dir / f"{self.name}-{node}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        return NodeCert(cert_path, key_path, trust or self.ca_path)


def make_pki(directory: Path, name: str = "ca") -> Pki:
    return Pki(directory, name)


def rss(pid: int) -> int:
    """Resident set size of process ``pid``, in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    assert m, text
    return int(m.group(1)) * 1024


class RunNode:
    """``python -m pymesh run --sname NAME ARGS...`` with its log kept in memory.

    ``start()`` waits for the ready line; ``close()`` kills it by its pid.
    """

    def __init__(self, args: list[str], *, cookie: str, epmd_port: int, short: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.short = short or unique("r")
        self.name = f"{self.short}@{HOST}"
        full_env = dict(os.environ)
        full_env.pop("PYMESH_COOKIE", None)
        for k in ("PYMESH_TLS_CERT", "PYMESH_TLS_KEY", "PYMESH_TLS_CA", "PYMESH_TLS_VERIFY_HOSTNAME"):
            full_env.pop(k, None)
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), full_env.get("PYTHONPATH", "")) if p)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pymesh", "run", "--sname", self.short, "--cookie", cookie,
             "--epmd-port", str(epmd_port), "-v", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, cwd=str(TESTS_DIR),
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.ready_line = ""
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("node ") and not self._ready.is_set():
                self.ready_line = line
                self._ready.set()
        self._ready.set()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def wait_ready(self, timeout: float = 30.0) -> RunNode:
        if not self._ready.wait(timeout) or not self.ready_line:
            self.close()
            raise RuntimeError(f"{self.name} did not start; log:\n{self.log[-3000:]}")
        return self

    @property
    def port(self) -> int:
        """The distribution port from the ready line (``node NAME ready on port N``)."""
        return int(self.ready_line.rsplit(" ", 1)[1])

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_log(self, pattern: str, timeout: float = 10.0) -> str:
        """Wait until a log line matches ``pattern`` (a regex); return that line."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            for line in list(self.lines):
                if rx.search(line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no log line matches {pattern!r} within {timeout}s:\n{self.log[-3000:]}")
            time.sleep(0.05)

    def close(self) -> None:
        kill_pid(self.proc)
