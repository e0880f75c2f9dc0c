"""``kubernetes``: ask the API server for the pods behind a label selector.

Lists Endpoints (``lookup = "endpoints"``, the default: only ready pods) or
Pods (``lookup = "pods"``: running pods with an IP) in ``namespace`` matching
``selector``, following ``continue`` tokens page by page (``page_size`` per
page). A ``410 Gone`` on a stale token restarts the listing once, as the API
conventions require.

Node names, as in libcluster (``mode``):

* ``"ip"`` — ``basename@10.1.2.3``;
* ``"dns"`` — ``basename@10-1-2-3.NAMESPACE.pod.CLUSTER_DOMAIN``;
* ``"hostname"`` — ``basename@HOSTNAME.SERVICE.NAMESPACE.svc.CLUSTER_DOMAIN``
  (pods with a hostname under a headless service ``service_name``).

Credentials come from the pod's service account at the standard paths: the
token from ``token_path`` (read at every poll, since bound tokens rotate),
the CA from ``ca_path``, the default namespace from ``namespace_path``. The
API server is ``api_server``, by default ``https://$KUBERNETES_SERVICE_HOST:
$KUBERNETES_SERVICE_PORT`` or ``https://kubernetes.default.svc``.

An answer that is not of the documented shape fails the poll as a whole: a
half-understood answer must not disconnect anyone.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import httpx

from pymesh._errors import DiscoveryError

from . import _http
from ._strategy import NETWORK, Option, PollingStrategy, choice, integer, optional_text, text

__all__ = ["KubernetesStrategy"]

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_MAX_PAGES = 1000


def _default_api_server() -> str:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if host:
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{port}"
    return "https://kubernetes.default.svc"


def _status_message(response: httpx.Response) -> str:
    """The message of a ``Status`` object, the API server's error body."""
    try:
        status = response.json()
        if isinstance(status, Mapping) and status.get("kind") == "Status":
            reason = status.get("reason") or ""
            message = status.get("message") or ""
            return f"{reason}: {message}" if reason else str(message)
    except ValueError:
        pass
    return _http.excerpt(response)


