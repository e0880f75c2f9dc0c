"""Services built on the runtime: registries, global names, process groups, discovery.

* :class:`Registry` — Elixir's local key-value process storage (unique or
  duplicate keys, partitions, listeners, via-names);
* :class:`Global` — Erlang's ``:global``: cluster-wide unique names and locks;
* :class:`PG` — OTP's ``pg``: process groups in scopes, across the cluster;
* :class:`DistributedRegistry` — unique names replicated over the nodes that
  run it by a delta-state CRDT (eventually consistent, deterministic conflict
  winner); :class:`DistributedSupervisor` — children placed over the cluster,
  restarted on survivors, exactly one copy after a partition heals;
  :class:`EtcdRegistry` — linearizable names held in etcd under leases;
* :mod:`pymesh.services.discovery` — finding and connecting peers.

Importing this package makes every node this runtime starts serve global
names and the default process-group scope (start hooks of the runtime), and
serves them at once if the node is already up.
"""

from __future__ import annotations

from .._errors import NotAlive
from ..runtime import _node
from . import _global, _pg
from ._global import Global
from ._pg import PG
from ._registry import Registry, RegistryStatistics
from ._dist_registry import DistributedRegistry, DistributedRegistryStats
from ._dist_supervisor import (
    DistributedChildSpec,
    DistributedSupervisor,
    DistributionStrategy,
    NoQuorum,
    UniformDistribution,
    UniformQuorumDistribution,
)
from ._etcd_registry import EtcdRegistry, EtcdRegistryStats

__all__ = [
    "Registry",
    "RegistryStatistics",
    "Global",
    "PG",
    "DistributedRegistry",
    "DistributedRegistryStats",
    "DistributedSupervisor",
    "DistributedChildSpec",
    "DistributionStrategy",
    "UniformDistribution",
    "UniformQuorumDistribution",
    "NoQuorum",
    "EtcdRegistry",
    "EtcdRegistryStats",
]


def _install_services(dist: _node.Distribution) -> None:
    _global.install(dist)
    _pg.install(dist)


_node.start_hooks.append(_install_services)
try:
    _install_services(_node.current_distribution())  # loaded after the node started
except NotAlive:
    pass
