"""Loading and checking topology configuration: TOML, dicts, defaults, and one-line refusals."""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path

import pytest

from pymesh._errors import ConfigError
from pymesh.services import discovery
from pymesh.services.discovery import DiscoveryConfig, load_config, load_topologies

HOSTS = {"hosts": ["a@b"]}

SAMPLE = """
wait_for = 2
wait_timeout = 12.5

[topologies.lan]
strategy = "gossip"
[topologies.lan.config]
secret = "s3cret"
port = 45999

[topologies.fixed]
strategy = "static"
connect = "hooks_for_tests:connect"
disconnect = "hooks_for_tests:disconnect"
list_nodes = "hooks_for_tests:list_nodes"
[topologies.fixed.config]
hosts = ["a@h1", "b@h2"]
polling_interval = 0.5

[topologies.k8s]
strategy = "kubernetes"
[topologies.k8s.config]
selector = "app=myapp"
node_basename = "myapp"
mode = "hostname"
service_name = "myapp-headless"
"""


@pytest.fixture
def hooks_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("hooks_for_tests")
    module.connect = lambda node: True  # type: ignore[attr-defined]
    module.disconnect = lambda node: True  # type: ignore[attr-defined]
    module.list_nodes = lambda: []  # type: ignore[attr-defined]
    module.not_callable = 42  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hooks_for_tests", module)
    return module


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topologies.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_sample_file_loads_with_defaults_filled_in(tmp_path: Path, hooks_module: types.ModuleType) -> None:
    config = load_config(write(tmp_path, SAMPLE))
    assert isinstance(config, DiscoveryConfig)
    assert (config.wait_for, config.wait_timeout) == (2, 12.5)
    lan, fixed, k8s = config.topologies
    assert (lan.name, lan.strategy) == ("lan", "gossip")
    assert lan.config["secret"] == "s3cret" and lan.config["port"] == 45999
    assert lan.config["multicast_addr"] == "233.252.1.32" and lan.config["multicast_ttl"] == 1
    assert fixed.config["hosts"] == ("a@h1", "b@h2") and fixed.config["polling_interval"] == 0.5
    assert fixed.connect is hooks_module.connect and fixed.list_nodes is hooks_module.list_nodes
    assert k8s.config["lookup"] == "endpoints" and k8s.config["page_size"] == 500
    with pytest.raises(TypeError):
        fixed.config["hosts"] = ()  # type: ignore[index]
    assert [t.name for t in load_topologies(write(tmp_path, SAMPLE))] == ["lan", "fixed", "k8s"]


def test_dict_form_accepts_callables_as_hooks() -> None:
    def connect(node: str) -> bool:
        return True

    (spec,) = load_topologies(
        {"topologies": {"x": {"strategy": "static", "connect": connect, "config": {"hosts": ["a@b"]}}}}
    )
    assert spec.connect is connect and spec.disconnect is None


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"topologies": {"x": {"strategy": "gosip"}}}, "unknown strategy 'gosip'"),
        ({"topologies": {"x": {}}}, "[topologies.x] needs strategy"),
        ({"topologies": {"x": {"strategy": "gossip", "colour": 1}}}, "[topologies.x] unknown key 'colour'"),
        (
            {"topologies": {"x": {"strategy": "gossip", "config": {"prot": 1}}}},
            "[topologies.x.config] unknown key 'prot' for strategy 'gossip'",
        ),
        (
            {"topologies": {"x": {"strategy": "gossip", "config": {"port": 0}}}},
            "[topologies.x.config] port must be an integer from 1 to 65535 (got 0)",
        ),
        (
            {"topologies": {"x": {"strategy": "static", "config": {"polling_interval": -1, "hosts": ["a@b"]}}}},
            "polling_interval must be a positive number of seconds (got -1)",
        ),
        ({"topologies": {"x": {"strategy": "dns"}}}, "missing required key 'query' for strategy 'dns'"),
        (
            {"topologies": {"x": {"strategy": "static", "config": {"hosts": ["nohost"]}}}},
            "'nohost' is not a node name",
        ),
        (
            {"topologies": {"x": {"strategy": "gossip", "config": {"multicast_addr": "10.1.2.3"}}}},
            "multicast_addr '10.1.2.3' is not a multicast address",
        ),
        (
            {
                "topologies": {
                    "x": {
                        "strategy": "kubernetes",
                        "config": {"selector": "a=b", "node_basename": "n", "mode": "hostname"},
                    }
                }
            },
            "mode = 'hostname' needs service_name",
        ),
        (
            {
                "topologies": {
                    "x": {"strategy": "dns", "config": {"query": "a", "node_basename": "n", "nameservers": ["x:y"]}}
                }
            },
            "nameservers must list IP addresses",
        ),
        (
            {"topologies": {"x": {"strategy": "static", "connect": "no_such_mod_xyz:f", "config": HOSTS}}},
            "cannot be imported",
        ),
        (
            {"topologies": {"x": {"strategy": "static", "connect": "os:no_such_fn", "config": HOSTS}}},
            "no 'no_such_fn' in os",
        ),
        ({"topologies": {"x": {"strategy": "static", "connect": "os:sep", "config": HOSTS}}}, "is not callable"),
        ({"topologies": {"x": {"strategy": "os:path"}}}, "is not a discovery Strategy class"),
        ({"topolgies": {}}, "unknown top-level key 'topolgies'"),
        ({"wait_for": -1}, "wait_for must be a whole number"),
        ({"wait_timeout": 0}, "wait_timeout must be a positive number"),
        ({"topologies": []}, "'topologies' must be a table"),
    ],
)
def test_bad_configuration_is_refused_in_one_line_naming_it(document: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(document)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_bad_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(write(tmp_path, "[topologies.x\nstrategy = 1"))
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="cannot read topology file"):
        load_config(tmp_path / "absent.toml")


