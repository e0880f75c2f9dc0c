"""DistributedRegistry across real OS-process nodes: replication, node loss, real partitions and heal.

The nodes are ``python -m pymesh run`` subprocesses (see tests/support/cluster.py),
driven with ``rpc_call`` into tests/support/distreg_node.py. Partitions are
real: ``Node.set_policy`` on the nodes cuts their connections and refuses
reconnects. Timing goals live in bench/dist_registry.py, not here.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from support.cluster import Cluster, cluster, epmd, eventually, local_node, run  # noqa: F401

import pymesh
from pymesh import (
    AlreadyRegistered,
    EncodeError,
    Node,
    Supervisor,
    UnknownRegistry,
    rpc_call,
)
from pymesh._errors import BadKey
from pymesh.services._dist_registry import DistributedRegistry

pytestmark = pytest.mark.timeout(90)

M = "support.distreg_node"


async def on_all(nodes: list[str], fn: str, *args: Any) -> list[Any]:
    # one after the other: concurrent receives in one process would share its mailbox
    return [await rpc_call(n, f"{M}:{fn}", *args) for n in nodes]


async def connect_all(nodes: list[str]) -> None:
    for n in nodes:
        assert await Node.connect(n, timeout=5)
    # the nodes connect to each other transitively; wait until they see each other
    await eventually(
        lambda: _all_see(nodes), "every node sees every other", timeout=10
    )


async def _all_see(nodes: list[str]) -> bool:
    seen = await on_all(nodes, "visible")
    return all(set(nodes) - {n} <= set(s) for n, s in zip(nodes, seen))


async def start_registry(nodes: list[str], reg: str, joined: list[str] | None = None, **opts: Any) -> None:
    """Start ``reg`` on ``nodes``; wait until it runs as one registry on ``joined`` (default: ``nodes``)."""
    for n in nodes:
        await rpc_call(n, f"{M}:start_registry_opts", reg, opts)
    joined = joined or nodes
    await eventually(
        lambda: _members_are(joined, reg, sorted(joined)), "every registry sees every member", timeout=10
    )


async def _members_are(nodes: list[str], reg: str, expected: list[str]) -> bool:
    return all(sorted(m) == expected for m in await on_all(nodes, "members", reg))


def test_a_name_registered_on_one_node_is_found_on_all_and_goes_with_its_process(cluster: Cluster) -> None:
    async def scenario() -> None:
        nodes = cluster.start(3)
        async with local_node(cluster):
            await connect_all(nodes)
            await start_registry(nodes, "reg")
            pid = await rpc_call(nodes[0], f"{M}:spawn_holder", "reg", ("job", 1), {"zone": "eu"})
            await eventually(
                lambda: _resolves_everywhere(nodes, "reg", ("job", 1), pid), "the name is visible everywhere"
            )
            # a taken key is refused on every node, naming the owner
            taken = await rpc_call(nodes[2], f"{M}:spawn_holder", "reg", ("job", 1))
            assert taken == ("taken", pid)
            # via names work across nodes: a GenServer registered through the registry
            server = await rpc_call(nodes[1], f"{M}:start_via_echo", "reg", "echo")
            await eventually(lambda: _resolves_everywhere(nodes, "reg", "echo", server), "the server's name")
            assert await rpc_call(nodes[2], f"{M}:call_via", "reg", "echo", "hi") == ("echo", "hi")
            assert await rpc_call(nodes[0], f"{M}:select_keys", "reg", "job") == [("job", 1)]
            # the process exits: its name is gone everywhere
            await rpc_call(nodes[0], f"{M}:kill", pid)
            await eventually(lambda: _resolves_everywhere(nodes, "reg", ("job", 1), None), "the name is gone")
            assert await on_all(nodes, "count", "reg") == [1, 1, 1]

    run(scenario)


async def _resolves_everywhere(nodes: list[str], reg: str, key: Any, pid: Any) -> bool:
    return all(w == pid for w in await on_all(nodes, "whereis", reg, key))


def test_a_write_after_a_quiet_spell_leaves_at_once_and_quick_ones_are_batched(cluster: Cluster) -> None:
    """Deltas go out at most once per ``sync_interval``, but a write that
    follows a quiet interval does not wait for the timer (leading edge)."""

    async def scenario() -> None:
        nodes = cluster.start(2)
        async with local_node(cluster):
            await connect_all(nodes)
            await start_registry(nodes, "lazy", sync_interval=3.0)
            first = await rpc_call(nodes[0], f"{M}:spawn_holder", "lazy", "first")
            await eventually(
                lambda: _resolves_everywhere(nodes, "lazy", "first", first), "the first write at once", timeout=1.5
            )
            second = await rpc_call(nodes[0], f"{M}:spawn_holder", "lazy", "second")
            await asyncio.sleep(0.5)
            assert await rpc_call(nodes[1], f"{M}:whereis", "lazy", "second") is None  # held: 3 s not over
            await eventually(
                lambda: _resolves_everywhere(nodes, "lazy", "second", second), "the second with the timer", timeout=6
            )

    run(scenario)


def test_update_value_replicates_the_new_value_and_keeps_the_owner(cluster: Cluster) -> None:
    async def scenario() -> None:
        nodes = cluster.start(2)
        async with local_node(cluster):
            await connect_all(nodes)
            await start_registry(nodes, "upd")
            pid = await rpc_call(nodes[0], f"{M}:spawn_holder", "upd", "job", {"v": 1})
            await eventually(lambda: _resolves_everywhere(nodes, "upd", "job", pid), "registered everywhere")
            assert await rpc_call(nodes[0], f"{M}:update_holder", pid, "upd", "job", {"v": 2}) == ({"v": 2}, {"v": 1})

            async def new_value_everywhere() -> bool:
                return all(r == [(pid, {"v": 2})] for r in await on_all(nodes, "lookup", "upd", "job"))

            await eventually(new_value_everywhere, "the new value on every node")
            # not the owner of the key: None (Elixir's :error), nothing changes
            assert await rpc_call(nodes[0], f"{M}:update_holder", pid, "upd", "other", 3) is None
            # a value that cannot travel is refused and the old one stays
            bad = await rpc_call(nodes[0], f"{M}:update_holder", pid, "upd", "job", "<an object>")
            assert bad == ("error", "EncodeError")
            assert await rpc_call(nodes[1], f"{M}:lookup", "upd", "job") == [(pid, {"v": 2})]

    run(scenario)


def test_a_joining_node_gets_the_full_state_and_a_killed_node_takes_its_names(cluster: Cluster) -> None:
    async def scenario() -> None:
        nodes = cluster.start(3)
        async with local_node(cluster):
            await connect_all(nodes)
            await start_registry(nodes[:2], "reg")
            mine = await rpc_call(nodes[0], f"{M}:register_many", "reg", "a", 50)
            theirs = await rpc_call(nodes[1], f"{M}:register_many", "reg", "b", 50)
            assert len(mine) == len(theirs) == 50
            await start_registry(nodes[2:], "reg", joined=nodes)  # the third node joins late
            await eventually(lambda: _counts(nodes, "reg", 100), "100 names on every node")
            # kill -9 the first node: its 50 names vanish from the others, and can be taken again
            cluster.kill(nodes[0])
            await eventually(lambda: _counts(nodes[1:], "reg", 50), "the dead node's names are gone")
            again = await rpc_call(nodes[2], f"{M}:spawn_holder", "reg", ("a", 7))
            assert again not in mine and type(again) is pymesh.Pid
            await eventually(lambda: _resolves_everywhere(nodes[1:], "reg", ("a", 7), again), "re-registered")

    run(scenario)


async def _counts(nodes: list[str], reg: str, n: int) -> bool:
    return all(c == n for c in await on_all(nodes, "count", reg))


def test_after_a_real_partition_heals_every_name_has_one_deterministic_live_owner(cluster: Cluster) -> None:
    async def scenario() -> None:
        nodes = cluster.start(4)
        left, right = nodes[:2], nodes[2:]
        keys = [("k", i) for i in range(12)]
        rnd = random.Random(7)
        async with local_node(cluster):
            await connect_all(nodes)
            await start_registry(nodes, "reg")
            # a few names registered before the split stay put; they must survive it
            before = [await rpc_call(nodes[0], f"{M}:spawn_holder", "reg", ("old", i)) for i in range(3)]
            await eventually(lambda: _resolves_everywhere(nodes, "reg", ("old", 2), before[2]), "replicated")

            for n in left:
                await rpc_call(n, f"{M}:partition", right)
            for n in right:
                await rpc_call(n, f"{M}:partition", left)
            # each side sees only itself: the other side's names are gone from its view
            await eventually(lambda: _members_are(left, "reg", sorted(left)), "left side alone")
            await eventually(lambda: _members_are(right, "reg", sorted(right)), "right side alone")
            assert await on_all(right, "whereis", "reg", ("old", 0)) == [None, None]

            # both sides register every key, on random nodes of their side
            holders: dict[Any, list[Any]] = {}
            for key in keys:
                for side in (left, right):
                    pid = await rpc_call(rnd.choice(side), f"{M}:spawn_holder", "reg", key)
                    holders.setdefault(key, []).append(pid)
            # the right side also takes one of the old names, which it sees as free
            usurper = await rpc_call(right[0], f"{M}:spawn_holder", "reg", ("old", 0))
            for key in keys:
                await eventually(lambda: _resolves_everywhere(left, "reg", key, holders[key][0]), "left side")
                await eventually(lambda: _resolves_everywhere(right, "reg", key, holders[key][1]), "right side")
            # what each side holds, with the logical clocks: the winner is predictable
            clocks = {}
            for side in (left, right):
                for key, entries in (await rpc_call(side[0], f"{M}:entries", "reg", keys)).items():
                    clocks.setdefault(key, []).extend(entries)
            expected = {key: min(clocks[key])[1] for key in keys}

            for n in nodes:
                await rpc_call(n, f"{M}:heal", nodes)
            await eventually(lambda: _members_are(nodes, "reg", sorted(nodes)), "healed", timeout=15)

            async def settled() -> bool:
                snaps = await on_all(nodes, "snapshot", "reg", keys + [("old", 0)])
                return all(s == snaps[0] for s in snaps) and all(n == 1 for _, n in snaps[0].values())

            await eventually(settled, "every node agrees and each name has one entry", timeout=15)
            snaps = await on_all(nodes, "snapshot", "reg", keys)
            for key in keys:
                winner = snaps[0][key][0]
                assert winner == expected[key], key
                assert await rpc_call(winner.node, f"{M}:is_alive", winner)
                (loser,) = [p for p in holders[key] if p != winner]
                reason = await eventually(lambda: rpc_call(loser.node, f"{M}:exit_reason", loser), "loser exit")
                assert reason == ("name_conflict", key, winner)
            # the old name: its original (older) registration wins over the usurper
            assert (await rpc_call(nodes[3], f"{M}:whereis", "reg", ("old", 0))) == before[0]
            reason = await eventually(lambda: rpc_call(right[0], f"{M}:exit_reason", usurper), "usurper exit")
            assert reason == ("name_conflict", ("old", 0), before[0])
            assert all([await rpc_call(nodes[0], f"{M}:is_alive", p) for p in before])

    run(scenario, timeout=80)


def test_explicit_members_replicate_only_among_themselves(cluster: Cluster) -> None:
    async def scenario() -> None:
        nodes = cluster.start(3)
        async with local_node(cluster):
            await connect_all(nodes)
            pair = sorted(nodes[:2])
            for n in pair:
                await rpc_call(n, f"{M}:start_registry_opts", "reg", {"members": pair})
            await rpc_call(nodes[2], f"{M}:start_registry", "reg")
            await eventually(lambda: _members_are(pair, "reg", pair), "the pair replicates")
            pid = await rpc_call(nodes[0], f"{M}:spawn_holder", "reg", "x")
            await eventually(lambda: _resolves_everywhere(pair, "reg", "x", pid), "visible in the pair")
            await asyncio.sleep(0.2)
            assert await rpc_call(nodes[2], f"{M}:whereis", "reg", "x") is None
            assert await rpc_call(nodes[2], f"{M}:members", "reg") == [nodes[2]]

    run(scenario)


# --- on the test's own node ------------------------------------------------------------------------


def test_bad_input_and_unknown_registries_raise_clear_errors(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with local_node(cluster):
            await DistributedRegistry.start("bad")
            with pytest.raises(BadKey, match="hashable"):
                DistributedRegistry.register("bad", ["a", "list"])
            with pytest.raises(BadKey, match="encodable"):
                DistributedRegistry.register("bad", ("a", object()))
            with pytest.raises(EncodeError):
                DistributedRegistry.register("bad", "k", object())
            with pytest.raises(UnknownRegistry):
                DistributedRegistry.lookup("nope", "k")
            with pytest.raises(UnknownRegistry):
                pymesh.whereis(("via", "nope", "k"))
            DistributedRegistry.register("bad", "k", 1)
            with pytest.raises(AlreadyRegistered) as e:
                DistributedRegistry.register("bad", "k", 2)
            assert e.value.pid == pymesh.self()
            assert DistributedRegistry.lookup("bad", "k") == [(pymesh.self(), 1)]
            DistributedRegistry.unregister("bad", "k")
            assert DistributedRegistry.lookup("bad", "k") == []
            with pytest.raises(AlreadyRegistered):
                await DistributedRegistry.start("bad")  # already running here
            assert DistributedRegistry.count_select("bad", [((str, pymesh.ANY, pymesh.ANY),)]) == 0
            DistributedRegistry.stop("bad")
            with pytest.raises(UnknownRegistry):
                DistributedRegistry.register("bad", "k")

    run(scenario)


def test_a_crashed_registry_is_restarted_by_its_supervisor_with_nothing_half_registered(cluster: Cluster) -> None:
    async def scenario() -> None:
        nodes = cluster.start(1)
        async with local_node(cluster):
            await connect_all(nodes)
            await rpc_call(nodes[0], f"{M}:start_registry", "sup_reg")
            sup = await Supervisor.start_link([DistributedRegistry.child_spec("sup_reg", sync_interval=0.001)])
            await eventually(lambda: DistributedRegistry.members("sup_reg") == sorted([Node.self(), nodes[0]]), "up")
            holder = pymesh.spawn(_hold, "sup_reg", "name")
            await eventually(lambda: DistributedRegistry.whereis("sup_reg", "name") == holder, "registered")
            await eventually(lambda: rpc_call(nodes[0], f"{M}:whereis", "sup_reg", "name"), "replicated")
            ((_, owner, _),) = await Supervisor.which_children(sup)
            pymesh.exit(owner, "kill")
            # restarted: a fresh, empty replica here, and the name is gone on the peer too
            await eventually(lambda: _restarted(sup, owner), "a new registry owner")
            await eventually(lambda: DistributedRegistry.members("sup_reg") == sorted([Node.self(), nodes[0]]), "rejoined")
            assert DistributedRegistry.whereis("sup_reg", "name") is None
            await eventually(lambda: _gone(nodes[0]), "the peer forgot the name")
            # and the key can be registered again
            DistributedRegistry.register("sup_reg", "name", "again")
            assert DistributedRegistry.lookup("sup_reg", "name") == [(pymesh.self(), "again")]
            pymesh.unlink(sup)
            pymesh.exit(sup, "shutdown")

    async def _gone(node: str) -> bool:
        return await rpc_call(node, f"{M}:whereis", "sup_reg", "name") is None

    run(scenario)


async def _restarted(sup: Any, old: Any) -> bool:
    ((_, owner, _),) = await Supervisor.which_children(sup)
    return owner is not None and owner != old


async def _hold(reg: str, key: Any) -> None:
    DistributedRegistry.register(reg, key)
    await pymesh.receive(lambda m: m == "stop")
