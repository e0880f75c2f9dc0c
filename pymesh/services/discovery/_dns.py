"""DNS strategies: A/AAAA records of a name, and SRV records (Kubernetes headless services).

Both ask through dnspython's asyncio resolver: the system's resolvers by
default, or the ``nameservers`` listed in the config (``"10.0.0.2"``,
``"127.0.0.1:5353"``, ``"[::1]:53"``).

What counts as an answer (libcluster #82): a response with no records of the
type asked (NOERROR, no data) is a successful, empty answer; NXDOMAIN,
SERVFAIL, REFUSED, timeouts and malformed responses are failures, and
failures never disconnect a node. A name that vanished altogether (NXDOMAIN)
is more often a typo or an outage than a cluster scaled to zero.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from pymesh._errors import DiscoveryError

from ._strategy import NETWORK, Option, PollingStrategy, text, text_list

__all__ = ["DnsSrvStrategy", "DnsStrategy", "parse_nameserver"]


def parse_nameserver(value: str) -> tuple[str, int]:
    """Split ``"ip"``, ``"ip:port"`` or ``"[v6]:port"`` into ``(ip, port)``; raise ``ValueError``."""
    host, port = value, 53
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad nameserver {value!r}")
            port = int(rest[1:])
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
        port = int(port_text)
    ipaddress.ip_address(host)
    if not 0 < port < 65536:
        raise ValueError(f"bad port in nameserver {value!r}")
    return host, port


def _nameservers(value: Any) -> tuple[str, ...]:
    servers = text_list(value)
    for server in servers:
        try:
            parse_nameserver(server)
        except ValueError:
            raise ValueError(f"must list IP addresses with an optional port, not {server!r}") from None
    return servers


def _query(value: Any) -> str:
    name = text(value)
    try:
        dns.name.from_text(name)
    except dns.exception.DNSException:
        raise ValueError("must be a DNS name") from None
    return name


_DNS_OPTIONS: Mapping[str, Option] = {
    "query": Option(_query, doc="the DNS name to look up"),
    "node_basename": Option(text, doc="the part of each node name before '@'"),
    "nameservers": Option(_nameservers, (), "resolvers to ask instead of the system's"),
    **NETWORK,
}


class _DnsBase(PollingStrategy):
    options = _DNS_OPTIONS
    rdtypes: Sequence[str] = ()

    def _resolver(self) -> dns.asyncresolver.Resolver:
        servers: Sequence[str] = self.config["nameservers"]
        if servers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(*parse_nameserver(s)) for s in servers]
        else:
            resolver = dns.asyncresolver.Resolver()  # /etc/resolv.conf, read at each poll
        resolver.lifetime = resolver.timeout = self.config["timeout"]
        return resolver

    async def _lookup(self, rdtype: str) -> list[Any]:
        name = dns.name.from_text(self.config["query"])
        try:
            answer = await self._resolver().resolve(name, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            raise DiscoveryError(f"DNS: {name} does not exist (NXDOMAIN)", kind="nxdomain") from None
        except dns.exception.Timeout as exc:
            raise DiscoveryError(f"DNS: no answer for {name} {rdtype} in time", kind="timeout") from exc
        except dns.resolver.NoNameservers as exc:
            raise DiscoveryError(f"DNS: no server answered {name} {rdtype}: {exc}", kind="servfail") from exc
        except dns.exception.DNSException as exc:
            raise DiscoveryError(f"DNS: lookup of {name} {rdtype} failed: {exc}", kind="dns") from exc
        return list(answer.rrset) if answer.rrset is not None else []


class DnsStrategy(_DnsBase):
    """``dns``: the A and AAAA records of ``query``; each address ``ip`` is node ``node_basename@ip``.

    libcluster's ``DNSPoll``. Config: ``query``, ``node_basename``
    (required), ``nameservers``, ``polling_interval`` (5 s), ``timeout`` (5 s).
    """

    name = "dns"

    async def poll(self) -> set[str]:
        base = self.config["node_basename"]
        records = await self._lookup("A") + await self._lookup("AAAA")
        return {f"{base}@{record.address}" for record in records}


class DnsSrvStrategy(_DnsBase):
    """``dns_srv``: the SRV records of ``query``; each target ``t`` is node ``node_basename@t``.

    For a Kubernetes headless service, ``query`` is
    ``SERVICE.NAMESPACE.svc.cluster.local`` (or ``_PORT._tcp.SERVICE...`` for
    a named port) and the targets are the pods' stable names, like
    ``app-0.SERVICE.NAMESPACE.svc.cluster.local``. Config as for ``dns``.
    """

    name = "dns_srv"

    async def poll(self) -> set[str]:
        base = self.config["node_basename"]
        records = await self._lookup("SRV")
        # A target of "." means "no service here" (RFC 2782): not a node.
        return {
            f"{base}@{record.target.to_text(omit_final_dot=True)}"
            for record in records
            if record.target != dns.name.root
        }
