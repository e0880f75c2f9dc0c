"""EtcdRegistry: strongly consistent (linearizable) unique names, kept in etcd.

For the names that must never be held twice — a leader, a singleton job, a
lock-like role — even across partitions. Each node runs the registry (same
name, same etcd); each name is an etcd key tied to a *lease* that the node
keeps alive::

    await EtcdRegistry.start("roles", "http://127.0.0.1:2379", ttl=5)
    await EtcdRegistry.register("roles", "leader", {"since": time.time()})   # the calling process
    await EtcdRegistry.lookup("roles", "leader")      # [(pid, value)], read from etcd

Guarantees and their price
--------------------------
* ``register`` is a compare-and-set in etcd (a transaction: create the key
  only if its create revision is 0), so of any number of processes racing
  for a name on any nodes exactly one wins; the others get
  :class:`~pymesh.AlreadyRegistered` naming the holder.
* Every operation is a round trip to etcd's quorum (no local cache): reads
  see every write that finished before them.
* A name is released when its process exits (the key is deleted, guarded by
  its create revision so a newer holder is never touched), when the registry
  stops (its lease is revoked), or when its node dies or loses etcd: the
  lease is no longer kept alive and etcd deletes the keys after ``ttl``
  seconds. Until then the name stays taken — that is the window during which
  a dead node's names are still held.
* A node cut off from etcd (the minority side of a partition) cannot take
  any name: its operations fail. Its own names expire after ``ttl``; so that
  two processes never *believe* they hold one name, a node whose lease was
  not renewed for two thirds of ``ttl`` (or turns out expired) sends each of
  its holders the exit signal ``("name_lost", key)`` — before etcd can give
  the name to anyone else — and starts over with a new lease once etcd
  answers again.
* etcd unreachable or silent: every operation raises
  :class:`~pymesh.EtcdError` (a :class:`~pymesh.PymeshError`) within
  ``timeout`` seconds per endpoint; nothing hangs.

Keys live under ``{prefix}{registry name}/``: a ``str`` key as ``s:KEY``,
any other term as ``t:`` and its URL-safe base64 encoding. Values are encoded
terms of ``(pid, value)``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import (
    AlreadyRegistered,
    EncodeError,
    EtcdError,
    RegistryError,
    UnknownRegistry,
)
from ..runtime import _process as P
from ..runtime._genserver import GenServer
from ..runtime._supervisor import ChildSpec
from ..wire import _terms
from ..wire._types import Pid
from ._common import check_key
from ._registry import _clauses

if TYPE_CHECKING:
    from ._etcd import EtcdClient

# ._etcd (and httpx under it) is imported on first use, so ``import pymesh`` stays light.

__all__ = ["EtcdRegistry", "EtcdRegistryStats"]

log = logging.getLogger("pymesh.etcd_registry")


@dataclass(frozen=True, slots=True)
class EtcdRegistryStats:
    """A snapshot of one node's side of an etcd registry."""

    name: Any
    endpoints: tuple[str, ...]
    lease: int | None
    local_names: int
    pending_releases: int
    owner: Pid


def _encode_key(key: Any) -> str:
    if type(key) is str:
        return "s:" + key
    return "t:" + base64.urlsafe_b64encode(_terms.encode(key)).decode("ascii")


def _decode_key(text: str) -> Any:
    if text.startswith("s:"):
        return text[2:]
    if text.startswith("t:"):
        return _terms.decode(base64.urlsafe_b64decode(text[2:].encode("ascii")))
    raise ValueError(f"not a registry key: {text!r}")


