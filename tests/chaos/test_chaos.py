"""The chaos harness in the test suite: the short run, its self-test, and its parts.

* :func:`test_a_short_chaos_run_keeps_every_guarantee` — 4 nodes, ~40 s of
  kill -9, SIGSTOP, partitions (cut, stalled, one-way), flapping links and
  latency, with the fixed seed :data:`SEED` (``PYMESH_CHAOS_SEED`` overrides);
  on failure the report names the seed and the command that replays its
  schedule. The long run is ``python -m tests.chaos --nodes 5 --minutes 10``.
* :func:`test_the_checks_catch_a_runtime_that_breaks_its_promises` — the same
  harness over nodes broken on purpose: it must report them.
* The network's faults and the pure checks, each on its own.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from .harness import ChaosConfig, _covered, check_names, check_streams, run_chaos
from .network import Network

T = TypeVar("T")

SEED = int(os.environ.get("PYMESH_CHAOS_SEED", "20260611"))


def run(scenario: Callable[[], Awaitable[T]], timeout: float) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await scenario()

    return asyncio.run(bounded())


@pytest.mark.timeout(150)
def test_a_short_chaos_run_keeps_every_guarantee() -> None:
    config = ChaosConfig(nodes=4, duration=36.0, seed=SEED)
    report = run(lambda: run_chaos(config), timeout=140)
    print(report.summary())
    assert report.ok, report.summary()
    # the run did what it says: faults of every kind, traffic, losses to check
    assert set(report.faults) == {"partition", "kill", "stop", "latency", "flap"}, report.summary()
    assert report.figures["messages_received"] > 1000, report.summary()
    assert report.figures["nodedowns_seen_by_receivers"] > 0, report.summary()
    assert report.figures["names_held"] > 50, report.summary()


@pytest.mark.timeout(90)
def test_the_checks_catch_a_runtime_that_breaks_its_promises() -> None:
    # nodes that drop every 97th sequenced message silently and deliver every
    # 5th remote DOWN twice, with no fault injected: only the checks can notice
    config = ChaosConfig(nodes=3, duration=3.0, seed=SEED, weights={"latency": 1}, sabotage="drop,dup_down")
    report = run(lambda: run_chaos(config), timeout=80)
    text = "\n".join(report.violations)
    assert "lost with no nodedown" in text, report.summary()
    assert "lost without a DOWN" in text, report.summary()
    assert "fired 2 times" in text, report.summary()


# --- the network ------------------------------------------------------------------------------------


async def _network() -> tuple[Network, dict[str, int]]:
    """Two fake "nodes" a and b: b is an echo server registered through a's port mapper view."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    net = Network(["a", "b"])
    await net.start()
    from pymesh.runtime import _epmd

    reg = await _epmd.register("b", server.sockets[0].getsockname()[1], epmd_port=net.epmd_port("b"))
    entry = await _epmd.port_please("b", epmd_port=net.epmd_port("a"))
    assert entry is not None and entry.port == net.proxies[("a", "b")].port  # a is sent to the proxy
    return net, {"proxy": entry.port, "server": server, "reg": reg}  # type: ignore[dict-item]


