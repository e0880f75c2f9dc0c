"""``consul`` against an HTTP server answering in Consul's documented shapes.

* health: https://developer.hashicorp.com/consul/api-docs/health#list-service-instances-for-service
* catalog: https://developer.hashicorp.com/consul/api-docs/catalog#list-nodes-for-service
* agent: https://developer.hashicorp.com/consul/api-docs/agent/service#list-services
  and https://developer.hashicorp.com/consul/api-docs/agent#read-configuration
* ACL tokens in ``X-Consul-Token``: https://developer.hashicorp.com/consul/api-docs/api-structure#authentication

Addresses are from the documentation range 192.0.2.0/24; the ClusterOps is a fake.
"""

from __future__ import annotations

from typing import Any

import pytest

from pymesh._errors import DiscoveryError
from pymesh.services.discovery import Cluster, load_topologies
from pymesh.services.discovery._consul import ConsulStrategy
from pymesh.services.discovery._strategy import LocalNode

from .discovery_helpers import FakeHTTP, FakeOps, Reply, Request, run, wait_until

TOKEN = "b1gs33cr3t"


def health_entry(node: str, node_address: str, service_address: str) -> dict:
    return {
        "Node": {
            "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
            "Node": node,
            "Address": node_address,
            "Datacenter": "dc1",
            "TaggedAddresses": {"lan": node_address, "wan": node_address},
            "Meta": {"instance_type": "t2.medium"},
        },
        "Service": {
            "ID": "myapp",
            "Service": "myapp",
            "Tags": ["primary"],
            "Address": service_address,
            "Meta": {},
            "Port": 9100,
            "Weights": {"Passing": 10, "Warning": 1},
            "Namespace": "default",
        },
        "Checks": [
            {
                "Node": node,
                "CheckID": "serfHealth",
                "Name": "Serf Health Status",
                "Status": "passing",
                "Notes": "",
                "Output": "",
                "ServiceID": "",
                "ServiceName": "",
                "ServiceTags": [],
                "Namespace": "default",
            },
        ],
    }


def catalog_entry(node: str, address: str, service_address: str) -> dict:
    return {
        "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
        "Node": node,
        "Address": address,
        "Datacenter": "dc1",
        "TaggedAddresses": {"lan": address, "wan": address},
        "NodeMeta": {"somekey": "somevalue"},
        "CreateIndex": 51,
        "ModifyIndex": 51,
        "ServiceAddress": service_address,
        "ServiceEnableTagOverride": False,
        "ServiceID": f"myapp-{node}",
        "ServiceName": "myapp",
        "ServicePort": 9100,
        "ServiceMeta": {},
        "ServiceTaggedAddresses": {},
        "ServiceTags": ["primary"],
        "Namespace": "default",
    }


class Agent:
    def __init__(self) -> None:
        self.health: Reply = Reply(
            200, [health_entry("n1", "192.0.2.1", ""), health_entry("n2", "192.0.2.2", "192.0.2.22")]
        )
        self.server = FakeHTTP(self.handle)

    def handle(self, request: Request) -> Reply:
        if request.headers.get("x-consul-token") != TOKEN:
            return Reply(403, "ACL not found")
        if request.path == "/v1/health/service/myapp":
            return self.health
        if request.path == "/v1/catalog/service/myapp":
            return Reply(200, [catalog_entry("n1", "192.0.2.1", ""), catalog_entry("n3", "192.0.2.3", "192.0.2.33")])
        if request.path == "/v1/agent/services":
            return Reply(
                200,
                {
                    "myapp-1": {
                        "ID": "myapp-1",
                        "Service": "myapp",
                        "Tags": ["primary"],
                        "Meta": {},
                        "Port": 9100,
                        "Address": "",
                        "Weights": {"Passing": 10, "Warning": 1},
                        "EnableTagOverride": False,
                        "Datacenter": "dc1",
                    },
                    "myapp-2": {
                        "ID": "myapp-2",
                        "Service": "myapp",
                        "Tags": [],
                        "Meta": {},
                        "Port": 9101,
                        "Address": "192.0.2.44",
                        "Weights": {"Passing": 1, "Warning": 1},
                        "EnableTagOverride": False,
                        "Datacenter": "dc1",
                    },
                    "redis": {
                        "ID": "redis",
                        "Service": "redis",
                        "Tags": [],
                        "Meta": {},
                        "Port": 8000,
                        "Address": "192.0.2.50",
                        "Weights": {"Passing": 1, "Warning": 1},
                        "EnableTagOverride": False,
                        "Datacenter": "dc1",
                    },
                },
            )
        if request.path == "/v1/agent/self":
            return Reply(
                200,
                {
                    "Config": {"Datacenter": "dc1", "NodeName": "agent-one"},
                    "Member": {"Name": "agent-one", "Addr": "192.0.2.10", "Port": 8301},
                },
            )
        return Reply(404, f"Unexpected path {request.path}")


