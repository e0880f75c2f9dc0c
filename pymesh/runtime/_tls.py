"""Distribution over mutual TLS: :class:`TLSConfig` and the TLS channel.

With ``pymesh.start(..., tls=TLSConfig(cert, key, ca))`` (or the CLI's
``--tls-cert/--tls-key/--tls-ca``) every distribution connection is TLS 1.2 or
newer, in both directions, and *mutual*: each side presents a certificate signed
by the CA and verifies the other's. The cookie handshake then runs inside TLS,
unchanged — TLS decides which machines may talk, the cookie which nodes.

Hostname checking. The dialing node checks that the acceptor's certificate names
the *host part of the node name it dials* (``a@db1`` -> ``db1``; an IP address
host is matched against the certificate's IP SANs), as HTTPS checks the URL's
host. That is the default and the right one when node names carry real host
names. For clusters named by IP or ``localhost``, put those names in the SANs;
``verify_hostname=False`` (``--tls-no-verify-hostname``) turns the check off
explicitly — the peer still needs a certificate from the CA. The accepting side
checks the dialer's certificate against the CA only (clients are not named in
TLS).

A TLS node refuses plain connections, and a plain node TLS ones, each with one
clear log line; the refused side hears why too where the protocol allows it (a
plain dialer gets status ``not_allowed`` with the reason "requires TLS").

The channel does TLS itself over :class:`ssl.MemoryBIO` (no asyncio ``ssl=``
transport), so that the first bytes can be looked at — a plain handshake frame
starts with a zero byte, a TLS record with 0x16 — and so that every failure is
logged with the connection's ``node=… conn=…``. The cost is one extra copy per
read and write, on TLS connections only.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from os import PathLike
from typing import TYPE_CHECKING, Union

from .._errors import ConfigError
from ..wire._protocol import Role, refusal
from ._connection import Channel

if TYPE_CHECKING:
    import asyncio

    from ._node import Distribution

__all__ = ["TLSConfig", "TlsChannel", "contexts"]

log = logging.getLogger("pymesh.dist")

StrPath = Union[str, "PathLike[str]"]

_READ_CHUNK = 256 * 1024
_TLS_HANDSHAKE_RECORD = 0x16
_TLS_RECORD_TYPES = range(0x14, 0x18)  # change_cipher_spec, alert, handshake, application_data


@dataclass(frozen=True)
class TLSConfig:
    """Mutual TLS for distribution: this node's certificate chain and key (PEM
    files), and the CA (a PEM bundle) whose certificates peers must present.

    ``verify_hostname`` (default True): check that a dialed node's certificate
    names the host part of its node name (see the module doc).
    """

    cert: StrPath
    key: StrPath
    ca: StrPath
    verify_hostname: bool = True

    @classmethod
    def from_options(
        cls,
        cert: StrPath | None = None,
        key: StrPath | None = None,
        ca: StrPath | None = None,
        *,
        verify_hostname: bool | None = None,
    ) -> TLSConfig | None:
        """A config from CLI-style options, each falling back to its environment
        variable (``PYMESH_TLS_CERT``, ``PYMESH_TLS_KEY``, ``PYMESH_TLS_CA``,
        ``PYMESH_TLS_VERIFY_HOSTNAME=0``), as the cookie falls back to
        ``$PYMESH_COOKIE``. None when none of the three files is given; raises
        :class:`ConfigError` when only some are.
        """
        env = os.environ
        files = {
            "cert": cert or env.get("PYMESH_TLS_CERT") or None,
            "key": key or env.get("PYMESH_TLS_KEY") or None,
            "ca": ca or env.get("PYMESH_TLS_CA") or None,
        }
        missing = [k for k, v in files.items() if v is None]
        if len(missing) == 3:
            return None
        if missing:
            raise ConfigError(
                "TLS distribution needs a certificate, its key and the CA: "
                + ", ".join(f"--tls-{k}" for k in missing)
                + " missing (or $PYMESH_TLS_"
                + "/".join(k.upper() for k in missing)
                + ")"
            )
        if verify_hostname is None:
            verify_hostname = env.get("PYMESH_TLS_VERIFY_HOSTNAME", "1").strip().lower() not in ("0", "false", "no", "off")
        return cls(files["cert"], files["key"], files["ca"], verify_hostname)  # type: ignore[arg-type]

    def _load(self, ctx: ssl.SSLContext) -> ssl.SSLContext:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            ctx.load_verify_locations(cafile=self.ca)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"TLS: cannot load the CA certificates {str(self.ca)!r}: {e}") from None
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(
                f"TLS: cannot load the certificate {str(self.cert)!r} with the key {str(self.key)!r}: {e}"
            ) from None
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """The context for accepted connections (client certificates required)."""
        return self._load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))

    def client_context(self) -> ssl.SSLContext:
        """The context for dialed connections (server certificate verified)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = self.verify_hostname
        return self._load(ctx)


