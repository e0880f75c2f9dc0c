"""pymesh.Global (Erlang's :global): names and locks across real nodes — OS processes on loopback.

The cluster (``services_cluster``) is a private port mapper and three node
subprocesses a, b, c; the test process joins as a hidden driver that only
asks questions (hidden nodes take no part in global names). Partitions are
real: ``Node.set_policy`` cuts the TCP connections and refuses reconnects.
Local behaviour (via-tuples, bad input) runs in-process without a cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from services_cluster import Cluster, ev, eventually, fresh, in_parallel, mesh, pid_src, run

import pymesh
from pymesh import (
    ANY,
    GenServer,
    NoProcess,
    call,
    monitor,
    receive,
    send,
    spawn,
    whereis,
)
from pymesh._errors import BadKey, LockAborted, RegistryError
from pymesh.services import Global
from pymesh.services._global import survivor

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster(["a", "b", "c"])
    try:
        run(lambda: _meshed(c))
        yield c
    finally:
        c.close()


async def _meshed(c: Cluster, names: list[str] | None = None) -> None:
    async with c.driver():
        await mesh(c, names)


async def where_everywhere(c: Cluster, name: Any, nodes: list[str] | None = None) -> list[Any]:
    return [await ev(c[n], f"Global.whereis_name({name!r})") for n in (nodes or list(c.nodes))]


# --- names across nodes ------------------------------------------------------------------------


def test_a_name_is_unique_across_nodes_and_reachable_from_all(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with cluster.driver():
            name = fresh("svc")
            ok, pid = await ev(cluster["a"], f"await sn.register_collector({name!r})")
            assert ok is True and pid.node == cluster["a"]
            # committed everywhere before register_name returned
            assert await where_everywhere(cluster, name) == [pid, pid, pid]
            ok_b, _ = await ev(cluster["b"], f"await sn.register_idle({name!r})")
            assert ok_b is False
            assert await where_everywhere(cluster, name) == [pid, pid, pid]
            # Global.send, ("global", name) and ("via", "global", name) from other nodes
            await ev(cluster["b"], f"Global.send({name!r}, 'one')")
            await ev(cluster["c"], f"send(('global', {name!r}), 'two')")
            await ev(cluster["c"], f"send(('via', 'global', {name!r}), 'three')")
            assert await eventually(
                lambda: ev(cluster["a"], f"COLLECTED[{name!r}] == ['one', 'two', 'three']"), "messages arrived"
            )
            assert name in await ev(cluster["c"], "Global.registered_names()")
            await ev(cluster["c"], f"await Global.unregister_name({name!r})")
            assert await where_everywhere(cluster, name) == [None, None, None]
            assert "NoProcess" in str(await _error(cluster["b"], f"Global.send({name!r}, 'four')"))

    run(scenario)


async def _error(node: str, source: str) -> Any:
    try:
        await ev(node, source)
    except pymesh.RpcError as e:
        return e.reason
    raise AssertionError(f"{source!r} did not raise")


def test_concurrent_registrations_elect_exactly_one(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with cluster.driver():
            for _ in range(5):
                name = fresh("race")
                results = await in_parallel(
                    *(lambda n=n, name=name: ev(cluster[n], f"await sn.register_idle({name!r})") for n in "abc")
                )
                winners = [pid for ok, pid in results if ok]
                assert len(winners) == 1, results
                assert await where_everywhere(cluster, name) == winners * 3

    run(scenario)


def test_a_name_goes_when_its_process_ends(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with cluster.driver():
            name = fresh("mortal")
            ok, pid = await ev(cluster["b"], f"await sn.register_idle({name!r})")
            assert ok
            await ev(cluster["b"], f"exit({pid_src(pid)}, 'kill')")
            await eventually(
                lambda: _all_none(cluster, name), f"{name} unregistered on every node"
            )
            # and can be taken again at once
            ok, _ = await ev(cluster["c"], f"await sn.register_idle({name!r})")
            assert ok

    run(scenario)


async def _all_none(c: Cluster, name: Any) -> bool:
    return await where_everywhere(c, name) == [None] * len(c.nodes)


def test_nodedown_takes_names_away_and_nodeup_brings_them_back(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with cluster.driver():
            name = fresh("remote")
            ok, pid = await ev(cluster["c"], f"await sn.register_idle({name!r})")
            assert ok
            assert await ev(cluster["a"], f"Node.disconnect({cluster['c']!r})") is True
            await eventually(lambda: _where(cluster, "a", name, None), "a forgot c's name")
            assert await _where(cluster, "b", name, pid)
            assert await ev(cluster["a"], f"await Node.connect({cluster['c']!r})") is True
            await eventually(lambda: _where(cluster, "a", name, pid), "a learned c's name again")
            assert await ev(cluster["a"], "await Global.sync()") is True

    run(scenario)


async def _where(c: Cluster, node: str, name: Any, expected: Any) -> bool:
    return await ev(c[node], f"Global.whereis_name({name!r})") == expected


def test_a_new_node_syncs_and_a_killed_node_takes_its_names_along(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with cluster.driver():
            before, mine = fresh("old"), fresh("from-d")
            ok, old_pid = await ev(cluster["a"], f"await sn.register_idle({before!r})")
            assert ok
            cluster.start(["d"])
            try:
                assert await pymesh.Node.connect(cluster["d"])
                assert await ev(cluster["d"], f"await Node.connect({cluster['a']!r})") is True
                await eventually(lambda: _where(cluster, "d", before, old_pid), "d synced the old name")
                await mesh(cluster)  # d's transitive connections to b and c, and their syncs
                ok, d_pid = await ev(cluster["d"], f"await sn.register_idle({mine!r})")
                assert ok and await where_everywhere(cluster, mine) == [d_pid] * 4
            finally:
                cluster.kill("d")
            await eventually(lambda: _all_none(cluster, mine), "d's name gone with d")
            assert await where_everywhere(cluster, before) == [old_pid] * 3

    run(scenario)


# --- partitions and resolvers ---------------------------------------------------------------------


async def partition(c: Cluster, left: list[str], right: list[str]) -> None:
    for side, other in ((left, right), (right, left)):
        banned = {c[n] for n in other}
        for n in side:
            await ev(c[n], f"Node.set_policy(lambda node: node not in {banned!r})")
    for n in left + right:
        others = {c[o] for o in (right if n in left else left)}
        await eventually(
            lambda n=n, others=others: _sees_none(c, n, others), f"{n} cut from {sorted(others)}"
        )


async def _sees_none(c: Cluster, node: str, others: set[str]) -> bool:
    return not (set(await ev(c[node], "Node.list()")) & others)


async def heal(c: Cluster) -> None:
    for n in c.nodes:
        await ev(c[n], "Node.set_policy(None)")
    await mesh(c)


@pytest.mark.parametrize("resolver", ["random_exit", "random_notify", "notify_all", "custom"])
def test_partition_heal_leaves_one_owner_per_resolver(cluster: Cluster, resolver: str) -> None:
    async def scenario() -> None:
        async with cluster.driver():
            name = fresh(f"split-{resolver}")
            await partition(cluster, ["a"], ["b", "c"])
            try:
                if resolver == "custom":
                    register = f"await sn.register_custom({name!r})"
                else:
                    register = f"await sn.register_collector({name!r}, {resolver!r})"
                ok_a, pa = await ev(cluster["a"], register)
                ok_b, pb = await ev(cluster["b"], register)
                assert ok_a and ok_b, "each side of the partition takes the name"
                assert await ev(cluster["c"], f"Global.whereis_name({name!r})") == pb
            finally:
                await heal(cluster)
            if resolver in ("random_exit", "random_notify"):
                winner = survivor(pa, pb)
            elif resolver == "custom":
                winner = min(pa, pb)  # keep_first keeps the pid that sorts first
            else:
                winner = None
            loser = pb if winner == pa else pa
            await eventually(
                lambda: _agree(cluster, name, winner), f"every node has {name} -> {winner}"
            )
            alive = {p: await ev(p.node, f"sn.alive({pid_src(p)})") for p in (pa, pb)}
            if resolver in ("random_exit", "custom"):
                assert alive == {winner: True, loser: False}, "exactly one live process"
            else:
                assert alive == {pa: True, pb: True}, "notify resolvers kill nobody"
            if resolver == "random_notify":
                box = await eventually(lambda: ev(loser.node, f"COLLECTED.get({name!r})"), "the loser told")
                assert box == [("global_name_conflict", name)]
                assert await ev(winner.node, f"COLLECTED.get({name!r}, [])") == []
            if resolver == "notify_all":
                for me, other in ((pa, pb), (pb, pa)):
                    box = await eventually(lambda me=me: ev(me.node, f"COLLECTED.get({name!r})"), f"{me} told")
                    assert box == [("global_name_conflict", name, other)]

    run(scenario, timeout=45)


async def _agree(c: Cluster, name: Any, expected: Any) -> bool:
    return await where_everywhere(c, name) == [expected] * len(c.nodes)


# --- locks -------------------------------------------------------------------------------------------


def test_locks_are_exclusive_cluster_wide_and_die_with_their_holder(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with cluster.driver():
            lock = fresh("lock")
            holder = await ev(cluster["a"], f"await sn.hold_lock({lock!r}, 60)")
            assert await ev(cluster["b"], f"await Global.set_lock({lock!r}, retries=0)") is False
            assert await ev(cluster["c"], f"await Global.set_lock({lock!r}, retries=3)") is False
            reason = await _error(cluster["c"], f"await Global.trans({lock!r}, lambda: 1, retries=1)")
            assert "LockAborted" in str(reason)
            # a's lock was taken on every node, b's own copy included
            assert await ev(cluster["b"], f"await Global.set_lock({lock!r}, nodes=[Node.self()], retries=0)") is False
            await ev(cluster["a"], f"exit({pid_src(holder)}, 'kill')")
            assert await eventually(
                lambda: ev(cluster["b"], f"await sn.hold_lock({lock!r}, 0.2) and True"), "the lock is free again"
            )
            assert await ev(cluster["c"], f"await Global.trans({lock + '-t'!r}, lambda: 42)") == 42
            assert await ev(cluster["c"], f"await Global.trans({lock + '-t'!r}, lambda: asyncio.sleep(0, 'x'))") == "x"

    run(scenario)


# --- on one node ----------------------------------------------------------------------------------------


class Echo(GenServer):
    async def handle_call(self, request: Any, frm: Any) -> Any:
        return ("echo", request)


class Named(GenServer):
    """A server that takes a global name in init itself."""

    async def init(self, name: Any) -> None:
        if not await Global.register_name(name, self.pid):
            raise RuntimeError(f"{name!r} is taken")

    async def handle_call(self, request: Any, frm: Any) -> Any:
        return ("echo", request)


def test_global_via_tuples_on_one_node() -> None:
    async def scenario() -> None:
        name = fresh("server")
        pid = await Named.start(name)
        assert Global.whereis_name(name) == pid
        assert whereis(("global", name)) == pid == whereis(("via", "global", name))
        assert await call(("global", name), "hi") == ("echo", "hi")
        assert await call(("via", "global", name), "ho") == ("echo", "ho")
        assert Global.send(name, ("$gen_cast", "x")) == pid
        ref = monitor(("global", name))
        send(("global", name), "stray message")
        pymesh.exit(pid, "kill")
        assert (await receive(("DOWN", ref, ANY, ANY, ANY), timeout=1))[4] == "killed"
        assert Global.whereis_name(name) is None and name not in Global.registered_names()
        with pytest.raises(NoProcess):
            send(("global", name), "late")
        with pytest.raises(NoProcess):
            Global.send(name, "late")
        # a server started under a global name is registered cluster-wide before start returns
        for form in (("global", name), ("via", "global", name)):
            pid2 = await Echo.start(name=form)
            assert Global.whereis_name(name) == pid2
            assert await call(form, "again") == ("echo", "again")
            with pytest.raises(pymesh.SpawnError, match="already registered"):
                await Echo.start(name=form)  # taken: the second start fails
            pymesh.exit(pid2, "kill")
            await eventually(lambda: Global.whereis_name(name) is None, "name freed")

    run(scenario)


def test_bad_input() -> None:
    async def scenario() -> None:
        me = pymesh.self()
        for bad in ([1], {"a": 1}, ("x", [2])):
            with pytest.raises(BadKey) as info:
                await Global.register_name(bad, me)
            assert isinstance(info.value, TypeError) and info.value.key == bad
            with pytest.raises(BadKey):
                Global.whereis_name(bad)
            with pytest.raises(BadKey):
                await Global.set_lock(bad)
        with pytest.raises(BadKey, match="encodable"):
            await Global.register_name(("x", object()), me)
        with pytest.raises(RegistryError):
            await Global.register_name("x", me, resolve="random_everything")
        with pytest.raises(pymesh.BadName):
            await Global.register_name("x", "not a pid")  # type: ignore[arg-type]
        # a dead local pid is refused; a name can be taken once
        dead = spawn(_noop)
        await asyncio.sleep(0.01)
        assert await Global.register_name(fresh("dead"), dead) is False
        name = fresh("once")
        assert await Global.register_name(name, me) is True
        assert await Global.register_name(name, me) is False
        await Global.unregister_name(name)
        assert await Global.register_name(name, me) is True
        await Global.unregister_name(name)
        # locks on one node: reentrant for the holder, exclusive for others
        assert await Global.set_lock("L") and await Global.set_lock("L", retries=0)
        other: list[bool] = []

        async def contender() -> None:
            other.append(await Global.set_lock("L", retries=0))

        spawn(contender)
        await asyncio.sleep(0.01)
        assert other == [False]
        Global.del_lock("L")
        assert await Global.trans("L", lambda: "done", retries=0) == "done"
        with pytest.raises(LockAborted):
            holder = spawn(_hold, "M")
            await asyncio.sleep(0.01)
            try:
                await Global.trans("M", lambda: None, retries=1)
            finally:
                pymesh.exit(holder, "kill")

    run(scenario)


async def _noop() -> None:
    return None


async def _hold(lock: Any) -> None:
    await Global.set_lock(lock)
    await receive("never sent")
