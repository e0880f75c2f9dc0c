"""The etcd v3 client and the ``etcd`` strategy, against a real etcd on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from typing import Any

import httpx
import pytest

from pymesh._errors import EtcdError
from pymesh.services._etcd import EtcdClient, compare, delete_op, get_op, prefix_end, put_op
from pymesh.services.discovery import Cluster, load_topologies

from .discovery_helpers import FakeHTTP, FakeOps, Reply, free_port, run, wait_until

LOGGER = "pymesh.discovery"


def unique() -> str:
    return f"/test/{uuid.uuid4().hex}/"


def test_prefix_end() -> None:
    assert prefix_end(b"a/") == b"a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"
    assert prefix_end("") == b"\0"


def test_keys_put_get_range_delete(etcd: Any) -> None:
    prefix = unique()

    async def scenario() -> None:
        async with EtcdClient(etcd.url, timeout=2) as client:
            assert await client.get(prefix + "a") is None
            rev = await client.put(prefix + "a", "1")
            await client.put(prefix + "b", b"\x00\xff")
            await client.put(prefix + "c/d", "3")
            kv = await client.get(prefix + "a")
            assert kv is not None and kv.value == b"1" and kv.mod_revision == rev and kv.version == 1
            kvs, revision = await client.get_prefix(prefix)
            assert [k.key for k in kvs] == [f"{prefix}{s}".encode() for s in ("a", "b", "c/d")]
            assert kvs[1].value == b"\x00\xff" and revision >= rev
            assert await client.delete(prefix + "a") == 1
            assert await client.delete(prefix + "a") == 0
            assert await client.delete_prefix(prefix) == 2
            assert (await client.get_prefix(prefix))[0] == []

    run(scenario())


def test_transactions_compare_and_create(etcd: Any) -> None:
    key = unique() + "owner"

    async def scenario() -> None:
        async with EtcdClient(etcd.url, timeout=2) as client:
            assert await client.create(key, "node1") is True
            assert await client.create(key, "node2") is False
            kv = await client.get(key)
            assert kv is not None and kv.value == b"node1"
            result = await client.txn(
                [compare(key, "value", "==", "node1")], [put_op(key, "node3"), get_op(key)], [delete_op(key)]
            )
            assert result.succeeded and result.responses[0] is None
            assert result.responses[1][0].value == b"node3"
            result = await client.txn([compare(key, "mod", "<", 1)], [], [delete_op(key), get_op(key)])
            assert not result.succeeded and result.responses == (1, [])

    run(scenario())
    with pytest.raises(ValueError):
        compare(key, "bogus", "==", 0)  # type: ignore[arg-type]


def test_leases_grant_keepalive_revoke(etcd: Any) -> None:
    key = unique() + "leased"

    async def scenario() -> None:
        async with EtcdClient(etcd.url, timeout=2) as client:
            lease = await client.lease_grant(30)
            assert lease.id and lease.ttl == 30
            await client.put(key, "x", lease=lease.id)
            kv = await client.get(key)
            assert kv is not None and kv.lease == lease.id
            assert 0 < await client.lease_keepalive(lease.id) <= 30
            assert await client.lease_revoke(lease.id) is True
            assert await client.get(key) is None  # revoking deletes the lease's keys
            assert await client.lease_keepalive(lease.id) == 0
            assert await client.lease_revoke(lease.id) is False
            with pytest.raises(EtcdError) as info:
                await client.put(key, "x", lease=lease.id)
            assert info.value.code == 5 and "lease not found" in str(info.value)

    run(scenario())


def test_watch_streams_changes_and_ends_when_idle(etcd: Any) -> None:
    prefix = unique()

    async def scenario() -> None:
        async with EtcdClient(etcd.url, timeout=2) as client:
            _, revision = await client.get_prefix(prefix)
            events = []
            async with client.watch(prefix, prefix=True, start_revision=revision + 1, idle_timeout=0.5) as watch:
                await client.put(prefix + "a", "1")
                await client.put(prefix + "other-prefix-not", "x")
                await client.delete(prefix + "a")
                async for event in watch:
                    events.append((event.type, event.kv.key, event.kv.value))
            # the loop ended by itself after 0.5 s of silence
            assert events == [
                ("put", (prefix + "a").encode(), b"1"),
                ("put", (prefix + "other-prefix-not").encode(), b"x"),
                ("delete", (prefix + "a").encode(), b""),
            ]

    run(scenario())


def test_watch_from_a_compacted_revision_ends_with_the_compaction_point(etcd: Any) -> None:
    prefix = unique()

    async def scenario() -> None:
        async with EtcdClient(etcd.url, timeout=2) as client:
            first = await client.put(prefix + "a", "1")
            latest = await client.put(prefix + "a", "2")
            async with httpx.AsyncClient() as http:
                await http.post(f"{etcd.url}/v3/kv/compaction", json={"revision": latest})
            async with client.watch(prefix, prefix=True, start_revision=first, idle_timeout=2) as watch:
                assert [event async for event in watch] == []
            assert watch.compacted is not None and watch.compacted >= latest

    run(scenario())


def test_nothing_hangs_when_etcd_is_down_or_silent() -> None:
    dead = f"http://127.0.0.1:{free_port('tcp')}"
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (kernel backlog) and never answers

    async def scenario() -> None:
        async with EtcdClient(dead, timeout=0.5) as client:
            with pytest.raises(EtcdError) as info:
                await client.get("k")
            assert info.value.kind == "unreachable" and dead in str(info.value)
            with pytest.raises(EtcdError):
                async with client.watch("k"):
                    pass
        loop = asyncio.get_running_loop()
        async with EtcdClient(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3) as client:
            started = loop.time()
            with pytest.raises(EtcdError) as info:
                await client.lease_grant(5)
            assert info.value.kind == "timeout" and loop.time() - started < 3

    try:
        run(scenario())
    finally:
        silent.close()


def test_second_endpoint_is_used_when_the_first_is_down(etcd: Any) -> None:
    dead = f"http://127.0.0.1:{free_port('tcp')}"

    async def scenario() -> None:
        async with EtcdClient([dead, etcd.url], timeout=1) as client:
            await client.put(unique() + "x", "1")
            assert client.endpoints[client._current] == etcd.url

    run(scenario())


def test_garbage_from_a_gateway_is_an_etcd_error() -> None:
    server = FakeHTTP(lambda request: Reply(200, "this is not json"))

    async def scenario() -> None:
        async with EtcdClient(server.url, timeout=1) as client:
            with pytest.raises(EtcdError, match="not a JSON object") as info:
                await client.get("k")
            assert info.value.kind == "malformed"
        server.handler = lambda request: Reply(200, {"kvs": "not a list"})
        async with EtcdClient(server.url, timeout=1) as client:
            with pytest.raises(EtcdError, match="malformed answer"):
                await client.get("k")
        server.handler = lambda request: Reply(503, "upstream down")
        async with EtcdClient(server.url, timeout=1) as client:
            with pytest.raises(EtcdError, match="HTTP 503") as info:
                await client.get("k")
            assert info.value.status == 503

    try:
        run(scenario())
    finally:
        server.stop()


# --- the strategy -------------------------------------------------------------------


def etcd_specs(url: str, prefix: str, **extra: Any) -> list:
    config = {"endpoints": [url], "prefix": prefix, "ttl": 3, "polling_interval": 0.2, "timeout": 0.5, **extra}
    return load_topologies({"topologies": {"e": {"strategy": "etcd", "config": config}}})


def test_nodes_register_find_each_other_and_a_stopped_node_is_disconnected(etcd: Any) -> None:
    prefix = unique()
    specs = etcd_specs(etcd.url, prefix)
    a, b = FakeOps("a@h", dist_port=4001), FakeOps("b@h", dist_port=4002)

    async def scenario() -> None:
        async with Cluster(specs, a) as first:
            async with Cluster(specs, b):
                await wait_until(lambda: a.connected == {"b@h"} and b.connected == {"a@h"})
                async with EtcdClient(etcd.url) as client:
                    kv = await client.get(prefix + "b@h")
                    assert kv is not None and kv.lease and b'"port": 4002' in kv.value
            # b stopped: its lease was revoked, a's watch saw the delete
            await wait_until(lambda: a.connected == set(), what="b disconnected")
            assert first.states()[0].nodes_found == ()

    run(scenario())


def test_a_node_that_dies_disappears_when_its_lease_expires(etcd: Any) -> None:
    prefix = unique()
    ops = FakeOps("a@h")

    async def scenario() -> None:
        async with EtcdClient(etcd.url) as client, Cluster(etcd_specs(etcd.url, prefix), ops):
            lease = await client.lease_grant(2)  # a node that will never keep its lease alive
            await client.put(prefix + "ghost@h", "{}", lease=lease.id)
            await wait_until(lambda: ops.connected == {"ghost@h"})
            await wait_until(lambda: ops.connected == set(), timeout=8, what="lease expiry")

    run(scenario(), timeout=20)


def test_etcd_down_at_start_up_then_back_then_down_again(etcd_unstarted: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = etcd_unstarted
    specs = etcd_specs(server.url, unique())
    a, b = FakeOps("a@h"), FakeOps("b@h")

    async def scenario() -> None:
        async with Cluster(specs, a) as cluster:
            await wait_until(lambda: cluster.states()[0].last_error is not None)
            first = cluster.states()[0].last_poll
            await wait_until(lambda: cluster.states()[0].last_poll != first, what="a second failed attempt")
            assert not cluster.states()[0].healthy

            await asyncio.to_thread(server.start)
            async with Cluster(specs, b):
                await wait_until(lambda: a.connected == {"b@h"} and b.connected == {"a@h"}, timeout=10)
                assert cluster.states()[0].healthy

                await asyncio.to_thread(server.stop)  # etcd goes away: nothing is disconnected
                await wait_until(lambda: not cluster.states()[0].healthy, timeout=10)
                await asyncio.sleep(0.5)
                assert a.connected == {"b@h"} and a.count("disconnect") == 0

                await asyncio.to_thread(server.start)
                await wait_until(lambda: cluster.states()[0].healthy, timeout=10, what="resumed")
                assert a.connected == {"b@h"}

    run(scenario(), timeout=45)
    failed = [r.getMessage() for r in caplog.records if "discovery failed" in r.getMessage()]
    # one line per outage and node (a saw two outages, b one), not one per retry
    assert len(failed) == 3, failed