@pytest.fixture
def agent() -> Any:
    server = Agent()
    yield server
    server.server.stop()


def consul_config(agent: Any, **extra: Any) -> dict:
    config = {
        "url": agent.server.url,
        "service": "myapp",
        "node_basename": "myapp",
        "token": TOKEN,
        "polling_interval": 0.05,
        "timeout": 2,
        **extra,
    }
    return {"topologies": {"c": {"strategy": "consul", "config": config}}}


def poll(agent: Any, **extra: Any) -> set[str]:
    (spec,) = load_topologies(consul_config(agent, **extra))
    strategy = ConsulStrategy(spec.config, LocalNode("myapp@192.0.2.1"))

    async def go() -> set[str]:
        try:
            return await strategy.poll()
        finally:
            await strategy.aclose()

    return run(go())


def test_health_api_passing_instances_service_address_or_node_address(agent: Any) -> None:
    assert poll(agent, datacenter="dc2", tag="primary") == {"myapp@192.0.2.1", "myapp@192.0.2.22"}
    (request,) = agent.server.requests
    assert request.query == {"passing": ["true"], "dc": ["dc2"], "tag": ["primary"]}
    poll(agent, passing=False)
    assert "passing" not in agent.server.requests[-1].query


def test_catalog_api(agent: Any) -> None:
    assert poll(agent, api="catalog") == {"myapp@192.0.2.1", "myapp@192.0.2.33"}
    assert agent.server.paths() == ["/v1/catalog/service/myapp"]


def test_agent_api_filters_by_service_and_uses_the_agents_address(agent: Any) -> None:
    assert poll(agent, api="agent") == {"myapp@192.0.2.10", "myapp@192.0.2.44"}
    assert poll(agent, api="agent", tag="primary") == {"myapp@192.0.2.10"}


@pytest.mark.parametrize(
    ("extra", "reply", "message", "kind"),
    [
        ({"token": "wrong"}, None, "answered 403: ACL not found", "http 403"),
        ({}, Reply(500, "rpc error making call: No cluster leader"), "500: rpc error making call", "http 500"),
        ({}, Reply(200, "not json"), "not JSON", "malformed"),
        ({}, Reply(200, {"not": "a list"}), "expected a JSON array", "malformed"),
        ({}, Reply(200, [{"Node": {}, "Service": {}}]), "malformed", "malformed"),
    ],
)
def test_errors_fail_the_poll_with_consuls_message(
    agent: Any, extra: dict, reply: Reply | None, message: str, kind: str
) -> None:
    if reply is not None:
        agent.health = reply
    with pytest.raises(DiscoveryError, match=message) as info:
        poll(agent, **extra)
    assert info.value.kind == kind


def test_an_unreachable_agent_disconnects_nobody(agent: Any) -> None:
    ops = FakeOps("myapp@192.0.2.1")

    async def scenario() -> None:
        async with Cluster(load_topologies(consul_config(agent)), ops) as cluster:
            await wait_until(lambda: ops.connected == {"myapp@192.0.2.22"})
            agent.server.stop()  # the agent goes away
            await wait_until(lambda: not cluster.states()[0].healthy)
            assert "cannot reach" in (cluster.states()[0].last_error or "")
            assert ops.count("disconnect") == 0 and ops.connected == {"myapp@192.0.2.22"}

    run(scenario())