async def _dial(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


def test_the_network_passes_delays_cuts_and_stalls_bytes() -> None:
    async def scenario() -> None:
        net, ctx = await _network()
        try:
            link = net.link("a", "b")
            r, w = await _dial(ctx["proxy"])
            w.write(b"one")
            assert await asyncio.wait_for(r.readexactly(3), 5) == b"one"

            link.set_delay(0.2)
            started = time.monotonic()
            w.write(b"two")
            assert await asyncio.wait_for(r.readexactly(3), 5) == b"two"
            assert time.monotonic() - started >= 0.4  # 0.2 s each way
            link.set_delay(0.0)

            link.stall()  # held, in order, not lost
            w.write(b"3")
            w.write(b"4")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(r.readexactly(2), 0.5)
            link.heal()
            assert await asyncio.wait_for(r.readexactly(2), 5) == b"34"

            link.stall(("b", "a"))  # one way: a's bytes reach b, b's echo is held
            w.write(b"5")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(r.readexactly(1), 0.5)
            link.heal()
            assert await asyncio.wait_for(r.readexactly(1), 5) == b"5"

            link.cut()  # the connection is reset, and a new one too
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await asyncio.wait_for(r.readexactly(1), 5)
            r2, _ = await _dial(ctx["proxy"])
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await asyncio.wait_for(r2.readexactly(1), 5)
            link.heal()
            r3, w3 = await _dial(ctx["proxy"])
            w3.write(b"back")
            assert await asyncio.wait_for(r3.readexactly(4), 5) == b"back"
            w3.close()
        finally:
            await ctx["reg"].close()  # type: ignore[attr-defined]
            ctx["server"].close()  # type: ignore[attr-defined]
            await net.close()

    run(scenario, timeout=30)


# --- the pure checks --------------------------------------------------------------------------------


def test_covered_returns_what_no_range_covers() -> None:
    assert _covered(1, 10, []) == [(1, 10)]
    assert _covered(1, 10, [(1, 10)]) == []
    assert _covered(1, 10, [(3, 4), (8, 20)]) == [(1, 2), (5, 7)]
    assert _covered(5, 6, [(1, 2)]) == [(5, 6)]


def _inc(rx: str, snapshot: dict[str, Any], killed: bool = False) -> Any:
    return SimpleNamespace(rx=rx, snapshot=snapshot, killed=killed)


def _tx(seq: int, epochs: list[list[Any]], open_first: int | None) -> dict[str, Any]:
    return {"seq": seq, "epochs": epochs, "open": open_first, "dead": False}


def test_check_streams_accepts_losses_in_closed_epochs_only() -> None:
    # sender S sent 1..10 to R; epoch 1..4 closed by a DOWN, 5..10 open
    sender = {"traffic_pid": "S", "rx": {}, "tx": {"R": _tx(10, [[1, 4, "noconnection"]], 5)}}

    def receiver(record: list[Any]) -> dict[str, Any]:
        return {"traffic_pid": "T", "rx": {"S": record}, "tx": {}}

    ok = check_streams([_inc("Rs", sender), _inc("R", receiver([1, 10, 8, [[3, 4]]]))])
    assert ok["violations"] == [] and ok["messages_lost"] == 2
    lost_in_open_epoch = check_streams([_inc("Rs", sender), _inc("R", receiver([1, 10, 8, [[6, 7]]]))])
    assert "lost without a DOWN" in lost_in_open_epoch["violations"][0]
    tail_lost = check_streams([_inc("Rs", sender), _inc("R", receiver([1, 8, 8, []]))])
    assert "[(9, 10)]" in tail_lost["violations"][0]
    # a killed receiver: the sender's monitor must have fired
    killed = check_streams([_inc("Rs", sender), _inc("R", receiver([1, 3, 3, []]), killed=True)])
    assert "never fired" in killed["violations"][0]
    # a killed sender reports to no one: nothing to hold it to
    assert check_streams([_inc("Rs", sender, killed=True), _inc("R", receiver([1, 3, 3, []]))])["violations"] == []


def _view(**parts: Any) -> dict[str, Any]:
    view = {"local": {}, "lreg": {}, "global": {}, "dreg": {}, "holders": [], "children": {}, "which_children": []}
    view.update(parts)
    return view


def test_check_names_finds_dead_pids_disagreement_and_duplicates() -> None:
    good = {
        "n1": _view(**{"global": {"k": "p1"}, "holders": [["global", "k", "p1"]], "children": {"'c0'": "c"},
                       "which_children": [["'c0'", "c"]]}),
        "n2": _view(**{"global": {"k": "p1"}, "which_children": [["'c0'", "c"]]}),
    }
    assert check_names(good, ["c0"], [])[0] == []
    dead = {"n1": _view(**{"global": {"k": "p9"}}), "n2": _view(**{"global": {"k": "p9"}})}
    assert any("no live holder" in p for p in check_names(dead, [], [])[0])
    split = {"n1": _view(dreg={"k": ["p1"]}, holders=[["dreg", "k", "p1"]]), "n2": _view(dreg={"k": ["p2"]})}
    assert any("resolves it to" in p for p in check_names(split, [], [])[0])
    twice = {"n1": _view(children={"'c0'": "a"}), "n2": _view(children={"'c0'": "b"})}
    assert any("runs 2 times" in p for p in check_names(twice, ["c0"], [])[0])
    stale_local = {"n1": _view(lreg={"('l', 1)": ["p3"]})}
    assert any("live claiming holder is None" in p for p in check_names(stale_local, [], [])[0])


# --- the guarantees' references -------------------------------------------------------------------


def test_every_test_the_guarantees_name_exists() -> None:
    """The Guarantees section (README.md, or docs-pending/GUARANTEES.md before the merge) names
    ``file::test`` for each promise; each must be a real test function or class."""
    import ast
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    if "\n## Guarantees" in readme:
        text = readme.split("\n## Guarantees", 1)[1].split("\n## ", 1)[0]
    else:
        text = (root / "docs-pending" / "GUARANTEES.md").read_text()
    refs: list[tuple[str, str]] = []
    for line in text.splitlines():
        file = None  # "`tests/a.py::x`, `::y`": a bare ::y names a test of the file before it
        for path, name in re.findall(r"(tests/[\w/]+\.py)?::(\w+)", line):
            file = path or file
            assert file, f"{name} has no file before it: {line}"
            refs.append((file, name))
    assert len(refs) > 40
    missing = []
    defined: dict[str, set[str]] = {}
    for file, name in refs:
        if file not in defined:
            tree = ast.parse((root / file).read_text())
            defined[file] = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            defined[file] |= {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets
                              if isinstance(t, ast.Name)}
        if name not in defined[file]:
            missing.append(f"{file}::{name}")
    assert not missing, missing