class KubernetesStrategy(PollingStrategy):
    """``kubernetes``: pods by label selector, from Endpoints or Pods; see the module docstring."""

    name = "kubernetes"
    options: ClassVar[Mapping[str, Option]] = {
        "selector": Option(text, doc="label selector, e.g. 'app=myapp'"),
        "node_basename": Option(text, doc="the part of each node name before '@'"),
        "namespace": Option(optional_text, "", "namespace to list in (default: the pod's own)"),
        "lookup": Option(choice("endpoints", "pods"), "endpoints"),
        "mode": Option(choice("ip", "dns", "hostname"), "ip"),
        "service_name": Option(optional_text, "", "headless service, for mode = 'hostname'"),
        "cluster_domain": Option(text, "cluster.local"),
        "api_server": Option(text, "", "API server URL (default: from the environment)"),
        "token_path": Option(text, str(SERVICE_ACCOUNT / "token")),
        "ca_path": Option(text, str(SERVICE_ACCOUNT / "ca.crt")),
        "namespace_path": Option(text, str(SERVICE_ACCOUNT / "namespace")),
        "page_size": Option(integer(1, 10_000), 500),
        **NETWORK,
    }

    @classmethod
    def check(cls, config: Mapping[str, Any]) -> None:
        if config["mode"] == "hostname" and not config["service_name"]:
            raise ValueError("mode = 'hostname' needs service_name (the headless service)")

    def __init__(self, config: Mapping[str, Any], local: Any) -> None:
        super().__init__(config, local)
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            ca = Path(self.config["ca_path"])
            verify: Any = ssl.create_default_context(cafile=str(ca)) if ca.is_file() else True
            self._http = _http.client(self.config["timeout"], verify=verify, headers={"Accept": "application/json"})
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def _namespace(self) -> str:
        if self.config["namespace"]:
            return str(self.config["namespace"])
        try:
            return Path(self.config["namespace_path"]).read_text().strip() or "default"
        except OSError:
            return "default"

    def _headers(self) -> dict[str, str]:
        try:
            token = Path(self.config["token_path"]).read_text().strip()
        except OSError:
            return {}  # e.g. behind `kubectl proxy`
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def poll(self) -> set[str]:
        namespace = self._namespace()
        api = (self.config["api_server"] or _default_api_server()).rstrip("/")
        url = f"{api}/api/v1/namespaces/{namespace}/{self.config['lookup']}"
        try:
            items = await self._list(url)
        except DiscoveryError as exc:
            if exc.kind != "http 410":
                raise
            items = await self._list(url)  # the continue token expired: list again from the start
        addresses = _http.parse(lambda: self._addresses(items, namespace), "kubernetes", url)
        # In hostname mode, an address without a hostname has no stable name
        # to connect to: it is left out (like an unready pod), not an error.
        return {name for address in addresses if (name := self._node_name(address))}

    async def _list(self, url: str) -> list[Any]:
        """Every item of a list call, page by page."""
        items: list[Any] = []
        params: dict[str, Any] = {"labelSelector": self.config["selector"], "limit": self.config["page_size"]}
        for _ in range(_MAX_PAGES):
            page = await _http.request_json(
                self._client(),
                "GET",
                url,
                "kubernetes",
                params=params,
                headers=self._headers(),
                error_message=_status_message,
            )

            def read(page: Any = page) -> tuple[list[Any], str]:
                if not isinstance(page, Mapping) or not isinstance(page.get("items"), list):
                    raise ValueError("no 'items' list")
                token = (page.get("metadata") or {}).get("continue") or ""
                if not isinstance(token, str):
                    raise ValueError("metadata.continue is not a string")
                return page["items"], token

            page_items, token = _http.parse(read, "kubernetes", url)
            items.extend(page_items)
            if not token:
                return items
            params["continue"] = token
        raise DiscoveryError(f"kubernetes: more than {_MAX_PAGES} pages from {url}", kind="malformed")

    def _addresses(self, items: list[Any], namespace: str) -> list[dict[str, str]]:
        """``{"ip", "namespace", "hostname"}`` for each address the items describe."""
        found: list[dict[str, str]] = []
        for item in items:
            item_ns = (item.get("metadata") or {}).get("namespace") or namespace
            if self.config["lookup"] == "endpoints":
                for subset in item.get("subsets") or []:
                    for address in subset.get("addresses") or []:
                        ref = address.get("targetRef") or {}
                        found.append(_address(address["ip"], ref.get("namespace") or item_ns, address.get("hostname")))
            else:
                status = item.get("status") or {}
                metadata = item.get("metadata") or {}
                if not status.get("podIP") or status.get("phase") != "Running" or metadata.get("deletionTimestamp"):
                    continue
                hostname = (item.get("spec") or {}).get("hostname") or metadata.get("name")
                found.append(_address(status["podIP"], item_ns, hostname))
        return found

    def _node_name(self, address: Mapping[str, str]) -> str | None:
        base = self.config["node_basename"]
        domain = self.config["cluster_domain"]
        mode = self.config["mode"]
        if mode == "ip":
            return f"{base}@{address['ip']}"
        if mode == "dns":
            dashed = address["ip"].replace(".", "-").replace(":", "-")
            return f"{base}@{dashed}.{address['namespace']}.pod.{domain}"
        if not address["hostname"]:
            return None
        return f"{base}@{address['hostname']}.{self.config['service_name']}.{address['namespace']}.svc.{domain}"


def _address(ip: Any, namespace: Any, hostname: Any) -> dict[str, str]:
    if not isinstance(ip, str) or not ip:
        raise ValueError(f"bad ip {ip!r}")
    if not isinstance(namespace, str) or (hostname is not None and not isinstance(hostname, str)):
        raise ValueError("bad namespace or hostname")
    return {"ip": ip, "namespace": namespace, "hostname": hostname or ""}
