"""``eureka`` against an HTTP server implementing Eureka's REST operations.

Operations and status codes: https://github.com/Netflix/eureka/wiki/Eureka-REST-operations
(register ``POST /eureka/apps/APP`` -> 204, heartbeat ``PUT .../APP/ID`` -> 200
or 404 if unknown, deregister ``DELETE .../APP/ID`` -> 200, query
``GET /eureka/apps/APP`` -> ``{"application": {"name", "instance": [...]}}``;
the JSON codec renders a single instance as a bare object).

Addresses are from the documentation range 192.0.2.0/24; the ClusterOps is a fake.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pymesh.services.discovery import Cluster, load_topologies

from .discovery_helpers import FakeHTTP, FakeOps, Reply, Request, free_port, run, wait_until


def foreign_instance(ip: str, status: str = "UP") -> dict:
    """An instance registered by some other (non-pymesh) client: no pymesh metadata."""
    return {
        "instanceId": f"{ip}:myapp:8080",
        "hostName": ip,
        "app": "MYAPP",
        "ipAddr": ip,
        "status": status,
        "overriddenStatus": "UNKNOWN",
        "port": {"$": 8080, "@enabled": "true"},
        "securePort": {"$": 443, "@enabled": "false"},
        "countryId": 1,
        "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
        "leaseInfo": {"renewalIntervalInSecs": 30, "durationInSecs": 90},
        "metadata": {"management.port": "8080"},
        "vipAddress": "myapp",
        "isCoordinatingDiscoveryServer": "false",
        "lastUpdatedTimestamp": "1700000000000",
        "lastDirtyTimestamp": "1700000000000",
        "actionType": "ADDED",
    }


class Eureka:
    """A small in-memory Eureka server: registrations, heartbeats, deregistration, app queries."""

    def __init__(self) -> None:
        self.instances: dict[str, dict] = {"other": foreign_instance("192.0.2.7")}
        self.fail_get: Reply | None = None
        self.single_object = False
        self.server = FakeHTTP(self.handle)

    def handle(self, request: Request) -> Reply:
        parts = request.path.strip("/").split("/")
        if parts[:2] != ["eureka", "apps"] or len(parts) < 3 or parts[2] != "MYAPP":
            return Reply(404)
        if request.method == "POST" and len(parts) == 3:
            instance = request.json()["instance"]
            self.instances[instance["instanceId"]] = instance
            return Reply(204)
        if request.method == "PUT" and len(parts) == 4:
            return Reply(200 if parts[3] in self.instances else 404)
        if request.method == "DELETE" and len(parts) == 4:
            return Reply(200 if self.instances.pop(parts[3], None) else 404)
        if request.method == "GET" and len(parts) == 3:
            if self.fail_get is not None:
                return self.fail_get
            if not self.instances:
                return Reply(404)  # Eureka forgets an application without instances
            instances: Any = [copy.deepcopy(i) for i in self.instances.values()]
            if self.single_object and len(instances) == 1:
                instances = instances[0]
            return Reply(200, {"application": {"name": "MYAPP", "instance": instances}})
        return Reply(405)


@pytest.fixture
def eureka() -> Any:
    server = Eureka()
    yield server
    server.server.stop()


def eureka_config(eureka: Any, **extra: Any) -> dict:
    config = {
        "url": f"{eureka.server.url}/eureka",
        "app": "myapp",
        "node_basename": "myapp",
        "heartbeat_interval": 0.05,
        "polling_interval": 0.05,
        "timeout": 2,
        **extra,
    }
    return {"topologies": {"e": {"strategy": "eureka", "config": config}}}


def test_register_heartbeat_discover_and_deregister(eureka: Any) -> None:
    a, b = FakeOps("a@192.0.2.1", dist_port=9101), FakeOps("b@192.0.2.2", dist_port=9102)
    specs = load_topologies(eureka_config(eureka))

    async def scenario() -> None:
        async with Cluster(specs, a):
            async with Cluster(specs, b):
                await wait_until(lambda: a.connected == {"b@192.0.2.2", "myapp@192.0.2.7"})
                await wait_until(lambda: b.connected == {"a@192.0.2.1", "myapp@192.0.2.7"})
                mine = eureka.instances["a@192.0.2.1"]
                assert mine["app"] == "MYAPP" and mine["ipAddr"] == "192.0.2.1" and mine["status"] == "UP"
                assert mine["metadata"] == {"pymesh-node": "a@192.0.2.1", "pymesh-port": "9101"}
                assert mine["dataCenterInfo"]["name"] == "MyOwn"
                await wait_until(lambda: "PUT" in [r.method for r in eureka.server.requests], what="a heartbeat")
            # b stopped: it deregistered, a's next poll no longer lists it
            assert "b@192.0.2.2" not in eureka.instances
            await wait_until(lambda: a.connected == {"myapp@192.0.2.7"})

    run(scenario())
    assert "a@192.0.2.1" not in eureka.instances
    assert all(r.headers.get("accept") == "application/json" for r in eureka.server.requests)


def test_a_forgotten_instance_registers_again_on_heartbeat_404(eureka: Any) -> None:
    ops = FakeOps("a@192.0.2.1")

    async def scenario() -> None:
        async with Cluster(load_topologies(eureka_config(eureka)), ops):
            await wait_until(lambda: "a@192.0.2.1" in eureka.instances)
            del eureka.instances["a@192.0.2.1"]  # Eureka evicted us
            await wait_until(lambda: "a@192.0.2.1" in eureka.instances, what="re-registration")

    run(scenario())
    assert eureka.server.paths("POST").count("/eureka/apps/MYAPP") >= 2


def test_single_instance_object_down_instances_and_discover_only_mode(eureka: Any) -> None:
    eureka.single_object = True
    ops = FakeOps("a@192.0.2.1")

    async def scenario() -> None:
        async with Cluster(load_topologies(eureka_config(eureka, register=False)), ops) as cluster:
            await wait_until(lambda: ops.connected == {"myapp@192.0.2.7"})
            eureka.instances["other"]["status"] = "DOWN"
            await wait_until(lambda: ops.connected == set())
            assert cluster.states()[0].healthy

    run(scenario())
    assert eureka.server.paths("POST") == [] and eureka.server.paths("PUT") == []


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(404), "answered 404"),
        (Reply(500, "java.lang.NullPointerException"), "answered 500: java.lang.NullPointerException"),
        (Reply(200, "<application/>"), "not JSON"),
        (Reply(200, {"applications": {}}), "malformed"),
        (
            Reply(
                200, {"application": {"name": "MYAPP", "instance": [{"status": "UP", "metadata": {"pymesh-node": 5}}]}}
            ),
            "malformed",
        ),
    ],
)
def test_failed_queries_disconnect_nobody(eureka: Any, reply: Reply, message: str) -> None:
    ops = FakeOps("a@192.0.2.1")

    async def scenario() -> None:
        async with Cluster(load_topologies(eureka_config(eureka)), ops) as cluster:
            await wait_until(lambda: ops.connected == {"myapp@192.0.2.7"})
            eureka.fail_get = reply
            await wait_until(lambda: not cluster.states()[0].healthy)
            assert message in (cluster.states()[0].last_error or "")
            n = len(eureka.server.requests)
            await wait_until(lambda: len(eureka.server.requests) > n + 3)
            assert ops.count("disconnect") == 0
            eureka.fail_get = None
            await wait_until(lambda: cluster.states()[0].healthy, what="resumed")

    run(scenario())


def test_eureka_unreachable_at_start_up() -> None:
    ops = FakeOps("a@192.0.2.1")
    config = {
        "topologies": {
            "e": {
                "strategy": "eureka",
                "config": {
                    "url": f"http://127.0.0.1:{free_port()}/eureka",
                    "app": "myapp",
                    "polling_interval": 0.05,
                    "timeout": 0.5,
                },
            }
        }
    }

    async def scenario() -> None:
        async with Cluster(load_topologies(config), ops) as cluster:
            await wait_until(lambda: cluster.states()[0].last_error is not None)
            assert "cannot reach" in (cluster.states()[0].last_error or "")

    run(scenario())
