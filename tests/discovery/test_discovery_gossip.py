"""``gossip``: heartbeats, sealing, and hostile datagrams — on loopback only.

Every datagram in this file goes to the loopback broadcast address
127.255.255.255 (sockets bound there receive it); nothing is ever sent to a
multicast, private or public address. The multicast default is checked as a
plan (socket options and destination), never exercised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pymesh.services.discovery import Cluster, load_topologies
from pymesh.services.discovery._gossip import (
    Dropped,
    GossipStrategy,
    Heartbeat,
    _Freshness,
    decode,
    derive_key,
    encode,
    socket_plan,
)
from pymesh.services.discovery._strategy import LocalNode

from .discovery_helpers import FakeOps, FakeReport, free_port, run, wait_until

LOOPBACK_BROADCAST = "127.255.255.255"
LOGGER = "pymesh.discovery"


def gossip_config(port: int, **extra: Any) -> dict:
    config = {
        "port": port,
        "if_addr": LOOPBACK_BROADCAST,
        "multicast_addr": LOOPBACK_BROADCAST,
        "broadcast_only": True,
        "heartbeat_interval": 0.05,
        **extra,
    }
    return {"topologies": {"g": {"strategy": "gossip", "config": config}}}


def make_strategy(port: int, name: str = "me@127.0.0.1", **extra: Any) -> GossipStrategy:
    (spec,) = load_topologies(gossip_config(port, **extra))
    strategy = GossipStrategy(spec.config, LocalNode(name, 4000))
    assert strategy.plan.destination == (LOOPBACK_BROADCAST, port)  # never anywhere else
    return strategy


def send(port: int, *datagrams: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        for datagram in datagrams:
            sock.sendto(datagram, (LOOPBACK_BROADCAST, port))


def test_default_plan_joins_libclusters_multicast_group_with_ttl_1() -> None:
    (spec,) = load_topologies({"topologies": {"g": {"strategy": "gossip"}}})
    plan = socket_plan(spec.config)  # computed only: no socket is opened, nothing is sent
    assert plan.bind == ("0.0.0.0", 45892)
    assert plan.destination == ("233.252.1.32", 45892)
    options = {(level, opt): value for level, opt, value in plan.options}
    assert options[(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL)] == 1
    assert options[(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP)] == socket.inet_aton("233.252.1.32") + bytes(4)
    assert options[(socket.SOL_SOCKET, socket.SO_REUSEADDR)] == 1

    (spec,) = load_topologies(gossip_config(45892))
    options = {(level, opt) for level, opt, _ in socket_plan(spec.config).options}
    assert (socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP) not in options  # broadcast_only: no group


def test_heartbeats_round_trip_plain_and_sealed() -> None:
    beat = Heartbeat("a@host", 4370, 1_700_000_000_000)
    assert decode(encode(beat, None), None) == beat
    key = derive_key("s3cret")
    sealed = encode(beat, key)
    assert b"a@host" not in sealed
    assert decode(sealed, key) == beat
    assert encode(beat, key) != sealed  # fresh nonce each time


@pytest.mark.parametrize(
    ("datagram", "key", "reason"),
    [
        (b"hello", None, "not a pymesh heartbeat"),
        (b"PYMG\x01\x00{not json", None, "malformed"),
        (b'PYMG\x01\x00{"n": "no-at-sign", "p": 1, "t": 1}', None, "malformed"),
        (b"PYMG\x01\x07xx", None, "unknown heartbeat mode"),
        (encode(Heartbeat("a@h", 1, 1), derive_key("k")), None, "no secret is configured"),
        (encode(Heartbeat("a@h", 1, 1), None), derive_key("k"), "unauthenticated"),
        (encode(Heartbeat("a@h", 1, 1), derive_key("other")), derive_key("k"), "does not authenticate"),
        (b"PYMG\x01\x01short", derive_key("k"), "truncated"),
    ],
)
def test_bad_datagrams_are_dropped_with_a_reason(datagram: bytes, key: bytes | None, reason: str) -> None:
    with pytest.raises(Dropped, match=reason):
        decode(datagram, key)


def test_a_flipped_bit_anywhere_in_a_sealed_heartbeat_is_detected() -> None:
    key = derive_key("k")
    sealed = encode(Heartbeat("a@h", 1, 1), key)
    for index in range(len(sealed)):
        forged = bytearray(sealed)
        forged[index] ^= 0x01
        with pytest.raises(Dropped):
            decode(bytes(forged), key)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=1200), sealed=st.booleans())
def test_any_bytes_decode_or_raise_dropped(data: bytes, sealed: bool) -> None:
    key = derive_key("k") if sealed else None
    for candidate in (data, b"PYMG\x01" + data, b"PYMG\x01\x00" + data, b"PYMG\x01\x01" + data):
        with contextlib.suppress(Dropped):
            decode(candidate, key)


def test_stale_and_replayed_heartbeats_are_refused() -> None:
    freshness = _Freshness(max_age_ms=30_000)
    now = 1_700_000_000_000
    freshness.check(Heartbeat("a@h", None, now), now)
    with pytest.raises(Dropped, match="replayed"):
        freshness.check(Heartbeat("a@h", None, now), now + 10)
    freshness.check(Heartbeat("a@h", None, now + 5), now + 10)
    with pytest.raises(Dropped, match="stale"):
        freshness.check(Heartbeat("a@h", None, now - 31_000), now)
    with pytest.raises(Dropped, match="stale"):
        freshness.check(Heartbeat("b@h", None, now + 31_000), now)  # from the future
    freshness.check(Heartbeat("b@h", None, now), now)  # another node has its own sequence


def test_heartbeat_send_times_strictly_increase() -> None:
    strategy = make_strategy(free_port("udp"), secret="k")
    key = derive_key("k")
    times = [decode(strategy.heartbeat(), key).sent_ms for _ in range(50)]
    assert times == sorted(set(times))


@pytest.mark.parametrize("secret", ["", "shared secret"], ids=["plain", "sealed"])
def test_two_nodes_find_each_other_over_loopback_broadcast(secret: str) -> None:
    port = free_port("udp")
    specs = load_topologies(gossip_config(port, secret=secret))
    a, b = FakeOps("a@127.0.0.1"), FakeOps("b@127.0.0.1")

    async def scenario() -> None:
        async with Cluster(specs, a) as first, Cluster(specs, b):
            await wait_until(lambda: a.connected == {"b@127.0.0.1"} and b.connected == {"a@127.0.0.1"})
            a.drop("b@127.0.0.1")  # connection lost; the next heartbeat reconnects
            await wait_until(lambda: a.connected == {"b@127.0.0.1"})
            assert first.states()[0].nodes_found == ("b@127.0.0.1",)
        assert a.count("disconnect") == 0  # gossip never disconnects

    run(scenario())


def test_hostile_datagrams_are_dropped_and_logged_once_per_sender_and_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    port = free_port("udp")
    key = derive_key("right")
    specs = load_topologies(gossip_config(port, secret="right", heartbeat_interval=30))
    ops = FakeOps("me@127.0.0.1")

    def now_ms() -> int:
        import time

        return time.time_ns() // 1_000_000

    async def scenario() -> None:
        async with Cluster(specs, ops) as cluster:
            await asyncio.sleep(0.1)  # the socket is bound
            valid = encode(Heartbeat("good@127.0.0.1", 1, now_ms()), key)
            forged = bytearray(valid)
            forged[-1] ^= 0xFF
            for _ in range(5):
                send(
                    port,
                    b"garbage",
                    bytes(forged),
                    encode(Heartbeat("evil@127.0.0.1", 1, now_ms()), derive_key("wrong")),
                    encode(Heartbeat("old@127.0.0.1", 1, now_ms() - 3_600_000), key),
                    encode(Heartbeat("plain@127.0.0.1", 1, now_ms()), None),
                )
            send(port, valid)
            await wait_until(lambda: ops.connected == {"good@127.0.0.1"})
            send(port, valid, valid)  # replays
            await wait_until(lambda: len(_log(caplog, "replayed")) == 1)
            await asyncio.sleep(0.1)
            assert ops.calls == [("connect", "good@127.0.0.1")]
            assert cluster.states()[0].nodes_found == ("good@127.0.0.1",)

    run(scenario())
    for reason in ("not a pymesh heartbeat", "does not authenticate", "stale", "unauthenticated", "replayed"):
        lines = _log(caplog, reason)
        # forged and wrong-secret datagrams share one reason, so one line between them
        assert len(lines) == 1, (reason, lines)
        assert all("gossip from 127.0.0.1" in line for line in lines)


def _log(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and text in r.getMessage()]


def test_gossip_strategy_alone_reports_seen_nodes() -> None:
    port = free_port("udp")
    report = FakeReport()
    strategy = make_strategy(port, secret="k")

    async def scenario() -> None:
        task = asyncio.create_task(strategy.run(report))
        try:
            await asyncio.sleep(0.1)
            other = make_strategy(port, name="other@127.0.0.1", secret="k")
            send(port, other.heartbeat())
            await wait_until(lambda: report.seen_nodes == ["other@127.0.0.1"])
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await strategy.aclose()

    run(scenario())
    assert not report.failures
