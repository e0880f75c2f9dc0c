"""Reading and checking topology configuration (TOML file or plain dict).

The shape follows libcluster's ``topologies`` keyword list, in TOML::

    wait_for = 2            # optional: block start-up until 2 peers are connected...
    wait_timeout = 30       # ...or this many seconds have passed

    [topologies.web]
    strategy = "dns"                          # a built-in name, or "package.module:Class"
    connect = "myapp.cluster:connect"         # optional hooks, "module:function"
    disconnect = "myapp.cluster:disconnect"
    list_nodes = "myapp.cluster:list_nodes"

    [topologies.web.config]                   # the strategy's own keys
    query = "web.internal"
    node_basename = "web"

Everything is checked before anything starts: an unknown strategy, an
unknown or missing key, a value of the wrong type or a hook that cannot be
imported raises :class:`~pymesh._errors.ConfigError` with a one-line message
naming the table and the key.
"""

from __future__ import annotations

import importlib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from pymesh._errors import ConfigError

from ._strategy import Strategy

__all__ = [
    "BUILTIN_STRATEGIES",
    "DiscoveryConfig",
    "TopologySpec",
    "default_config_path",
    "load_config",
    "load_topologies",
]

#: The strategies that ship with pymesh: name -> "module:Class", imported on first use.
BUILTIN_STRATEGIES: Mapping[str, str] = MappingProxyType(
    {
        "static": "pymesh.services.discovery._static:StaticStrategy",
        "local": "pymesh.services.discovery._static:LocalStrategy",
        "gossip": "pymesh.services.discovery._gossip:GossipStrategy",
        "dns": "pymesh.services.discovery._dns:DnsStrategy",
        "dns_srv": "pymesh.services.discovery._dns:DnsSrvStrategy",
        "kubernetes": "pymesh.services.discovery._kubernetes:KubernetesStrategy",
        "etcd": "pymesh.services.discovery._etcd_strategy:EtcdStrategy",
        "consul": "pymesh.services.discovery._consul:ConsulStrategy",
        "eureka": "pymesh.services.discovery._eureka:EurekaStrategy",
    }
)

_TOPOLOGY_KEYS = ("strategy", "config", "connect", "disconnect", "list_nodes")
_TOP_KEYS = ("topologies", "wait_for", "wait_timeout")
_HOOKS = ("connect", "disconnect", "list_nodes")

Hook = Callable[..., Any]


@dataclass(frozen=True)
class TopologySpec:
    """One checked topology: its name, strategy, complete config, and hooks.

    ``config`` is read-only and holds every option of the strategy, defaults
    filled in. ``connect``, ``disconnect`` and ``list_nodes`` are the
    imported hooks, or ``None`` to use the node's own operations.
    """

    name: str
    strategy: str
    config: Mapping[str, Any]
    strategy_class: type[Strategy] = field(repr=False)
    connect: Hook | None = None
    disconnect: Hook | None = None
    list_nodes: Hook | None = None


@dataclass(frozen=True)
class DiscoveryConfig:
    """A whole configuration: the topologies and the start-up wait.

    ``wait_for`` (0 = don't wait) and ``wait_timeout`` are what
    :func:`start_topologies` uses unless told otherwise. ``source`` names
    where it came from, for messages.
    """

    topologies: tuple[TopologySpec, ...] = ()
    wait_for: int = 0
    wait_timeout: float = 30.0
    source: str = "<config>"


def default_config_path() -> Path:
    """Return where ``pymesh run`` looks for topologies when given no ``--topology``.

    That is ``topologies.toml`` in the user config directory of platformdirs
    (``~/.config/pymesh/topologies.toml`` on Linux).
    """
    import platformdirs

    return platformdirs.user_config_path("pymesh") / "topologies.toml"