class _Table:
    """This node's side of one etcd registry: the client, the lease, the names held here."""

    def __init__(self, name: Any, owner: Pid, client: EtcdClient, prefix: str, ttl: int) -> None:
        self.name = name
        self.owner = owner
        self.client = client
        self.base = f"{prefix}{name}/" if type(name) is str else f"{prefix}{_encode_key(name)}/"
        self.ttl = ttl
        self.lease: int | None = None
        self.renewed = 0.0  # monotonic time of the last successful grant or keep-alive
        #: key -> (pid, create revision) of the names held by processes of this node
        self.held: dict[Any, tuple[Pid, int]] = {}
        self.by_pid: dict[Pid, set[Any]] = {}
        #: (etcd key, create revision) releases that failed and are retried
        self.pending: list[tuple[str, int]] = []
        self.closed = False

    def etcd_key(self, key: Any) -> str:
        return self.base + _encode_key(key)

    # --- the lease --------------------------------------------------------------------------

    async def grant(self) -> int:
        sent = time.monotonic()
        lease = await self.client.lease_grant(self.ttl)
        self.lease, self.renewed = lease.id, sent
        return lease.id

    async def keep_alive(self) -> None:
        """One renewal round: keep the lease, retry releases; a lost lease loses the names.

        ``renewed`` is when the last successful renewal was *sent* — never later
        than etcd restarted the lease's countdown — and the names count as
        lost once two thirds of the TTL have passed since: by then a renewal
        may no longer reach etcd in time, and another node may take them.
        """
        if self.lease is None:
            await self.grant()
        else:
            sent = time.monotonic()
            try:
                ttl = await self.client.lease_keepalive(self.lease)
            except EtcdError:
                if time.monotonic() - self.renewed >= self.ttl * 2 / 3:
                    self.lose_all("the lease could not be renewed in time")
                raise
            if ttl <= 0:
                self.lose_all("the lease expired")
                await self.grant()
            else:
                self.renewed = sent
        from ._etcd import compare, delete_op

        for item in list(self.pending):
            await self.client.txn([compare(item[0], "create", "==", item[1])], [delete_op(item[0])])
            self.pending.remove(item)

    def lose_all(self, why: str) -> None:
        """The lease is gone (or may be): every name held here may be someone else's now."""
        self.lease = None
        held, self.held = self.held, {}
        self.by_pid.clear()
        for key, (pid, _) in held.items():
            log.warning("etcd registry %r: %r lost %r: %s", self.name, pid, key, why)
            P.remove_exit_hook(pid, self.exited)
            P.signal_exit(pid, self.owner, ("name_lost", key), False)

    # --- names ----------------------------------------------------------------------------------

    async def claim(self, key: Any, ekey: str, pid: Pid, data: bytes) -> None:
        """The compare-and-create; runs to its end even if the caller is cancelled."""
        from ._etcd import compare, get_op, put_op

        if self.lease is None:
            raise EtcdError(f"etcd registry {self.name!r} has no lease (etcd unreachable?)", kind="unreachable")
        result = await self.client.txn(
            [compare(ekey, "create", "==", 0)], [put_op(ekey, data, lease=self.lease)], [get_op(ekey)]
        )
        if not result.succeeded:
            kvs = result.responses[0] if result.responses else []
            holder = None
            if kvs:
                try:
                    holder = _terms.decode(kvs[0].value)[0]
                except Exception:  # a value not written by us: the name is still taken
                    holder = None
            raise AlreadyRegistered(key, holder)
        revision = result.revision  # the transaction's revision: the key's create revision
        if self.closed or P._local_live(pid) is None:
            # the claimant ended (or we stopped) meanwhile: nothing may stay half-registered
            await self.release(ekey, revision)
            raise EtcdError(f"{pid!r} ended before its claim of {key!r} completed", kind="refused")
        keys = self.by_pid.get(pid)
        if keys is None:
            keys = self.by_pid[pid] = set()
            P.add_exit_hook(pid, self.exited)
        keys.add(key)
        self.held[key] = (pid, revision)

    async def release(self, ekey: str, revision: int) -> None:
        from ._etcd import compare, delete_op

        try:
            await self.client.txn([compare(ekey, "create", "==", revision)], [delete_op(ekey)])
        except EtcdError:
            self.pending.append((ekey, revision))
            raise

    def forget(self, key: Any) -> tuple[Pid, int] | None:
        entry = self.held.pop(key, None)
        if entry is not None:
            keys = self.by_pid.get(entry[0])
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_pid[entry[0]]
                    P.remove_exit_hook(entry[0], self.exited)
        return entry

    def exited(self, pid: Pid, reason: Any) -> None:
        keys = self.by_pid.pop(pid, set())
        for key in keys:
            entry = self.held.pop(key, None)
            if entry is not None and not self.closed:
                asyncio.get_running_loop().create_task(self._release_quietly(self.etcd_key(key), entry[1]))

    async def _release_quietly(self, ekey: str, revision: int) -> None:
        try:
            await self.release(ekey, revision)
        except EtcdError as e:
            log.info("etcd registry %r: release of %s deferred: %s", self.name, ekey, e)

    def decode(self, kv: Any) -> tuple[Any, Pid, Any] | None:
        try:
            key = _decode_key(kv.key.decode()[len(self.base):])
            pid, value = _terms.decode(kv.value)
        except Exception:
            return None
        return (key, pid, value) if type(pid) is Pid else None