SSLContexts = tuple[ssl.SSLContext, ssl.SSLContext]


def contexts(
    tls: TLSConfig | None, ssl_context: ssl.SSLContext | SSLContexts | None
) -> SSLContexts | None:
    """``(server, client)`` contexts from ``start()``'s ``tls``/``ssl_context``, or None.

    With neither, ``$PYMESH_TLS_CERT``/``KEY``/``CA`` give the files, if set.
    ``ssl_context`` is one context for both directions (made with
    ``ssl.PROTOCOL_TLS``) or a ``(server, client)`` pair. Raises
    :class:`ConfigError` for both arguments at once, unreadable files, or a
    one-sided context.
    """
    if tls is not None and ssl_context is not None:
        raise ConfigError("give tls= or ssl_context=, not both")
    if tls is None and ssl_context is None:
        tls = TLSConfig.from_options()  # the environment's, if any
    if tls is not None:
        return tls.server_context(), tls.client_context()
    if ssl_context is None:
        return None
    if isinstance(ssl_context, tuple):
        server, client = ssl_context
        if server.protocol is ssl.PROTOCOL_TLS_CLIENT or client.protocol is ssl.PROTOCOL_TLS_SERVER:
            raise ConfigError("ssl_context=(server, client): the two contexts are the wrong way round")
        return server, client
    if ssl_context.protocol in (ssl.PROTOCOL_TLS_SERVER, ssl.PROTOCOL_TLS_CLIENT):
        raise ConfigError(
            "one ssl_context serves both directions only when made with ssl.PROTOCOL_TLS; "
            "pass (server_context, client_context) instead"
        )
    return ssl_context, ssl_context


