"""Cluster discovery: find peers, connect to them, reconnect them, let go of the departed.

This is libcluster for pymesh. A node started with one or more *topologies*
runs one discovery *strategy* per topology; each strategy asks some source
of truth which nodes exist, and discovery connects to the ones it finds.

Use cases
---------
* A fixed set of hosts — ``static``; every node on this machine — ``local``.
* Nodes on one LAN find each other with no service at all — ``gossip``
  (UDP multicast heartbeats, optionally sealed with a shared ``secret``).
* Nodes behind a DNS name or a Kubernetes headless service — ``dns``
  (A/AAAA records) and ``dns_srv`` (SRV records); or asking the API server
  directly — ``kubernetes`` (Endpoints or Pods by label selector).
* Nodes registered in a service registry — ``etcd`` (register with a lease
  and watch), ``consul`` (health, catalog or agent API), ``eureka``
  (register, heartbeat, poll).

Configure in TOML (``pymesh run --topology FILE``; without the flag,
``topologies.toml`` in the user config directory, see
:func:`default_config_path`), or pass the same shape as a dict::

    wait_for = 2                  # optional: start-up waits for 2 peers...
    wait_timeout = 30             # ...for at most 30 s

    [topologies.lan]
    strategy = "gossip"
    [topologies.lan.config]
    secret = "a long random string shared by the cluster"

    [topologies.k8s]
    strategy = "kubernetes"
    connect = "myapp.cluster:connect"     # optional hooks, like libcluster's MFAs
    [topologies.k8s.config]
    selector = "app=myapp"
    node_basename = "myapp"
    mode = "dns"

and start it from Python::

    config = load_config("topologies.toml")          # raises ConfigError, one line
    cluster = await start_topologies(config)         # waits for wait_for peers
    for state in cluster.states(): print(state)
    await cluster.stop()

The strategies and their ``config`` keys (required ones in bold; each
class's docstring, reached through :data:`BUILTIN_STRATEGIES`, says more):

* ``static`` — **hosts**, polling_interval (5 s).
* ``local`` — host (127.0.0.1), epmd_port, polling_interval.
* ``gossip`` — port (45892), if_addr, multicast_if, multicast_addr
  (233.252.1.32), multicast_ttl (1), broadcast_only, secret,
  heartbeat_interval (5 s), max_age (30 s).
* ``dns`` / ``dns_srv`` — **query**, **node_basename**, nameservers,
  polling_interval, timeout (5 s).
* ``kubernetes`` — **selector**, **node_basename**, namespace, lookup
  (endpoints | pods), mode (ip | dns | hostname), service_name,
  cluster_domain, api_server, token_path, ca_path, namespace_path,
  page_size, polling_interval, timeout.
* ``etcd`` — endpoints, prefix (/pymesh/nodes/), ttl (15 s),
  polling_interval, timeout.
* ``consul`` — **service**, **node_basename**, url, api (health | catalog |
  agent), passing, tag, datacenter, token, polling_interval, timeout.
* ``eureka`` — **app**, url, node_basename, register, instance_id,
  heartbeat_interval (30 s), lease_duration (90 s), polling_interval,
  timeout.

An unknown strategy or key, a missing required key or a bad value is
refused when the configuration is loaded, before anything starts.

Guarantees and caveats
----------------------
* **Reconnects.** Each answer is compared with the nodes connected *now*, so
  a peer that went away and came back is connected again.
* **Only answers disconnect.** A node is disconnected only when a
  *successful* answer stops listing it (and only by the topology that found
  it, if no other topology still finds it). A timeout, a 5xx, a DNS error or
  etcd being down disconnects nothing; ``gossip`` and ``static`` never
  disconnect.
* **Crashes stay inside.** Each topology runs as a supervised asyncio task:
  a crashing strategy is logged once and restarted with exponential backoff;
  the node keeps running.
* **Quiet logs.** Failures, recoveries, unreachable peers and dropped
  gossip datagrams are logged on the ``pymesh.discovery`` logger once per
  change of state, not once per poll.
* **Discovery is eventually right, not instantly.** Between polls the view
  can be stale by up to ``polling_interval``; two topologies may briefly
  disagree.

Public API
----------
* :func:`load_config` / :func:`load_topologies` — read and check a TOML file
  or dict into a :class:`DiscoveryConfig` / list of :class:`TopologySpec`;
  :func:`default_config_path` — where the file is looked for by default.
* :func:`start_topologies` — start a :class:`Cluster`, optionally waiting
  for N peers; :class:`Cluster` — ``start()``, ``wait_connected(n,
  timeout)``, ``states()``, ``stop()``, ``async with``.
* :class:`TopologyState` — the frozen record of one topology (last poll,
  nodes found, last error, connected); :func:`states` — those of every
  running cluster of this process.
* :class:`ClusterOps` — the operations discovery performs on the node;
  :class:`DefaultOps` uses ``pymesh.Node``.
* :class:`Strategy`, :class:`PollingStrategy`, :class:`Report`,
  :class:`Option`, :class:`LocalNode` — to write a strategy of your own and
  name it as ``strategy = "package.module:Class"``.
* :data:`BUILTIN_STRATEGIES` — the names above and where they live.
"""

from ._cluster import Cluster, start_topologies, states
from ._config import (
    BUILTIN_STRATEGIES,
    DiscoveryConfig,
    TopologySpec,
    default_config_path,
    load_config,
    load_topologies,
)
from ._ops import ClusterOps, DefaultOps
from ._strategy import LocalNode, Option, PollingStrategy, Report, Strategy
from ._topology import TopologyState

__all__ = [
    "BUILTIN_STRATEGIES",
    "Cluster",
    "ClusterOps",
    "DefaultOps",
    "DiscoveryConfig",
    "LocalNode",
    "Option",
    "PollingStrategy",
    "Report",
    "Strategy",
    "TopologySpec",
    "TopologyState",
    "default_config_path",
    "load_config",
    "load_topologies",
    "start_topologies",
    "states",
]
