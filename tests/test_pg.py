"""pymesh.PG (OTP's pg): process groups across real nodes — OS processes on loopback —
then the local rules (join counts, scopes, monitors, supervision, bad input) in-process.

The cluster (``services_cluster``) is a private port mapper and three node
subprocesses a, b, c; the test process joins as a hidden driver (hidden nodes
take no part in process groups).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from services_cluster import Cluster, ev, eventually, fresh, mesh, pid_src, run

import pymesh
from pymesh import (
    ANY,
    AlreadyRegistered,
    Pid,
    Supervisor,
    UnknownRegistry,
    receive,
    spawn,
)
from pymesh._errors import BadKey, RegistryError
from pymesh.services import PG

pytestmark = pytest.mark.timeout(90)


def pids_src(pids: list[Pid]) -> str:
    return "[" + ", ".join(pid_src(p) for p in pids) + "]"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster(["a", "b", "c"])
    try:
        run(lambda: _meshed(c))
        yield c
    finally:
        c.close()


async def _meshed(c: Cluster) -> None:
    async with c.driver():
        await mesh(c)


async def members_everywhere(c: Cluster, group: Any, scope: str = "pg") -> list[list[Pid]]:
    return [sorted(await ev(c[n], f"PG.get_members({group!r}, scope={scope!r})")) for n in c.nodes]


async def same_everywhere(c: Cluster, group: Any, expected: list[Pid], scope: str = "pg") -> bool:
    return await members_everywhere(c, group, scope) == [sorted(expected)] * len(c.nodes)


# --- across nodes -----------------------------------------------------------------------------------


def test_joins_and_leaves_reach_every_node(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with cluster.driver():
            group = fresh("workers")
            on_a = await ev(cluster["a"], f"await sn.join_idle({group!r}, 2)")
            await eventually(lambda: same_everywhere(cluster, group, on_a), "a's members everywhere")
            on_b = await ev(cluster["b"], f"await sn.join_idle({group!r}, 1)")
            everyone = on_a + on_b
            await eventually(lambda: same_everywhere(cluster, group, everyone), "a's and b's members everywhere")
            assert sorted(await ev(cluster["a"], f"PG.get_local_members({group!r})")) == sorted(on_a)
            assert await ev(cluster["c"], f"PG.get_local_members({group!r})") == []
            assert group in await ev(cluster["c"], "PG.which_groups()")
            # a process may join twice, and is listed twice until it leaves twice
            await ev(cluster["a"], f"PG.join({group!r}, {pid_src(on_a[0])})")
            await eventually(lambda: same_everywhere(cluster, group, everyone + [on_a[0]]), "a double join")
            assert await ev(cluster["a"], f"PG.leave({group!r}, {pid_src(on_a[0])})") is True
            await eventually(lambda: same_everywhere(cluster, group, everyone), "one of the two joins left")
            # leave; and a process that ends leaves every group on every node
            assert await ev(cluster["a"], f"PG.leave({group!r}, {pids_src(on_a)})") is True
            assert await ev(cluster["a"], f"PG.leave({group!r}, {pids_src(on_a)})") is False
            await eventually(lambda: same_everywhere(cluster, group, on_b), "a's members left")
            await ev(cluster["b"], f"exit({pid_src(on_b[0])}, 'kill')")
            await eventually(lambda: same_everywhere(cluster, group, []), "b's member gone with its process")
            assert group not in await ev(cluster["c"], "PG.which_groups()")

    run(scenario)


def test_monitors_see_every_join_and_leave_with_otp_shapes(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with cluster.driver():
            group, other = fresh("watched"), fresh("other")
            early = await ev(cluster["c"], f"await sn.join_idle({group!r}, 1)")
            await eventually(lambda: same_everywhere(cluster, group, early), "the first member everywhere")
            scope_tag, group_tag = fresh("scope-watch"), fresh("group-watch")
            scope_ref = await ev(cluster["b"], f"await sn.watch({scope_tag!r})")
            group_ref = await ev(cluster["b"], f"await sn.watch({group_tag!r}, {group!r})")
            joined = await ev(cluster["a"], f"await sn.join_idle({group!r}, 2)")
            elsewhere = await ev(cluster["a"], f"await sn.join_idle({other!r}, 1)")
            await ev(cluster["a"], f"PG.leave({group!r}, {pid_src(joined[0])})")
            await ev(cluster["a"], f"exit({pid_src(joined[1])}, 'kill')")

            expected_group = [
                ("monitoring", group_ref, early),
                (group_ref, "join", group, joined),
                (group_ref, "leave", group, [joined[0]]),
                (group_ref, "leave", group, [joined[1]]),
            ]
            await eventually(
                lambda: _box_is(cluster["b"], group_tag, expected_group), "the group monitor saw four events"
            )
            box = await eventually(lambda: _box_len(cluster["b"], scope_tag, 5), "the scope monitor saw five")
            assert box[0][0] == "monitoring" and box[0][1] == scope_ref and box[0][2][group] == early
            assert box[1:] == [
                (scope_ref, "join", group, joined),
                (scope_ref, "join", other, elsewhere),
                (scope_ref, "leave", group, [joined[0]]),
                (scope_ref, "leave", group, [joined[1]]),
            ]
            assert await ev(cluster["b"], f"PG.demonitor({ref_src(group_ref)})") is True
            assert await ev(cluster["b"], f"PG.demonitor({ref_src(group_ref)})") is False

    run(scenario)


def ref_src(ref: Any) -> str:
    return f"Ref.parse({str(ref)!r})"


async def _box_is(node: str, tag: str, expected: list[Any]) -> bool:
    return await ev(node, f"COLLECTED.get({tag!r}, [])") == expected


async def _box_len(node: str, tag: str, n: int) -> Any:
    box = await ev(node, f"COLLECTED.get({tag!r}, [])")
    return box if len(box) >= n else None


def test_nodedown_drops_members_and_nodeup_syncs_them_back(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with cluster.driver():
            group = fresh("flaky")
            on_a = await ev(cluster["a"], f"await sn.join_idle({group!r}, 2)")
            await eventually(lambda: same_everywhere(cluster, group, on_a), "a's members everywhere")
            tag = fresh("b-watch")
            ref = await ev(cluster["b"], f"await sn.watch({tag!r}, {group!r})")
            assert await ev(cluster["b"], f"Node.disconnect({cluster['a']!r})") is True
            await eventually(
                lambda: _members_on(cluster, "b", group, []), "b dropped a's members at nodedown"
            )
            assert sorted(await ev(cluster["c"], f"PG.get_members({group!r})")) == sorted(on_a)
            assert await ev(cluster["b"], f"await Node.connect({cluster['a']!r})") is True
            await eventually(lambda: _members_on(cluster, "b", group, on_a), "b synced a's members at nodeup")
            box = await ev(cluster["b"], f"COLLECTED[{tag!r}]")
            assert box[0] == ("monitoring", ref, on_a)
            assert sorted(box[1][3]) == sorted(on_a) and box[1][:3] == (ref, "leave", group)
            assert sorted(box[2][3]) == sorted(on_a) and box[2][:3] == (ref, "join", group)
            await mesh(cluster)

    run(scenario)


async def _members_on(c: Cluster, node: str, group: Any, expected: list[Pid]) -> bool:
    return sorted(await ev(c[node], f"PG.get_members({group!r})")) == sorted(expected)


def test_scopes_are_separate_and_only_shared_with_nodes_running_them(cluster: Cluster) -> None:
    async def scenario() -> None:
        async with cluster.driver():
            scope, group = fresh("scope"), fresh("g")
            for n in ("a", "b"):  # started after the nodes connected: found by discovery
                await ev(cluster[n], f"await PG.start({scope!r})")
            on_a = await ev(cluster["a"], f"await sn.join_idle({group!r}, 1, {scope!r})")
            await eventually(
                lambda: ev(cluster["b"], f"PG.get_members({group!r}, scope={scope!r}) == {pids_src(on_a)}"),
                "b sees a's member in the shared scope",
            )
            assert await ev(cluster["b"], f"PG.get_members({group!r})") == []  # not in the default scope
            with pytest.raises(pymesh.RpcError, match="UnknownRegistry"):
                await ev(cluster["c"], f"PG.get_members({group!r}, scope={scope!r})")
            # stopping the scope on a takes a's members out of it on b
            await ev(cluster["a"], f"PG.stop({scope!r})")
            await eventually(
                lambda: ev(cluster["b"], f"PG.get_members({group!r}, scope={scope!r}) == []"), "b dropped them"
            )
            await ev(cluster["b"], f"PG.stop({scope!r})")

    run(scenario)


# --- on one node -------------------------------------------------------------------------------------


async def idle() -> None:
    await receive("never sent")


def test_local_rules() -> None:
    async def scenario() -> None:
        group = fresh("local")
        a, b = spawn(idle), spawn(idle)
        await asyncio.sleep(0)  # started (killing a never-started process warns "never awaited")
        assert PG.leave(group, a) is False  # OTP's not_joined
        PG.join(group, [a, b])
        PG.join(group, a)
        assert sorted(PG.get_members(group)) == sorted([a, a, b])
        assert PG.get_local_members(group) == PG.get_members(group)
        assert PG.leave(group, [a, b]) is True
        assert PG.get_members(group) == [a]
        me = pymesh.self()
        PG.join(group)  # the caller by default
        assert me in PG.get_members(group) and PG.leave(group) is True
        pymesh.exit(a, "kill")
        assert PG.get_members(group) == [] and group not in PG.which_groups()
        PG.join(group, [a])  # a dead process: nothing happens
        assert PG.get_members(group) == []
        assert "pg" in PG.which_scopes()

    run(scenario)


def test_local_monitors_and_their_cleanup() -> None:
    async def scenario() -> None:
        group = fresh("mon")
        ref, now = PG.monitor(group)
        sref, groups = PG.monitor_scope()
        assert now == [] and group not in groups
        p = spawn(idle)
        await asyncio.sleep(0)
        PG.join(group, p)
        assert await receive((ref, ANY, ANY, ANY), timeout=1) == (ref, "join", group, [p])
        assert await receive((sref, ANY, ANY, ANY), timeout=1) == (sref, "join", group, [p])
        assert PG.demonitor(sref) is True
        pymesh.exit(p, "kill")
        assert await receive((ref, ANY, ANY, ANY), timeout=1) == (ref, "leave", group, [p])
        with pytest.raises(pymesh.ReceiveTimeout):
            await receive((sref, ANY, ANY, ANY), timeout=0.05)
        # a watcher that ends stops watching
        seen: list[Any] = []

        async def watcher() -> None:
            PG.monitor(group)
            seen.append(await receive())

        w = spawn(watcher)
        await asyncio.sleep(0)
        pymesh.exit(w, "kill")
        PG.join(group, spawn(idle))
        await asyncio.sleep(0)
        assert seen == [] and w not in _watchers(group)

    run(scenario)


def _watchers(group: Any) -> list[Pid]:
    from pymesh.services._pg import _scopes

    return list(_scopes["pg"].watchers.get(group, {}).values())


def test_started_scopes_under_a_supervisor() -> None:
    async def scenario() -> None:
        pymesh.trap_exit(True)
        scope = fresh("sup-scope")
        sup = await Supervisor.start_link([PG.child_spec(scope)])
        with pytest.raises(AlreadyRegistered):
            await PG.start(scope)
        [(_, owner, _)] = await Supervisor.which_children(sup)
        member = spawn(idle)
        PG.join("g", member, scope=scope)
        assert PG.get_members("g", scope=scope) == [member]
        pymesh.exit(owner, "kill")
        with pytest.raises(UnknownRegistry):
            PG.get_members("g", scope=scope)
        for _ in range(100):
            if scope in PG.which_scopes():
                break
            await asyncio.sleep(0.01)
        # restarted empty; the member itself was not touched
        assert PG.get_members("g", scope=scope) == [] and pymesh.is_alive(member)
        PG.join("g", member, scope=scope)
        assert PG.get_members("g", scope=scope) == [member]

    run(scenario)


def test_bad_input() -> None:
    async def scenario() -> None:
        with pytest.raises(RegistryError, match="local"):
            PG.join("g", Pid("elsewhere@host", 5, 1))
        with pytest.raises(RegistryError):
            PG.join("g", ["not a pid"])  # type: ignore[list-item]
        for bad in ([1], {"a": 1}, ("x", [1])):
            with pytest.raises(BadKey) as info:
                PG.join(bad)
            assert isinstance(info.value, TypeError) and info.value.key == bad
            with pytest.raises(BadKey):
                PG.get_members(bad)
        with pytest.raises(BadKey, match="encodable"):
            PG.join(("x", object()))
        with pytest.raises(UnknownRegistry):
            PG.join("g", scope="no such scope")
        with pytest.raises(UnknownRegistry):
            PG.get_members("g", scope="no such scope")
        with pytest.raises(RegistryError):
            PG.stop("pg")
        with pytest.raises(AlreadyRegistered):
            await PG.start("pg")

    run(scenario)
