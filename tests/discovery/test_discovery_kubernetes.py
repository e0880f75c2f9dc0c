"""``kubernetes`` against an HTTPS server that answers as the API server documents.

Shapes follow the Kubernetes API reference:
* list paging with ``limit`` / ``continue`` and ``410 Gone`` for an expired token:
  https://kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks
* Endpoints (subsets, addresses with ip / hostname / nodeName / targetRef):
  https://kubernetes.io/docs/reference/kubernetes-api/service-resources/endpoints-v1/
* Pods (metadata, spec.hostname, status.phase / podIP):
  https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/
* error bodies are ``Status`` objects:
  https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/

Addresses are from the documentation ranges (192.0.2.0/24, 2001:db8::/32);
nothing is ever sent to them — the ClusterOps is a fake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pymesh._errors import DiscoveryError
from pymesh.services.discovery import Cluster, load_topologies
from pymesh.services.discovery._kubernetes import KubernetesStrategy
from pymesh.services.discovery._strategy import LocalNode

from .discovery_helpers import FakeHTTP, FakeOps, Reply, Request, make_tls, run, wait_until

TOKEN = "eyJhbGciOiJSUzI1NiJ9.test-token"


def status(code: int, reason: str, message: str) -> Reply:
    return Reply(
        code,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        },
    )


def endpoint_address(ip: str, pod: str) -> dict:
    return {
        "ip": ip,
        "hostname": pod,
        "nodeName": "worker-1",
        "targetRef": {"kind": "Pod", "namespace": "prod", "name": pod, "uid": f"uid-{pod}"},
    }


def endpoints(*pods: tuple[str, str], name: str = "myapp") -> dict:
    return {
        "metadata": {"name": name, "namespace": "prod", "labels": {"app": "myapp"}},
        "subsets": [
            {
                "addresses": [endpoint_address(ip, pod) for ip, pod in pods],
                "notReadyAddresses": [
                    {"ip": "192.0.2.99", "targetRef": {"kind": "Pod", "namespace": "prod", "name": "x"}}
                ],
                "ports": [{"name": "dist", "port": 9100, "protocol": "TCP"}],
            }
        ],
    }


def page(kind: str, items: list, token: str = "") -> dict:
    return {
        "kind": kind,
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "10245", "continue": token},
        "items": items,
    }


class ApiServer:
    """Serves /api/v1/namespaces/prod/endpoints in pages of one item; ``pages`` maps a continue token to a reply."""

    def __init__(self, tls: Any) -> None:
        self.pages: dict[str, Reply] = {
            "": Reply(200, page("EndpointsList", [endpoints(("192.0.2.1", "myapp-0"))], "tok-1")),
            "tok-1": Reply(
                200,
                page(
                    "EndpointsList",
                    [endpoints(("192.0.2.2", "myapp-1"), ("2001:db8::3", "myapp-2"), name="myapp-b")],
                    "",
                ),
            ),
        }
        self.server = FakeHTTP(self.handle, tls=tls)

    def handle(self, request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return status(401, "Unauthorized", "Unauthorized")
        if request.path not in ("/api/v1/namespaces/prod/endpoints", "/api/v1/namespaces/prod/pods"):
            return status(404, "NotFound", f"the server could not find the requested resource ({request.path})")
        token = request.query.get("continue", [""])[0]
        return self.pages.get(token, status(410, "Expired", "The provided continue parameter is too old"))


@pytest.fixture
def api(tmp_path: Path) -> Any:
    tls, ca_file = make_tls(tmp_path)
    server = ApiServer(tls)
    server.ca = ca_file
    yield server
    server.server.stop()


def k8s_config(api: Any, tmp_path: Path, **extra: Any) -> dict:
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "namespace").write_text("prod\n")
    config = {
        "selector": "app=myapp",
        "node_basename": "myapp",
        "api_server": api.server.url,
        "token_path": str(tmp_path / "token"),
        "ca_path": str(api.ca),
        "namespace_path": str(tmp_path / "namespace"),
        "page_size": 1,
        "polling_interval": 0.05,
        "timeout": 2,
        **extra,
    }
    return {"topologies": {"k": {"strategy": "kubernetes", "config": config}}}


def strategy(api: Any, tmp_path: Path, **extra: Any) -> KubernetesStrategy:
    (spec,) = load_topologies(k8s_config(api, tmp_path, **extra))
    return KubernetesStrategy(spec.config, LocalNode("myapp@192.0.2.1"))


async def poll(s: KubernetesStrategy) -> set[str]:
    try:
        return await s.poll()
    finally:
        await s.aclose()


def test_endpoints_are_listed_page_by_page_over_tls_with_the_token(api: Any, tmp_path: Path) -> None:
    assert run(poll(strategy(api, tmp_path))) == {"myapp@192.0.2.1", "myapp@192.0.2.2", "myapp@2001:db8::3"}
    first, second = api.server.requests
    assert first.query == {"labelSelector": ["app=myapp"], "limit": ["1"]}
    assert second.query["continue"] == ["tok-1"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            "dns",
            {
                "myapp@192-0-2-1.prod.pod.cluster.local",
                "myapp@192-0-2-2.prod.pod.cluster.local",
                "myapp@2001-db8--3.prod.pod.cluster.local",
            },
        ),
        (
            "hostname",
            {
                "myapp@myapp-0.myapp-headless.prod.svc.cluster.local",
                "myapp@myapp-1.myapp-headless.prod.svc.cluster.local",
                "myapp@myapp-2.myapp-headless.prod.svc.cluster.local",
            },
        ),
    ],
)
def test_dns_and_hostname_modes(api: Any, tmp_path: Path, mode: str, expected: set[str]) -> None:
    assert run(poll(strategy(api, tmp_path, mode=mode, service_name="myapp-headless"))) == expected


def test_pods_lookup_keeps_running_pods_with_an_ip(api: Any, tmp_path: Path) -> None:
    def pod(name: str, ip: str | None, phase: str, deleting: bool = False) -> dict:
        metadata: dict = {"name": name, "namespace": "prod", "labels": {"app": "myapp"}}
        if deleting:
            metadata["deletionTimestamp"] = "2024-01-01T00:00:00Z"
        pod_status: dict = {"phase": phase}
        if ip:
            pod_status["podIP"] = ip
        return {"metadata": metadata, "spec": {"hostname": name, "subdomain": "myapp-headless"}, "status": pod_status}

    api.pages = {
        "": Reply(200, page("PodList", [pod("myapp-0", "192.0.2.1", "Running"), pod("myapp-1", None, "Pending")], "t")),
        "t": Reply(
            200,
            page(
                "PodList",
                [pod("myapp-2", "192.0.2.3", "Running", deleting=True), pod("myapp-3", "192.0.2.4", "Running")],
            ),
        ),
    }
    s = strategy(api, tmp_path, lookup="pods", mode="hostname", service_name="myapp-headless")
    assert run(poll(s)) == {
        "myapp@myapp-0.myapp-headless.prod.svc.cluster.local",
        "myapp@myapp-3.myapp-headless.prod.svc.cluster.local",
    }
    assert api.server.paths() == ["/api/v1/namespaces/prod/pods"] * 2


def test_an_expired_continue_token_restarts_the_list_once(api: Any, tmp_path: Path) -> None:
    served = []

    def first_page() -> Reply:
        served.append(1)
        token = "stale" if len(served) == 1 else "tok-1"  # the first listing gets a token that expires
        return Reply(200, page("EndpointsList", [endpoints(("192.0.2.1", "myapp-0"))], token))

    pages = api.pages
    api.server.handler = lambda r: first_page() if not r.query.get("continue") else api.handle(r)
    api.pages = {"tok-1": pages["tok-1"]}
    assert run(poll(strategy(api, tmp_path))) == {"myapp@192.0.2.1", "myapp@192.0.2.2", "myapp@2001:db8::3"}
    assert len(served) == 2


@pytest.mark.parametrize(
    ("reply", "message", "kind"),
    [
        (
            status(403, "Forbidden", 'endpoints is forbidden: User "system:serviceaccount:prod:default" cannot list'),
            "answered 403: Forbidden: endpoints is forbidden",
            "http 403",
        ),
        (status(500, "InternalError", "etcdserver: request timed out"), "answered 500: InternalError", "http 500"),
        (Reply(503, "upstream connect error"), "answered 503: upstream connect error", "http 503"),
        (Reply(200, "<html>not json</html>"), "not JSON", "malformed"),
        (Reply(200, {"kind": "EndpointsList", "items": "nope"}), "no 'items' list", "malformed"),
        (
            Reply(200, page("EndpointsList", [{"subsets": [{"addresses": [{"hostname": "no-ip"}]}]}])),
            "malformed",
            "malformed",
        ),
    ],
)
def test_errors_and_malformed_answers_fail_the_poll(
    api: Any, tmp_path: Path, reply: Reply, message: str, kind: str
) -> None:
    api.pages = {"": reply}
    with pytest.raises(DiscoveryError, match=message) as info:
        run(poll(strategy(api, tmp_path)))
    assert info.value.kind == kind and "\n" not in str(info.value)


def test_a_failing_api_server_disconnects_nobody_and_discovery_resumes(api: Any, tmp_path: Path) -> None:
    ops = FakeOps("myapp@192.0.2.1")
    good = dict(api.pages)

    async def scenario() -> None:
        async with Cluster(load_topologies(k8s_config(api, tmp_path)), ops) as cluster:
            await wait_until(lambda: ops.connected == {"myapp@192.0.2.2", "myapp@2001:db8::3"})
            api.pages = {"": status(500, "InternalError", "boom")}
            await wait_until(lambda: not cluster.states()[0].healthy)
            n = len(api.server.requests)
            await wait_until(lambda: len(api.server.requests) > n + 3, what="more failed polls")
            assert ops.count("disconnect") == 0
            api.pages = {"": good[""], "tok-1": Reply(200, page("EndpointsList", []))}  # myapp-1, -2 are gone
            await wait_until(lambda: ops.connected == set(), what="departed pods disconnected")

    run(scenario())


def test_token_is_reread_at_every_poll(api: Any, tmp_path: Path) -> None:
    s = strategy(api, tmp_path)
    (tmp_path / "token").write_text("rotated")

    async def scenario() -> None:
        with pytest.raises(DiscoveryError, match="401"):
            await s.poll()
        (tmp_path / "token").write_text(TOKEN)
        assert await s.poll()
        await s.aclose()

    run(scenario())