_tables: dict[Any, _Table] = {}


def _get(reg: Any) -> _Table:
    try:
        return _tables[reg]
    except (KeyError, TypeError):
        raise UnknownRegistry(reg) from None


class _Server(GenServer):
    """The owner process: grants the lease, keeps it alive, revokes it on the way out."""

    trap_exit = True

    async def init(self, name: Any, endpoints: Sequence[str], opts: dict[str, Any]) -> None:  # type: ignore[override]
        from ._etcd import EtcdClient

        P.process_flag("label", f"EtcdRegistry {name!r}")
        client = EtcdClient(list(endpoints), timeout=opts["timeout"])
        table = _Table(name, self.pid, client, opts["prefix"], opts["ttl"])
        try:
            await table.grant()
        except BaseException:
            await client.aclose()
            raise
        _tables[name] = table
        self.table = table
        P.add_exit_hook(self.pid, lambda pid, reason: self._closed())
        P.send(self.pid, ("$keepalive",))

    async def handle_info(self, msg: Any) -> None:
        if msg == ("$keepalive",):
            table = self.table
            try:
                await table.keep_alive()
            except EtcdError as e:
                log.info("etcd registry %r: keep-alive failed: %s", table.name, e)
            # a third of the TTL: two renewals may fail before the lease is at risk
            asyncio.get_running_loop().call_later(max(table.ttl / 3, 0.2), P.send, self.pid, ("$keepalive",))
        elif msg == ("$stop",):
            raise P.Exit("normal")

    async def terminate(self, reason: Any) -> None:
        table = getattr(self, "table", None)
        if table is None:
            return
        self._closed()
        if table.lease is not None and P.current().alive:
            try:
                await table.client.lease_revoke(table.lease)  # releases every name at once
            except EtcdError as e:
                log.info("etcd registry %r: revoke failed (the lease will expire): %s", table.name, e)
        await table.client.aclose()

    def _closed(self) -> None:
        table = self.table
        table.closed = True
        for pid in list(table.by_pid):
            P.remove_exit_hook(pid, table.exited)
        if _tables.get(table.name) is table:
            del _tables[table.name]


