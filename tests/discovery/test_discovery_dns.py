"""``dns`` and ``dns_srv`` against a real dnsmasq on loopback, plus a server that answers garbage."""

from __future__ import annotations

import logging
from typing import Any

import dns.exception
import dns.message
import dns.rcode
import pytest

from pymesh._errors import DiscoveryError
from pymesh.services.discovery import Cluster, load_topologies
from pymesh.services.discovery._dns import DnsSrvStrategy, DnsStrategy, parse_nameserver
from pymesh.services.discovery._strategy import LocalNode

from .discovery_helpers import FakeOps, run, udp_garbage_server, wait_until

LOGGER = "pymesh.discovery"


def config(strategy: str, nameserver: str, query: str, **extra: object) -> dict:
    return {
        "topologies": {
            "d": {
                "strategy": strategy,
                "config": {
                    "query": query,
                    "node_basename": "app",
                    "nameservers": [nameserver],
                    "polling_interval": 0.05,
                    "timeout": 0.3,
                    **extra,
                },
            }
        }
    }


def strategy_for(cls: type, nameserver: str, query: str) -> DnsStrategy | DnsSrvStrategy:
    (spec,) = load_topologies(config(cls.name, nameserver, query))
    return cls(spec.config, LocalNode("app@127.0.0.9"))


def test_nameserver_syntax() -> None:
    assert parse_nameserver("10.0.0.2") == ("10.0.0.2", 53)
    assert parse_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_nameserver("[::1]:5300") == ("::1", 5300)
    assert parse_nameserver("::1") == ("::1", 53)
    for bad in ("host.example", "1.2.3.4:0", "[::1]x"):
        with pytest.raises(ValueError):
            parse_nameserver(bad)


def test_dns_a_and_aaaa_records_become_nodes(dnsmasq: Any) -> None:
    dnsmasq.set_hosts(["127.0.0.2 nodes.test", "127.0.0.3 nodes.test", "::2 nodes.test"])
    strategy = strategy_for(DnsStrategy, dnsmasq.nameserver, "nodes.test")
    assert run(strategy.poll()) == {"app@127.0.0.2", "app@127.0.0.3", "app@::2"}


def test_dns_empty_answer_is_success_but_nxdomain_is_a_failure(dnsmasq: Any) -> None:
    dnsmasq.set_hosts(["::2 v6only.test"])
    strategy = strategy_for(DnsStrategy, dnsmasq.nameserver, "v6only.test")
    assert run(strategy.poll()) == {"app@::2"}  # no A records: empty, not an error
    with pytest.raises(DiscoveryError, match="does not exist") as info:
        run(strategy_for(DnsStrategy, dnsmasq.nameserver, "missing.test").poll())
    assert info.value.kind == "nxdomain"


def test_dns_srv_targets_become_nodes(dnsmasq: Any) -> None:
    strategy = strategy_for(DnsSrvStrategy, dnsmasq.nameserver, "_pymesh._tcp.nodes.test")
    assert run(strategy.poll()) == {"app@n1.nodes.test", "app@n2.nodes.test"}


def test_dns_topology_follows_records_and_survives_the_server_going_away(
    dnsmasq: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    dnsmasq.set_hosts(["127.0.0.2 nodes.test", "127.0.0.3 nodes.test"])
    specs = load_topologies(config("dns", dnsmasq.nameserver, "nodes.test"))
    ops = FakeOps()

    async def scenario() -> None:
        async with Cluster(specs, ops) as cluster:
            await wait_until(lambda: ops.connected == {"app@127.0.0.2", "app@127.0.0.3"}, what="both found")

            dnsmasq.set_hosts(["127.0.0.2 nodes.test"])  # .3 leaves: a successful answer omits it
            await wait_until(lambda: ops.connected == {"app@127.0.0.2"}, what=".3 disconnected")

            dnsmasq.set_hosts(["127.0.0.2 nodes.test", "127.0.0.3 nodes.test"])
            await wait_until(lambda: "app@127.0.0.3" in ops.connected, what=".3 back")

            dnsmasq.stop()  # DNS down: timeouts, several polls, nothing disconnected
            await wait_until(lambda: cluster.states()[0].last_error is not None, timeout=5)
            polls_failed = cluster.states()[0].last_poll
            await wait_until(lambda: cluster.states()[0].last_poll != polls_failed, timeout=5)
            assert ops.connected == {"app@127.0.0.2", "app@127.0.0.3"}
            assert not cluster.states()[0].healthy

            dnsmasq.set_hosts(["127.0.0.3 nodes.test"])
            dnsmasq.start()  # back, with .2 gone
            await wait_until(lambda: ops.connected == {"app@127.0.0.3"}, timeout=5, what="resumed")
            assert cluster.states()[0].healthy

    run(scenario(), timeout=30)
    assert len([r for r in caplog.records if "discovery failed" in r.getMessage()]) == 1
    assert len([r for r in caplog.records if "discovery recovered" in r.getMessage()]) == 1


def garbage_for(query: bytes) -> bytes:
    """A reply with the query's id and flags, then nonsense: passes the id check, fails parsing."""
    return query[:2] + b"\x81\x80\x00\x01\x00\x05\x00\x00\x00\x00\xffgarbage"


def servfail_for(query: bytes) -> bytes:
    response = dns.message.make_response(dns.message.from_wire(query))
    response.set_rcode(dns.rcode.SERVFAIL)
    return response.to_wire()


@pytest.mark.parametrize("reply", [garbage_for, servfail_for], ids=["garbage", "servfail"])
def test_malformed_dns_answers_fail_the_poll_and_disconnect_nothing(
    reply: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    port, stop = udp_garbage_server(reply)
    ops = FakeOps()
    ops.connected = {"app@127.0.0.7"}
    specs = load_topologies(config("dns", f"127.0.0.1:{port}", "nodes.test"))

    async def scenario() -> None:
        async with Cluster(specs, ops) as cluster:
            # Pretend the topology had found .7 before: a garbage answer must not remove it.
            cluster.topologies[0]._found = frozenset({"app@127.0.0.7"})
            await wait_until(lambda: cluster.states()[0].last_error is not None)
            first = cluster.states()[0].last_poll
            await wait_until(lambda: cluster.states()[0].last_poll != first)
            assert ops.connected == {"app@127.0.0.7"} and ops.count("disconnect") == 0

    try:
        run(scenario())
    finally:
        stop()
    failed = [r.getMessage() for r in caplog.records if "discovery failed" in r.getMessage()]
    assert len(failed) == 1, failed


def test_garbage_reply_really_is_unparsable() -> None:
    query = dns.message.make_query("nodes.test.", "A").to_wire()
    with pytest.raises(dns.exception.DNSException):
        dns.message.from_wire(garbage_for(query))