def load_config(source: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> DiscoveryConfig:
    """Read and check a configuration.

    ``source`` is a TOML file path, an already-parsed mapping of the same
    shape (hooks may then be callables, not only import paths), or ``None``
    for :func:`default_config_path` — a missing default file is an empty
    configuration, a missing named file is an error.

    Raises :class:`~pymesh._errors.ConfigError` with one line naming the file,
    table and key at fault.
    """
    if source is None:
        path = default_config_path()
        if not path.exists():
            return DiscoveryConfig(source=str(path))
        source = path
    if isinstance(source, Mapping):
        return _check_document(source, "<config>")
    path = Path(source)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read topology file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return _check_document(document, str(path))


def load_topologies(source: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> list[TopologySpec]:
    """Read and check a configuration; return just its topologies.

    Same arguments and errors as :func:`load_config`.
    """
    return list(load_config(source).topologies)


# --- checking ----------------------------------------------------------------------


def _check_document(document: Mapping[str, Any], where: str) -> DiscoveryConfig:
    for key in document:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{where}: unknown top-level key {key!r} (known: {', '.join(_TOP_KEYS)})")
    topologies = document.get("topologies", {})
    if not isinstance(topologies, Mapping):
        raise ConfigError(f"{where}: 'topologies' must be a table of [topologies.NAME] tables")
    wait_for = document.get("wait_for", 0)
    if isinstance(wait_for, bool) or not isinstance(wait_for, int) or wait_for < 0:
        raise ConfigError(f"{where}: wait_for must be a whole number of nodes >= 0 (got {wait_for!r})")
    wait_timeout = document.get("wait_timeout", 30.0)
    if isinstance(wait_timeout, bool) or not isinstance(wait_timeout, (int, float)) or not wait_timeout > 0:
        raise ConfigError(f"{where}: wait_timeout must be a positive number of seconds (got {wait_timeout!r})")
    specs = tuple(_check_topology(str(name), table, where) for name, table in topologies.items())
    return DiscoveryConfig(specs, wait_for, float(wait_timeout), where)


def _check_topology(name: str, table: Any, where: str) -> TopologySpec:
    here = f"{where}: [topologies.{name}]"
    if not name:
        raise ConfigError(f"{where}: a topology needs a non-empty name")
    if not isinstance(table, Mapping):
        raise ConfigError(f"{here} must be a table")
    for key in table:
        if key not in _TOPOLOGY_KEYS:
            raise ConfigError(f"{here} unknown key {key!r} (known: {', '.join(_TOPOLOGY_KEYS)})")
    strategy = table.get("strategy")
    if not isinstance(strategy, str) or not strategy:
        raise ConfigError(f'{here} needs strategy = "..." (one of: {", ".join(BUILTIN_STRATEGIES)})')
    cls = _strategy_class(strategy, here)
    raw = table.get("config", {})
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{here} 'config' must be a table ([topologies.{name}.config])")
    config = _check_options(cls, strategy, raw, f"{where}: [topologies.{name}.config]")
    hooks = {hook: _hook(table[hook], f"{here} {hook}") for hook in _HOOKS if hook in table}
    return TopologySpec(name, strategy, config, cls, **hooks)


def _strategy_class(strategy: str, here: str) -> type[Strategy]:
    target = BUILTIN_STRATEGIES.get(strategy)
    if target is None and ":" not in strategy:
        raise ConfigError(
            f"{here} unknown strategy {strategy!r} (known: {', '.join(sorted(BUILTIN_STRATEGIES))},"
            " or 'package.module:Class')"
        )
    obj = _import(target or strategy, f"{here} strategy")
    if not (isinstance(obj, type) and issubclass(obj, Strategy)):
        raise ConfigError(f"{here} strategy {strategy!r} is not a discovery Strategy class")
    return obj


def _check_options(cls: type[Strategy], strategy: str, raw: Mapping[str, Any], here: str) -> Mapping[str, Any]:
    options = cls.options
    config: dict[str, Any] = {}
    for key, value in raw.items():
        option = options.get(key)
        if option is None:
            known = ", ".join(sorted(options)) or "none"
            raise ConfigError(f"{here} unknown key {key!r} for strategy {strategy!r} (known: {known})")
        try:
            config[key] = option.check(value)
        except ValueError as exc:
            raise ConfigError(f"{here} {key} {exc} (got {value!r})") from None
    for key, option in options.items():
        if key not in config:
            if option.required:
                raise ConfigError(f"{here} missing required key {key!r} for strategy {strategy!r}")
            config[key] = option.default
    try:
        cls.check(config)
    except ValueError as exc:
        raise ConfigError(f"{here} {exc}") from None
    return MappingProxyType(config)


def _hook(value: Any, here: str) -> Hook:
    if callable(value):
        return cast(Hook, value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{here} must be an import path 'package.module:function'")
    fn = _import(value, here)
    if not callable(fn):
        raise ConfigError(f"{here} {value!r} is not callable")
    return cast(Hook, fn)


def _import(path: str, here: str) -> Any:
    """Import ``"package.module:attr"`` (or ``"package.module.attr"``)."""
    module_name, colon, attr = path.partition(":")
    if not colon:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{here} {path!r} is not an import path 'package.module:name'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - whatever the module raises, name it in one line
        raise ConfigError(f"{here} {path!r} cannot be imported: {type(exc).__name__}: {exc}") from None
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ConfigError(f"{here} {path!r} cannot be imported: no {attr!r} in {module_name}") from None
    return obj
