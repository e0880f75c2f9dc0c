"""EtcdRegistry against a real etcd (Debian's etcd-server) on loopback, with real OS-process nodes.

Names are exclusive cluster-wide, released on process exit and (after the
lease's TTL) on node death; a node cut off from etcd cannot take a name and
loses its own before anyone else can take them; nothing hangs when etcd is
unreachable or silent. etcd missing: skipped locally, a failure under CI=true.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from support.cluster import Cluster, cluster, epmd, eventually, local_node, run  # noqa: F401
from support.etcd_server import Etcd, etcd  # noqa: F401

import pymesh
from pymesh import AlreadyRegistered, Node, rpc_call
from pymesh._errors import EtcdError, RegistryError
from pymesh.services._etcd import EtcdClient
from pymesh.services._etcd_registry import EtcdRegistry

pytestmark = pytest.mark.timeout(90)

E = "support.etcd_node"
R = "support.distreg_node"
P = "support.tcp_proxy"


async def connected(cluster: Cluster, count: int) -> list[str]:
    nodes = cluster.start(count)
    for n in nodes:
        assert await Node.connect(n, timeout=5)
    return nodes


def test_a_name_is_exclusive_across_nodes_and_freed_when_its_process_exits(cluster: Cluster, etcd: Etcd) -> None:
    async def scenario() -> None:
        async with local_node(cluster):
            nodes = await connected(cluster, 2)
            for n in nodes:
                await rpc_call(n, f"{E}:start", "names1", etcd.url)
            # many processes on both nodes race for one name: exactly one wins
            results = [*await rpc_call(nodes[0], f"{E}:race", "names1", "leader", 5),
                       *await rpc_call(nodes[1], f"{E}:race", "names1", "leader", 5)]
            winners = [r for r in results if type(r) is pymesh.Pid]
            assert len(winners) == 1, results
            (winner,) = winners
            assert all(r == ("taken", winner) for r in results if r is not winner), results
            assert await rpc_call(nodes[1], f"{E}:whereis", "names1", "leader") == winner
            # the holder exits: the name is free for the other node
            await rpc_call(winner.node, f"{R}:kill", winner)
            other = nodes[1] if winner.node == nodes[0] else nodes[0]
            taker = await eventually(lambda: _claimed(other, "names1", "leader"), "the name is free again")
            assert taker.node == other
            assert await rpc_call(winner.node, f"{E}:whereis", "names1", "leader") == taker

    run(scenario)


async def _claimed(node: str, reg: str, key: Any) -> Any:
    r = await rpc_call(node, f"{E}:claim", reg, key)
    return r if type(r) is pymesh.Pid else None


def test_a_killed_node_s_names_are_freed_when_its_lease_expires(cluster: Cluster, etcd: Etcd) -> None:
    async def scenario() -> None:
        async with local_node(cluster):
            nodes = await connected(cluster, 2)
            for n in nodes:
                await rpc_call(n, f"{E}:start", "names2", etcd.url, 2)
            holder = await rpc_call(nodes[0], f"{E}:claim", "names2", "job")
            assert type(holder) is pymesh.Pid
            cluster.kill(nodes[0])  # kill -9: nobody revokes the lease, it expires
            killed_at = time.monotonic()
            assert await rpc_call(nodes[1], f"{E}:claim", "names2", "job") == ("taken", holder)
            taker = await eventually(lambda: _claimed(nodes[1], "names2", "job"), "the lease expired", timeout=10)
            assert taker.node == nodes[1]
            assert time.monotonic() - killed_at < 8

    run(scenario)


def test_the_side_cut_from_etcd_cannot_take_names_and_loses_its_own_first(cluster: Cluster, etcd: Etcd) -> None:
    async def scenario() -> None:
        async with local_node(cluster):
            nodes = await connected(cluster, 2)
            majority, minority = nodes
            # the minority reaches etcd through a proxy the test can cut
            port = await rpc_call(minority, f"{P}:start_proxy", etcd.port)
            await rpc_call(majority, f"{E}:start", "names3", etcd.url, 3)
            await rpc_call(minority, f"{E}:start", "names3", f"http://127.0.0.1:{port}", 3)
            held = await rpc_call(majority, f"{E}:claim", "names3", "a")
            mine = await rpc_call(minority, f"{E}:claim", "names3", "b")
            assert type(held) is pymesh.Pid and type(mine) is pymesh.Pid
            # a real pymesh partition as well: the nodes cannot see each other
            await rpc_call(majority, f"{R}:partition", [minority])
            await rpc_call(minority, f"{R}:partition", [majority])
            # partitioned from its peer but not from etcd, a node still cannot take a held name
            assert await rpc_call(minority, f"{E}:claim", "names3", "a") == ("taken", held)
            # now cut from etcd: it can take nothing, fails fast, and its holder is told first
            await rpc_call(minority, f"{P}:cut", "refuse")
            failed = await rpc_call(minority, f"{E}:claim", "names3", "c")
            assert failed[:2] == ("error", "EtcdError") and failed[2] < 3, failed
            lost = await eventually(lambda: rpc_call(minority, f"{R}:exit_reason", mine), "the holder is told")
            assert lost == ("name_lost", "b")
            # the holder was told while etcd still held "b" for it (a third of the TTL early) ...
            assert await rpc_call(majority, f"{E}:claim", "names3", "b") == ("taken", mine)
            # ... and the majority gets "b" once etcd expired the lease
            taker = await eventually(lambda: _claimed(majority, "names3", "b"), "b expired in etcd", timeout=10)
            assert taker.node == majority

    run(scenario)


def test_an_unreachable_or_silent_etcd_fails_every_call_in_time(cluster: Cluster, etcd: Etcd) -> None:
    async def scenario() -> None:
        async with local_node(cluster):
            nodes = await connected(cluster, 1)
            port = await rpc_call(nodes[0], f"{P}:start_proxy", etcd.port)
            await rpc_call(nodes[0], f"{E}:start", "names4", f"http://127.0.0.1:{port}", 2, 1.0)
            assert type(await rpc_call(nodes[0], f"{E}:claim", "names4", "x")) is pymesh.Pid
            await rpc_call(nodes[0], f"{P}:cut", "silent")  # accepts, never answers
            for call in ("claim", "timed_lookup"):
                answer = await rpc_call(nodes[0], f"{E}:{call}", "names4", "y")
                assert answer[:2] == ("error", "EtcdError") and answer[2] < 2.5, answer
            await rpc_call(nodes[0], f"{P}:cut", "refuse")  # connection refused
            answer = await rpc_call(nodes[0], f"{E}:timed_lookup", "names4", "x")
            assert answer[:2] == ("error", "EtcdError") and answer[2] < 1.5, answer
            # back: the registry grants itself a new lease and works again
            await rpc_call(nodes[0], f"{P}:restore")
            assert type(await eventually(lambda: _claimed(nodes[0], "names4", "z"), "etcd is back")) is pymesh.Pid

    run(scenario)


def test_on_the_test_node_errors_are_clear(cluster: Cluster, etcd: Etcd) -> None:
    async def scenario() -> None:
        async with local_node(cluster):
            t0 = time.monotonic()
            with pytest.raises(pymesh.SpawnError) as e:
                await EtcdRegistry.start("names5", "http://127.0.0.1:1", timeout=0.5)  # nothing listens there
            assert isinstance(e.value.__cause__, EtcdError) and time.monotonic() - t0 < 3
            await EtcdRegistry.start("names5", etcd.url, ttl=2)
            with pytest.raises(RegistryError):
                await EtcdRegistry.start("names6", etcd.url, ttl=1)
            with pytest.raises(AlreadyRegistered):
                await EtcdRegistry.start("names5", etcd.url)
            await EtcdRegistry.register("names5", ("tuple", 1), {"v": 1})
            me = pymesh.self()
            assert await EtcdRegistry.lookup("names5", ("tuple", 1)) == [(me, {"v": 1})]
            with pytest.raises(AlreadyRegistered) as taken:
                await EtcdRegistry.register("names5", ("tuple", 1))
            assert taken.value.pid == me
            with pytest.raises(TypeError):
                await EtcdRegistry.register("names5", ["unhashable"])
            assert await EtcdRegistry.count("names5") == 1
            assert await EtcdRegistry.select("names5", [((tuple, pymesh.ANY, pymesh.ANY), None, lambda e: e[0])]) == [
                ("tuple", 1)
            ]
            await EtcdRegistry.unregister("names5", ("tuple", 1))
            assert await EtcdRegistry.lookup("names5", ("tuple", 1)) == []
            await EtcdRegistry.register("names5", "kept")
            EtcdRegistry.stop("names5")  # revokes the lease: the name is gone at once
            await eventually(lambda: "names5" not in EtcdRegistry.which(), "stopped")
            async with EtcdClient(etcd.url) as client:
                kvs, _ = await client.get_prefix("pymesh/names/names5/")
            assert kvs == []

    run(scenario)
