"""A small asyncio client for etcd's v3 API, over its JSON gateway.

etcd is the strongly-consistent store that pymesh services lean on when they
need one answer for the whole cluster: discovery registers each node under a
prefix with a lease (so a dead node's key disappears by itself), and a
distributed registry can claim names with compare-and-create transactions.

This client speaks the v3 JSON gateway (``POST /v3/kv/range`` and friends,
keys and values base64-encoded) through httpx, so it needs no gRPC stack and
works with any etcd from 3.4 on. It covers what those services need:

* keys: :meth:`EtcdClient.get`, :meth:`~EtcdClient.get_prefix`,
  :meth:`~EtcdClient.put`, :meth:`~EtcdClient.delete`,
  :meth:`~EtcdClient.delete_prefix`;
* transactions: :meth:`~EtcdClient.txn` with the :func:`compare` and
  ``*_op`` builders, and :meth:`~EtcdClient.create` (put only if absent);
* leases: :meth:`~EtcdClient.lease_grant`,
  :meth:`~EtcdClient.lease_keepalive`, :meth:`~EtcdClient.lease_revoke`;
* watches: :meth:`~EtcdClient.watch` streams the changes under a key or
  prefix.

Keys and values are ``bytes`` or ``str`` (encoded as UTF-8) going in, and
``bytes`` coming out. Revisions and lease ids are plain ``int``.

Failure model: every call has a timeout (``timeout`` seconds for each HTTP
exchange; a watch has an ``idle_timeout`` instead), so nothing hangs when
etcd is down. With several endpoints the client tries them in turn and sticks
to the first that answers. Whatever goes wrong surfaces as
:class:`~pymesh._errors.EtcdError` with a message naming the endpoint, a
``kind`` (``"unreachable"``, ``"timeout"``, ``"refused"``, ``"malformed"``)
and, when etcd itself refused, its gRPC ``code``. Outcomes a caller expects
are values, not errors: a missing key is ``None``, a compare that failed is
``False``, an expired lease keeps alive with TTL ``0``.

Example::

    async with EtcdClient("http://127.0.0.1:2379") as etcd:
        lease = await etcd.lease_grant(10)
        if await etcd.create("names/db", b"node1@host", lease=lease.id):
            ...  # we own the name while we keep the lease alive
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx

from pymesh._errors import EtcdError

__all__ = [
    "EtcdClient",
    "KeyValue",
    "Lease",
    "TxnResult",
    "Watch",
    "WatchEvent",
    "compare",
    "delete_op",
    "get_op",
    "prefix_end",
    "put_op",
]

Bytesish = bytes | str
T = TypeVar("T")

#: Largest single gateway message a watch will buffer before giving up.
_MAX_MESSAGE = 16 * 1024 * 1024

_TARGETS = {"version": "VERSION", "create": "CREATE", "mod": "MOD", "value": "VALUE", "lease": "LEASE"}
_TARGET_FIELDS = {
    "VERSION": "version",
    "CREATE": "create_revision",
    "MOD": "mod_revision",
    "VALUE": "value",
    "LEASE": "lease",
}
_RESULTS = {"==": "EQUAL", "!=": "NOT_EQUAL", ">": "GREATER", "<": "LESS"}


@dataclass(frozen=True)
class KeyValue:
    """One key as etcd stores it.

    ``create_revision`` is the revision that created the key (0 never appears
    for a key that exists), ``mod_revision`` the last one that changed it,
    ``version`` counts its changes since creation, ``lease`` is the id of the
    lease it is attached to (0 for none).
    """

    key: bytes
    value: bytes
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0


@dataclass(frozen=True)
class Lease:
    """A lease granted by etcd: keys put with it vanish ``ttl`` seconds after its last keep-alive."""

    id: int
    ttl: int


@dataclass(frozen=True)
class TxnResult:
    """The outcome of :meth:`EtcdClient.txn`.

    ``succeeded`` says whether every compare held (so the ``success`` ops ran)
    or not (the ``failure`` ops ran). ``responses`` holds one value per op that
    ran, in order: a ``list[KeyValue]`` for a get, the number of deleted keys
    for a delete, ``None`` for a put.
    """

    succeeded: bool
    revision: int
    responses: tuple[Any, ...]


@dataclass(frozen=True)
class WatchEvent:
    """A change seen by a watch: ``type`` is ``"put"`` or ``"delete"``.

    For a delete, ``kv.value`` is empty and only ``key`` and ``mod_revision``
    are meaningful.
    """

    type: Literal["put", "delete"]
    kv: KeyValue


# --- encoding ----------------------------------------------------------------------


def _b(data: Bytesish) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data)


def _b64(data: Bytesish) -> str:
    return base64.b64encode(_b(data)).decode("ascii")


def _unb64(text: Any) -> bytes:
    if text is None:
        return b""
    if not isinstance(text, str):
        raise ValueError(f"expected base64 text, got {type(text).__name__}")
    return base64.b64decode(text, validate=True)


def _int(value: Any) -> int:
    # The gateway renders int64 fields as JSON strings and omits zero values.
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def prefix_end(prefix: Bytesish) -> bytes:
    """Return the ``range_end`` that makes a range cover every key starting with ``prefix``.

    That is ``prefix`` with its last byte below 0xff incremented (and what
    follows dropped); an empty or all-0xff prefix gives ``b"\\0"``, which
    etcd reads as "to the end of the keyspace".
    """
    raw = bytearray(_b(prefix))
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"


def _range(key: Bytesish, prefix: bool) -> dict[str, str]:
    body = {"key": _b64(key)}
    if prefix:
        body["range_end"] = _b64(prefix_end(key))
    return body


def _kv(raw: Any) -> KeyValue:
    if not isinstance(raw, Mapping):
        raise ValueError("key-value is not an object")
    return KeyValue(
        key=_unb64(raw.get("key")),
        value=_unb64(raw.get("value")),
        create_revision=_int(raw.get("create_revision")),
        mod_revision=_int(raw.get("mod_revision")),
        version=_int(raw.get("version")),
        lease=_int(raw.get("lease")),
    )


def _kvs(raw: Any) -> list[KeyValue]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("kvs is not a list")
    return [_kv(item) for item in raw]


def _revision(answer: Mapping[str, Any]) -> int:
    header = answer.get("header") or {}
    if not isinstance(header, Mapping):
        raise ValueError("header is not an object")
    return _int(header.get("revision"))


# --- transaction builders --------------------------------------------------------------


def compare(
    key: Bytesish,
    target: Literal["version", "create", "mod", "value", "lease"],
    op: Literal["==", "!=", ">", "<"],
    value: int | Bytesish,
) -> dict[str, Any]:
    """Build one compare of a transaction: ``target`` of ``key`` ``op`` ``value``.

    ``target`` is ``"version"``, ``"create"`` (create revision), ``"mod"``
    (mod revision), ``"value"`` or ``"lease"``. A key that does not exist has
    version and create revision 0, so ``compare(k, "create", "==", 0)`` means
    "``k`` is absent". Raises ``ValueError`` for an unknown target or op.
    """
    try:
        target_name = _TARGETS[target]
        result = _RESULTS[op]
    except KeyError:
        raise ValueError(f"bad compare: target {target!r}, op {op!r}") from None
    field = _TARGET_FIELDS[target_name]
    encoded: Any = _b64(value) if target_name == "VALUE" else int(value)  # type: ignore[arg-type]
    return {"key": _b64(key), "target": target_name, "result": result, field: encoded}


def put_op(key: Bytesish, value: Bytesish, *, lease: int = 0) -> dict[str, Any]:
    """Build a put for :meth:`EtcdClient.txn`."""
    body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        body["lease"] = lease
    return {"request_put": body}


def get_op(key: Bytesish, *, prefix: bool = False) -> dict[str, Any]:
    """Build a get (of one key, or every key under a prefix) for :meth:`EtcdClient.txn`."""
    return {"request_range": _range(key, prefix)}


def delete_op(key: Bytesish, *, prefix: bool = False) -> dict[str, Any]:
    """Build a delete (of one key, or every key under a prefix) for :meth:`EtcdClient.txn`."""
    return {"request_delete_range": _range(key, prefix)}


def _op_response(raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        raise ValueError("transaction response is not an object")
    if "response_range" in raw:
        return _kvs((raw["response_range"] or {}).get("kvs"))
    if "response_delete_range" in raw:
        return _int((raw["response_delete_range"] or {}).get("deleted"))
    return None


# --- the client ------------------------------------------------------------------------


class EtcdClient:
    """A connection pool to one etcd cluster, reached through its JSON gateway.

    ``endpoints`` is one URL or a list (``"http://127.0.0.1:2379"``); the
    client tries them in order and sticks to the first that answers.
    ``timeout`` bounds every HTTP exchange, connect included. Use it as an
    async context manager, or call :meth:`aclose` when done.
    """

    def __init__(self, endpoints: str | Sequence[str] = "http://127.0.0.1:2379", *, timeout: float = 5.0) -> None:
        urls = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not urls:
            raise ValueError("EtcdClient needs at least one endpoint")
        self.endpoints: tuple[str, ...] = tuple(url.rstrip("/") for url in urls)
        self.timeout = timeout
        self._current = 0
        # trust_env=False: etcd is infrastructure on the cluster's own network;
        # a proxy from the environment would only add a way to fail.
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout), trust_env=False)

    async def aclose(self) -> None:
        """Close the connections; the client cannot be used afterwards."""
        await self._http.aclose()

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<EtcdClient {', '.join(self.endpoints)}>"

    # -- plumbing --

    def _order(self) -> list[int]:
        n = len(self.endpoints)
        return [(self._current + i) % n for i in range(n)]

    async def _call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path`` on the first endpoint that answers; return the JSON object."""
        last: Exception | None = None
        kind = "unreachable"
        for index in self._order():
            url = self.endpoints[index] + path
            try:
                response = await self._http.post(url, json=body)
            except httpx.TimeoutException as exc:
                last, kind = exc, "timeout"
                continue
            except httpx.TransportError as exc:
                last = exc
                continue
            self._current = index
            return _answer(response, path)
        where = ", ".join(self.endpoints)
        reason = f"no answer within {self.timeout}s" if kind == "timeout" else _reason(last)
        raise EtcdError(f"etcd {path} failed: {reason} ({where})", kind=kind) from last

    # -- keys --

    async def get(self, key: Bytesish) -> KeyValue | None:
        """Return the key's current :class:`KeyValue`, or ``None`` if it does not exist."""
        answer = await self._call("/v3/kv/range", _range(key, False))
        kvs = _parse(lambda: _kvs(answer.get("kvs")), "range")
        return kvs[0] if kvs else None

    async def get_prefix(self, prefix: Bytesish) -> tuple[list[KeyValue], int]:
        """Return every key under ``prefix`` (sorted by key) and the store's revision.

        Start a :meth:`watch` at ``revision + 1`` to follow the prefix from
        exactly this snapshot on.
        """
        answer = await self._call("/v3/kv/range", _range(prefix, True))
        return _parse(lambda: (_kvs(answer.get("kvs")), _revision(answer)), "range")

    async def put(self, key: Bytesish, value: Bytesish, *, lease: int = 0) -> int:
        """Set ``key`` to ``value`` (attached to ``lease`` if non-zero); return the new revision.

        Raises :class:`EtcdError` with ``code`` 5 if the lease does not exist.
        """
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = lease
        answer = await self._call("/v3/kv/put", body)
        return _parse(lambda: _revision(answer), "put")

    async def delete(self, key: Bytesish) -> int:
        """Delete ``key``; return how many keys were deleted (0 or 1)."""
        answer = await self._call("/v3/kv/deleterange", _range(key, False))
        return _parse(lambda: _int(answer.get("deleted")), "deleterange")

    async def delete_prefix(self, prefix: Bytesish) -> int:
        """Delete every key under ``prefix``; return how many were deleted."""
        answer = await self._call("/v3/kv/deleterange", _range(prefix, True))
        return _parse(lambda: _int(answer.get("deleted")), "deleterange")

    # -- transactions --

    async def txn(
        self,
        compares: Sequence[Mapping[str, Any]],
        success: Sequence[Mapping[str, Any]],
        failure: Sequence[Mapping[str, Any]] = (),
    ) -> TxnResult:
        """Run a transaction: if every compare holds, run ``success``, else ``failure``.

        Build the parts with :func:`compare`, :func:`put_op`, :func:`get_op`
        and :func:`delete_op`. The whole transaction is atomic.
        """
        body = {"compare": list(compares), "success": list(success), "failure": list(failure)}
        answer = await self._call("/v3/kv/txn", body)

        def parse() -> TxnResult:
            responses = answer.get("responses") or []
            if not isinstance(responses, list):
                raise ValueError("responses is not a list")
            return TxnResult(
                succeeded=bool(answer.get("succeeded", False)),
                revision=_revision(answer),
                responses=tuple(_op_response(r) for r in responses),
            )

        return _parse(parse, "txn")

    async def create(self, key: Bytesish, value: Bytesish, *, lease: int = 0) -> bool:
        """Put ``key`` only if it does not exist yet; return whether it was created.

        The building block of a cluster-wide name claim: of many nodes racing
        to create the same key, exactly one gets ``True``.
        """
        result = await self.txn([compare(key, "create", "==", 0)], [put_op(key, value, lease=lease)])
        return result.succeeded

    # -- leases --

    async def lease_grant(self, ttl: int) -> Lease:
        """Grant a lease of ``ttl`` seconds (etcd may round a small TTL up)."""
        answer = await self._call("/v3/lease/grant", {"TTL": int(ttl)})
        if answer.get("error"):
            raise EtcdError(f"etcd refused a lease: {answer['error']}", kind="refused")
        return _parse(lambda: Lease(id=_int(answer.get("ID")), ttl=_int(answer.get("TTL"))), "lease grant")

    async def lease_keepalive(self, lease_id: int) -> int:
        """Renew the lease once; return its TTL in seconds, or 0 if it has expired or never existed."""
        answer = await self._call("/v3/lease/keepalive", {"ID": lease_id})
        # The gateway streams keep-alives: one request object yields one
        # {"result": {...}} object. An unknown lease comes back with no TTL.
        result = answer.get("result", answer)
        if not isinstance(result, Mapping):
            raise EtcdError("etcd lease keepalive: malformed answer", kind="malformed")
        return _parse(lambda: _int(result.get("TTL")), "lease keepalive")

    async def lease_revoke(self, lease_id: int) -> bool:
        """Revoke the lease, deleting its keys now; return ``False`` if it did not exist."""
        try:
            await self._call("/v3/lease/revoke", {"ID": lease_id})
        except EtcdError as exc:
            if exc.code == 5:  # NOT_FOUND: already expired or revoked
                return False
            raise
        return True

    # -- watches --

    def watch(
        self,
        key: Bytesish,
        *,
        prefix: bool = False,
        start_revision: int | None = None,
        idle_timeout: float | None = 60.0,
    ) -> Watch:
        """Follow the changes of ``key`` (or every key under it with ``prefix=True``).

        Returns a :class:`Watch`: use it as ``async with client.watch(...) as w:
        async for event in w: ...``. ``start_revision`` replays history from
        that revision (e.g. one past :meth:`get_prefix`'s revision), so no
        change is missed between a read and the watch.

        The iteration ends quietly when nothing arrives for ``idle_timeout``
        seconds, when etcd ends the stream, or when the start revision has
        been compacted away (:attr:`Watch.compacted` then holds the oldest
        revision still available): in each case, read again and re-watch.
        Errors raise :class:`EtcdError`.
        """
        body: dict[str, Any] = dict(_range(key, prefix))
        if start_revision:
            body["start_revision"] = start_revision
        return Watch(self, {"create_request": body}, idle_timeout)


