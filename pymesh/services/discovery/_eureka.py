"""``eureka``: register with a Netflix Eureka server, heartbeat, and poll the app's instances.

Uses Eureka's REST operations under ``url`` (e.g. ``http://eureka:8761/eureka``):

* register — ``POST /apps/APP`` with this node as an instance (``status``
  UP, ``ipAddr`` and ``hostName`` from the node name, the distribution port,
  and metadata ``pymesh-node`` holding the full node name);
* heartbeat — ``PUT /apps/APP/INSTANCE`` every ``heartbeat_interval``
  (Eureka's 30 s renewal by default); a 404 means Eureka forgot us, so we
  register again;
* poll — ``GET /apps/APP`` every ``polling_interval``: every instance with
  status UP is a node, named by its ``pymesh-node`` metadata, or
  ``node_basename@ipAddr`` for instances registered by something else;
* deregister — ``DELETE /apps/APP/INSTANCE`` when the topology stops.

Set ``register = false`` to only discover. A 404 on the poll (Eureka drops an
application with no instances) fails the poll rather than disconnecting
everyone. Eureka's JSON renders a one-element list as a bare object; both
shapes are accepted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from pymesh._errors import DiscoveryError

from . import _http
from ._strategy import NETWORK, Option, PollingStrategy, Report, flag, integer, optional_text, seconds, text

__all__ = ["EurekaStrategy"]

_METADATA_NODE = "pymesh-node"


class EurekaStrategy(PollingStrategy):
    """``eureka``: register, heartbeat and poll; see the module docstring."""

    name = "eureka"
    options: ClassVar[Mapping[str, Option]] = {
        "url": Option(text, "http://127.0.0.1:8761/eureka", "Eureka's base URL, up to /eureka"),
        "app": Option(text, doc="the application name (Eureka upper-cases it)"),
        "node_basename": Option(optional_text, "", "names instances registered without pymesh metadata"),
        "register": Option(flag, True, "register this node, or only discover"),
        "instance_id": Option(optional_text, "", "this node's instance id (default: its node name)"),
        "heartbeat_interval": Option(seconds, 30.0),
        "lease_duration": Option(integer(1, 86_400), 90, "seconds Eureka keeps us without a heartbeat"),
        **NETWORK,
    }

    def __init__(self, config: Mapping[str, Any], local: Any) -> None:
        super().__init__(config, local)
        self._http: httpx.AsyncClient = _http.client(
            config["timeout"], headers={"Accept": "application/json", "Content-Type": "application/json"}
        )
        self._app = str(config["app"]).upper()
        self._base = config["url"].rstrip("/")
        self._instance_id = config["instance_id"] or local.name
        self._registered = False

    @property
    def _instance_url(self) -> str:
        return f"{self._base}/apps/{self._app}/{self._instance_id}"

    async def run(self, report: Report) -> None:
        if not self.config["register"]:
            return await super().run(report)
        heartbeat = asyncio.create_task(self._heartbeat(report))
        try:
            await super().run(report)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)

    async def aclose(self) -> None:
        try:
            if self._registered:
                self._registered = False
                await self._http.delete(self._instance_url)
        except httpx.HTTPError:
            pass  # Eureka expires us after lease_duration anyway
        finally:
            await self._http.aclose()

    def _instance(self) -> dict[str, Any]:
        host = self.local.host or self.local.name
        port = self.local.dist_port
        metadata = {_METADATA_NODE: self.local.name}
        if port:
            metadata["pymesh-port"] = str(port)
        return {
            "instance": {
                "instanceId": self._instance_id,
                "hostName": host,
                "app": self._app,
                "ipAddr": host,
                "vipAddress": self._app.lower(),
                "secureVipAddress": self._app.lower(),
                "status": "UP",
                "port": {"$": port or 0, "@enabled": "true" if port else "false"},
                "securePort": {"$": 0, "@enabled": "false"},
                "dataCenterInfo": {
                    "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
                    "name": "MyOwn",
                },
                "leaseInfo": {
                    "renewalIntervalInSecs": int(self.config["heartbeat_interval"]),
                    "durationInSecs": self.config["lease_duration"],
                },
                "metadata": metadata,
            }
        }

    async def _register(self) -> None:
        url = f"{self._base}/apps/{self._app}"
        await _http.request_json(self._http, "POST", url, "eureka", json=self._instance(), allow_empty=True)
        self._registered = True

    async def _heartbeat(self, report: Report) -> None:
        """Renew the lease every ``heartbeat_interval``; register again when Eureka says 404."""
        while True:
            await asyncio.sleep(self.config["heartbeat_interval"])
            if not self._registered:
                continue  # the poll registers first
            try:
                try:
                    await _http.request_json(self._http, "PUT", self._instance_url, "eureka", allow_empty=True)
                except DiscoveryError as exc:
                    if exc.kind != "http 404":
                        raise
                    await self._register()
            except DiscoveryError as exc:
                report.note("eureka heartbeat", str(exc))

    async def poll(self) -> set[str]:
        if self.config["register"] and not self._registered:
            await self._register()
        url = f"{self._base}/apps/{self._app}"
        answer = await _http.request_json(self._http, "GET", url, "eureka")
        return _http.parse(lambda: self._nodes(answer), "eureka", url)

    def _nodes(self, answer: Any) -> set[str]:
        instances = answer["application"].get("instance") or []
        if isinstance(instances, Mapping):
            instances = [instances]
        if not isinstance(instances, list):
            raise ValueError("application.instance is not a list")
        found = set()
        for instance in instances:
            if instance.get("status") != "UP":
                continue
            node = (instance.get("metadata") or {}).get(_METADATA_NODE)
            if not node and self.config["node_basename"]:
                node = f"{self.config['node_basename']}@{instance['ipAddr']}"
            if node:
                if not isinstance(node, str):
                    raise ValueError(f"bad node name {node!r}")
                found.add(node)
        return found