class EtcdRegistry:
    """Unique names held in etcd; see the module docstring for the guarantees.

    Every operation is a round trip to etcd, hence ``async``; each takes the
    registry's name first and raises :class:`~pymesh.UnknownRegistry` when no
    registry of that name runs on this node, and :class:`~pymesh.EtcdError`
    when etcd does not answer in time.
    """

    @staticmethod
    async def start(
        name: Any,
        endpoints: str | Sequence[str] = "http://127.0.0.1:2379",
        *,
        ttl: int = 5,
        prefix: str = "pymesh/names/",
        timeout: float = 2.0,
        link: bool = False,
    ) -> Pid:
        """Start the registry ``name`` on this node against etcd at ``endpoints``.

        ``ttl`` (seconds, ≥ 2) is how long a dead node's names stay taken;
        ``timeout`` bounds every request to etcd. Returns the owner process's
        pid. Raises :class:`~pymesh.AlreadyRegistered` when a registry of that
        name runs here, :class:`~pymesh.RegistryError` for a bad option, and
        :class:`~pymesh.SpawnError` (the :class:`~pymesh.EtcdError` as its
        cause) when etcd cannot grant a lease.
        """
        check_key(name, "registry name")
        existing = _tables.get(name)
        if existing is not None:
            raise AlreadyRegistered(name, existing.owner)
        if type(ttl) is not int or ttl < 2:
            raise RegistryError(f"ttl must be an int of at least 2 seconds, not {ttl!r}")
        if timeout <= 0:
            raise RegistryError(f"timeout must be positive, not {timeout!r}")
        urls = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        opts = {"ttl": ttl, "prefix": prefix, "timeout": timeout}
        start_timeout = timeout * len(urls) + 5.0
        return await _Server.start(name, urls, opts, link=link, timeout=start_timeout)

    @staticmethod
    async def start_link(name: Any, endpoints: str | Sequence[str] = "http://127.0.0.1:2379", **opts: Any) -> Pid:
        """:meth:`start`, linked to the caller (what a supervisor calls)."""
        return await EtcdRegistry.start(name, endpoints, link=True, **opts)

    @staticmethod
    def child_spec(name: Any, endpoints: str | Sequence[str] = "http://127.0.0.1:2379", **opts: Any) -> ChildSpec:
        """A :class:`~pymesh.ChildSpec` running this registry under a supervisor."""
        return ChildSpec(("EtcdRegistry", name), (_start_link_opts, (name, endpoints, opts)), type="supervisor")

    @staticmethod
    def stop(reg: Any) -> None:
        """Stop the registry here: its lease is revoked, releasing this node's names."""
        P.send(_get(reg).owner, ("$stop",))

    # --- names -----------------------------------------------------------------------------------

    @staticmethod
    async def register(reg: Any, key: Any, value: Any = None) -> Pid:
        """Claim ``key`` for the calling process, in etcd; return the registry's owner pid.

        Raises :class:`~pymesh.AlreadyRegistered` (``e.pid`` the holder) when
        any process of any node holds it, :class:`~pymesh.BadKey` /
        :class:`~pymesh.EncodeError` for a key or value that cannot be
        stored, and :class:`~pymesh.EtcdError` when etcd does not answer.
        """
        table = _get(reg)
        check_key(key)
        pid = P.self()
        try:
            data = _terms.encode((pid, value))
        except EncodeError as e:
            raise EncodeError(f"cannot register {key!r}: {e}") from None
        if key in table.held:
            raise AlreadyRegistered(key, table.held[key][0])
        # shielded: a caller cancelled mid-claim must not leave a claim with no exit hook
        task = asyncio.get_running_loop().create_task(table.claim(key, table.etcd_key(key), pid, data))
        await asyncio.shield(task)
        return table.owner

    @staticmethod
    async def unregister(reg: Any, key: Any) -> None:
        """Release the calling process's claim of ``key`` (no error when it holds none)."""
        table = _get(reg)
        entry = table.held.get(key)
        if entry is None or entry[0] != P.self():
            return
        table.forget(key)
        await table.release(table.etcd_key(key), entry[1])

    @staticmethod
    async def lookup(reg: Any, key: Any) -> list[tuple[Pid, Any]]:
        """``[(pid, value)]`` of the holder of ``key``, read from etcd; ``[]`` when free."""
        table = _get(reg)
        check_key(key)
        kv = await table.client.get(table.etcd_key(key))
        entry = table.decode(kv) if kv is not None else None
        return [(entry[1], entry[2])] if entry is not None else []

    @staticmethod
    async def whereis(reg: Any, key: Any) -> Pid | None:
        """The holder of ``key``, or None."""
        found = await EtcdRegistry.lookup(reg, key)
        return found[0][0] if found else None

    @staticmethod
    async def select(reg: Any, spec: list[tuple[Any, ...]]) -> list[Any]:
        """``spec``'s ``(pattern, guard, output)`` clauses over every ``(key, pid, value)``,
        as :meth:`Registry.select <pymesh.Registry.select>`; one range read."""
        table = _get(reg)
        clauses = _clauses(spec)
        kvs, _ = await table.client.get_prefix(table.base)
        out = []
        for kv in kvs:
            entry = table.decode(kv)
            if entry is None:
                continue
            for pred, output in clauses:
                if pred(entry):
                    out.append(entry if output is None else output(entry))
                    break
        return out

    @staticmethod
    async def count(reg: Any) -> int:
        """How many names the registry holds, cluster-wide."""
        table = _get(reg)
        kvs, _ = await table.client.get_prefix(table.base)
        return len(kvs)

    @staticmethod
    def keys(reg: Any, pid: Pid) -> list[Any]:
        """The keys a process *of this node* holds (no round trip)."""
        return sorted(_get(reg).by_pid.get(pid, ()), key=repr)

    @staticmethod
    def statistics(reg: Any) -> EtcdRegistryStats:
        t = _get(reg)
        return EtcdRegistryStats(
            name=t.name,
            endpoints=t.client.endpoints,
            lease=t.lease,
            local_names=len(t.held),
            pending_releases=len(t.pending),
            owner=t.owner,
        )

    @staticmethod
    def which() -> list[Any]:
        """The names of the etcd registries running on this node."""
        return list(_tables)


async def _start_link_opts(name: Any, endpoints: Any, opts: dict[str, Any]) -> Pid:
    return await EtcdRegistry.start(name, endpoints, link=True, **opts)