def _tls_failure(e: ssl.SSLError) -> str:
    """What a TLS error means for a distribution connection, in words."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"the peer's certificate is not accepted: {e.verify_message}"
    reason = e.reason or str(e)
    if "ALERT" in reason:
        return f"the peer refused the TLS session ({reason.lower().replace('_', ' ')}): does it trust our CA?"
    if reason in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "NO_CERTIFICATE_RETURNED"):
        return "the peer presented no certificate"
    if reason in ("WRONG_VERSION_NUMBER", "UNSUPPORTED_PROTOCOL", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG"):
        return f"the peer does not speak TLS 1.2+ ({reason})"
    return f"TLS error: {reason}"


class TlsChannel(Channel):
    """A :class:`Channel` whose bytes go through a TLS session (see the module doc)."""

    plain = False

    def __init__(self, dist: Distribution, role: Role, peer: str | None = None) -> None:
        super().__init__(dist, role, peer)
        assert dist.tls is not None
        server_side = role is Role.ACCEPTOR
        ctx = dist.tls[0] if server_side else dist.tls[1]
        host = None if server_side or peer is None else peer.partition("@")[2] or None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = ctx.wrap_bio(self._incoming, self._outgoing, server_side=server_side, server_hostname=host)
        self.secure = False  # the TLS handshake is complete
        self._scratch_view = memoryview(bytearray(_READ_CHUNK))
        self._first = True

    def __repr__(self) -> str:
        return f"<TlsChannel {self.proto.role.value} peer={self.peer} state={self.proto.state.value}>"

    # --- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.proto.role is Role.INITIATOR and self.close_reason is None:
            self._handshake()  # the client speaks first

    def get_buffer(self, sizehint: int) -> memoryview:
        # ciphertext lands here; the plaintext goes through data_received below
        return self._scratch_view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._scratch_view[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        if self._first:
            self._first = False
            if not self._looks_like_tls(data):
                return
        self._incoming.write(data)
        if not self.secure and not self._handshake():
            return
        plain = self._read()
        if plain:
            super().data_received(plain)

    def eof_received(self) -> bool:
        if not self.secure:
            self.fail(
                "protocol_error",
                "the peer closed the connection during the TLS handshake"
                + (" (is it a TLS node? does it trust our certificate?)" if self.proto.role is Role.INITIATOR else ""),
            )
            return False
        return super().eof_received()

    # --- TLS ----------------------------------------------------------------------------

    def _looks_like_tls(self, data: bytes) -> bool:
        first = data[0]
        if self.proto.role is Role.ACCEPTOR:
            if first == _TLS_HANDSHAKE_RECORD:
                return True
            if first == 0 and self.transport is not None:
                # a plain pymesh handshake frame: tell the dialer why, in its language
                self.transport.write(refusal("this node requires TLS distribution"))
            self._refuse("refused a plain (non-TLS) connection: this node requires TLS distribution")
            return False
        if first in _TLS_RECORD_TYPES:
            return True
        self._refuse("the peer answered without TLS: it does not use TLS distribution")
        return False

    def _refuse(self, detail: str) -> None:
        self.close_reason = "protocol_error"
        log.warning("node=%s conn=%s closed: %s", self.peer or "?", self.address, detail)
        if self.transport is not None:
            self.transport.close()  # after the refusal frame, if any, is written

    def _handshake(self) -> bool:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._write_out()
            return False
        except ssl.SSLError as e:
            self._write_out()  # the alert tells the peer why
            self.fail("protocol_error", f"TLS handshake failed: {_tls_failure(e)}")
            return False
        self._write_out()
        self.secure = True
        log.debug(
            "node=%s conn=%s: TLS up (%s, %s)", self.peer or "?", self.address, self._ssl.version(), self._ssl.cipher()
        )
        self.flush()  # what the protocol queued meanwhile (the initiator's name)
        return True

    def _read(self) -> bytes:
        chunks: list[bytes] = []
        try:
            while True:
                chunk = self._ssl.read(_READ_CHUNK)
                if not chunk:
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:  # the peer's close_notify
            if chunks:
                super().data_received(b"".join(chunks))
            if self.close_reason is None:
                super().eof_received()
            if self.transport is not None:
                self.transport.close()
            return b""
        except ssl.SSLError as e:
            self._write_out()
            self.fail("protocol_error", _tls_failure(e))
            return b""
        if self._outgoing.pending:
            self._write_out()  # post-handshake messages (TLS 1.3 tickets, key updates)
        return b"".join(chunks) if len(chunks) != 1 else chunks[0]

    def _write_out(self) -> None:
        if self._outgoing.pending and self.transport is not None and not self.transport.is_closing():
            self.transport.write(self._outgoing.read())

    # --- output -----------------------------------------------------------------------

    def flush(self) -> None:
        self.flush_scheduled = False
        if not self.secure:
            return  # the protocol keeps its bytes until the TLS session is up
        data = self.proto.data_to_send()
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            try:
                self._ssl.write(data)
            except ssl.SSLError as e:  # pragma: no cover - a session that broke meanwhile
                self.fail("protocol_error", _tls_failure(e))
                return
            transport.write(self._outgoing.read())
            self.bytes_out += len(data)
            self.wrote_since_tick = True

    def close(self, reason: str | None = None) -> None:
        if reason is not None and self.close_reason is None:
            self.close_reason = reason
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self.flush()
            if self.secure:
                try:
                    self._ssl.unwrap()  # queue our close_notify
                except ssl.SSLError:
                    pass
                self._write_out()
            transport.close()