def test_default_path_is_in_the_user_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = discovery.default_config_path()
    assert path == tmp_path / "pymesh" / "topologies.toml"
    assert load_config(None).topologies == ()  # no file: nothing to run
    path.parent.mkdir()
    path.write_text('[topologies.a]\nstrategy = "static"\n[topologies.a.config]\nhosts = ["x@y"]\n')
    assert [t.name for t in load_config().topologies] == ["a"]


def test_custom_strategy_by_import_path(monkeypatch: pytest.MonkeyPatch) -> None:
    class Mine(discovery.PollingStrategy):
        name = "mine"
        options = {"size": discovery.Option(int, 3)}

        async def poll(self) -> set[str]:
            return set()

    module = types.ModuleType("my_strategies_for_tests")
    module.Mine = Mine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "my_strategies_for_tests", module)
    (spec,) = load_topologies({"topologies": {"m": {"strategy": "my_strategies_for_tests:Mine"}}})
    assert spec.strategy_class is Mine and spec.config["size"] == 3


def test_every_builtin_strategy_imports_and_declares_its_options() -> None:
    for name in discovery.BUILTIN_STRATEGIES:
        (spec,) = load_topologies({"topologies": {"t": {"strategy": name, "config": _minimal(name)}}})
        assert spec.strategy_class.name == name
        assert spec.strategy_class.__doc__


def _minimal(name: str) -> dict:
    return {
        "static": {"hosts": ["a@b"]},
        "dns": {"query": "x.test", "node_basename": "n"},
        "dns_srv": {"query": "x.test", "node_basename": "n"},
        "kubernetes": {"selector": "a=b", "node_basename": "n"},
        "consul": {"service": "s", "node_basename": "n"},
        "eureka": {"app": "a"},
    }.get(name, {})


def test_public_names_are_exported_and_documented() -> None:
    # trio's rule: what the package exports is exactly what its docstring documents.
    doc = discovery.__doc__ or ""
    for name in discovery.__all__:
        assert hasattr(discovery, name), name
        assert name in doc, f"{name} is exported but not documented in the package docstring"
    public = {
        n for n in vars(discovery) if not n.startswith("_") and not isinstance(getattr(discovery, n), types.ModuleType)
    }
    assert public == set(discovery.__all__)


def test_the_package_docstring_lists_every_option_of_every_strategy() -> None:
    doc = " ".join((discovery.__doc__ or "").split())
    table = doc.split("The strategies and their ``config`` keys", 1)[1].split("An unknown strategy", 1)[0]
    bullets = table.split("* ")[1:]
    for name in discovery.BUILTIN_STRATEGIES:
        (spec,) = load_topologies({"topologies": {"t": {"strategy": name, "config": _minimal(name)}}})
        (section,) = [b for b in bullets if f"``{name}``" in b.split(" — ")[0]]
        for key in spec.strategy_class.options:
            assert key in section, f"{name}: option {key!r} missing from the package docstring"
