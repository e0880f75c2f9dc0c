"""``consul``: the instances of a service, from Consul's health, catalog or agent API.

* ``api = "health"`` (default) — ``GET /v1/health/service/SERVICE``, with
  ``?passing`` unless ``passing = false``: only instances whose checks pass.
* ``api = "catalog"`` — ``GET /v1/catalog/service/SERVICE``: every registered
  instance, healthy or not.
* ``api = "agent"`` — ``GET /v1/agent/services``: the services registered
  with the local agent only (instances without an address use the agent's).

Each instance's address is its service address, or its node's address when
the service has none (Consul's own rule); it becomes ``node_basename@ADDRESS``.
``token`` is sent as ``X-Consul-Token`` (ACLs); ``datacenter`` and ``tag``
narrow the query. Consul answers errors in plain text ("ACL not found"); they
fail the poll with that text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from . import _http
from ._strategy import NETWORK, Option, PollingStrategy, choice, flag, optional_text, text

__all__ = ["ConsulStrategy"]


class ConsulStrategy(PollingStrategy):
    """``consul``: service instances from Consul; see the module docstring."""

    name = "consul"
    options: ClassVar[Mapping[str, Option]] = {
        "url": Option(text, "http://127.0.0.1:8500", "the Consul agent's HTTP address"),
        "service": Option(text, doc="the service name"),
        "node_basename": Option(text, doc="the part of each node name before '@'"),
        "api": Option(choice("health", "catalog", "agent"), "health"),
        "passing": Option(flag, True, "health API: only instances whose checks pass"),
        "tag": Option(optional_text, "", "only instances with this tag"),
        "datacenter": Option(optional_text, "", "datacenter to ask (default: the agent's)"),
        "token": Option(optional_text, "", "ACL token"),
        **NETWORK,
    }

    def __init__(self, config: Mapping[str, Any], local: Any) -> None:
        super().__init__(config, local)
        headers = {"Accept": "application/json"}
        if config["token"]:
            headers["X-Consul-Token"] = config["token"]
        self._http: httpx.AsyncClient = _http.client(config["timeout"], headers=headers)
        self._base = config["url"].rstrip("/")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def poll(self) -> set[str]:
        base = self.config["node_basename"]
        api = self.config["api"]
        if api == "agent":
            addresses = await self._agent()
        else:
            addresses = await self._catalog(api)
        return {f"{base}@{address}" for address in addresses}

    async def _get(self, path: str, params: Mapping[str, Any] | None = None) -> tuple[Any, str]:
        url = self._base + path
        return await _http.request_json(self._http, "GET", url, "consul", params=params), url

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.config["datacenter"]:
            params["dc"] = self.config["datacenter"]
        if self.config["tag"]:
            params["tag"] = self.config["tag"]
        return params

    async def _catalog(self, api: str) -> set[str]:
        service = self.config["service"]
        params = self._params()
        if api == "health" and self.config["passing"]:
            params["passing"] = "true"
        answer, url = await self._get(f"/v1/{api}/service/{service}", params)

        def read() -> set[str]:
            if not isinstance(answer, list):
                raise ValueError("expected a JSON array")
            found = set()
            for entry in answer:
                if api == "health":  # {"Node": {...}, "Service": {...}, "Checks": [...]}
                    address = entry["Service"].get("Address") or entry["Node"]["Address"]
                else:  # flat: {"Address": node address, "ServiceAddress": ..., ...}
                    address = entry.get("ServiceAddress") or entry["Address"]
                found.add(_address(address))
            return found

        return _http.parse(read, "consul", url)

    async def _agent(self) -> set[str]:
        answer, url = await self._get("/v1/agent/services")
        service, tag = self.config["service"], self.config["tag"]

        def read() -> tuple[set[str], bool]:
            if not isinstance(answer, Mapping):
                raise ValueError("expected a JSON object of services")
            found, need_agent = set(), False
            for entry in answer.values():
                if entry["Service"] != service or (tag and tag not in (entry.get("Tags") or [])):
                    continue
                if entry.get("Address"):
                    found.add(_address(entry["Address"]))
                else:
                    need_agent = True
            return found, need_agent

        found, need_agent = _http.parse(read, "consul", url)
        if need_agent:
            me, url = await self._get("/v1/agent/self")
            found.add(_http.parse(lambda: _address(me["Member"]["Addr"]), "consul", url))
        return found


def _address(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"bad address {value!r}")
    return value