class Watch:
    """A running watch, from :meth:`EtcdClient.watch`; iterate it for :class:`WatchEvent` items."""

    def __init__(self, client: EtcdClient, body: Mapping[str, Any], idle_timeout: float | None) -> None:
        self._client = client
        self._body = body
        self._idle_timeout = idle_timeout
        self._response: httpx.Response | None = None
        self._url = ""
        #: The oldest revision still available, if the watch was cancelled by compaction.
        self.compacted: int | None = None

    async def __aenter__(self) -> Watch:
        client = self._client
        timeout = httpx.Timeout(client.timeout, read=self._idle_timeout)
        last: Exception | None = None
        for index in client._order():
            self._url = client.endpoints[index] + "/v3/watch"
            request = client._http.build_request("POST", self._url, json=self._body, timeout=timeout)
            try:
                response = await client._http.send(request, stream=True)
            except httpx.TransportError as exc:
                last = exc
                continue
            if response.status_code != 200:
                await response.aread()
                await response.aclose()
                _answer(response, "/v3/watch")  # raises with etcd's message
            client._current = index
            self._response = response
            return self
        raise EtcdError(
            f"etcd /v3/watch failed: {_reason(last)} ({', '.join(client.endpoints)})", kind="unreachable"
        ) from last

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the watch."""
        if self._response is not None:
            await self._response.aclose()
            self._response = None

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[WatchEvent]:
        if self._response is None:
            raise RuntimeError("use 'async with client.watch(...)' before iterating")
        decoder = json.JSONDecoder()
        buffer = ""
        try:
            async for chunk in self._response.aiter_text():
                buffer += chunk
                while True:
                    buffer = buffer.lstrip()
                    if not buffer:
                        break
                    try:
                        message, end = decoder.raw_decode(buffer)
                    except ValueError:
                        if len(buffer) > _MAX_MESSAGE:
                            raise EtcdError(f"etcd watch at {self._url}: unparsable stream", kind="malformed") from None
                        break  # an incomplete object: wait for more
                    buffer = buffer[end:]
                    events, done = self._decode(message)
                    for event in events:
                        yield event
                    if done:
                        return
        except httpx.ReadTimeout:
            return  # idle: the caller re-reads and re-watches
        except httpx.TransportError as exc:
            raise EtcdError(f"etcd watch at {self._url} broke: {_reason(exc)}", kind="unreachable") from exc

    def _decode(self, message: Any) -> tuple[list[WatchEvent], bool]:
        """Turn one gateway message into events; the flag says the watch is over."""
        if not isinstance(message, Mapping):
            raise EtcdError(f"etcd watch at {self._url}: malformed message", kind="malformed")
        if "error" in message:
            error = message["error"]
            text = error.get("message", error) if isinstance(error, Mapping) else error
            raise EtcdError(f"etcd watch at {self._url} failed: {text}", kind="refused")
        result = message.get("result")
        if not isinstance(result, Mapping):
            raise EtcdError(f"etcd watch at {self._url}: malformed message", kind="malformed")
        if result.get("canceled"):
            compact = _parse(lambda: _int(result.get("compact_revision")), "watch")
            if compact:
                self.compacted = compact
                return [], True
            reason = result.get("cancel_reason") or "cancelled by etcd"
            raise EtcdError(f"etcd watch at {self._url}: {reason}", kind="refused")

        def parse() -> list[WatchEvent]:
            events = []
            for raw in result.get("events") or []:
                kind: Literal["put", "delete"] = "delete" if raw.get("type") == "DELETE" else "put"
                events.append(WatchEvent(kind, _kv(raw.get("kv"))))
            return events

        return _parse(parse, "watch"), False


# --- helpers ---------------------------------------------------------------------------


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "no endpoint answered"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _answer(response: httpx.Response, path: str) -> dict[str, Any]:
    """Decode a gateway answer, raising :class:`EtcdError` for errors and garbage."""
    where = str(response.request.url) if response.request else path
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400 or (isinstance(data, Mapping) and "code" in data and "error" in data):
        if isinstance(data, Mapping):
            message = data.get("message") or data.get("error") or response.reason_phrase
            code = data.get("code")
            raise EtcdError(
                f"etcd {path} refused: {message}",
                kind="refused",
                code=code if isinstance(code, int) else None,
                status=response.status_code,
            )
        raise EtcdError(
            f"etcd {path} answered HTTP {response.status_code} at {where}",
            kind="refused",
            status=response.status_code,
        )
    if not isinstance(data, dict):
        raise EtcdError(f"etcd {path} at {where}: answer is not a JSON object", kind="malformed")
    return data


def _parse(fn: Callable[[], T], what: str) -> T:
    try:
        return fn()
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise EtcdError(f"etcd {what}: malformed answer ({exc})", kind="malformed") from exc
