"""The live pane (pymesh.tui) and the tracing under it (pymesh.runtime._trace).

Layers, as the rest of the suite:

* the tracer and the message previews, in one runtime, no sockets;
* the pane driven by Textual's Pilot over a fake source with fixed data, and
  its layout pinned by snapshot tests (``--snapshot-update`` to accept a change);
* the pane against real nodes — OS processes on loopback with a private port
  mapper (tui/_devcluster.py): navigation, filtering, live traffic, a node that
  dies and returns, and ``pymesh tui`` in a real pseudo-terminal, which must
  leave every ``Node.list()`` in the cluster as it was; and the pane over SSH.

Every subprocess is stopped by its pid; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from pymesh.tui._devcluster import DevCluster, short_host
from pymesh.tui._model import NameInfo, PeerInfo, ProcInfo, Snapshot, TraceEvent
from pymesh.tui._source import LocalSource, RemoteSource
from pymesh.tui.app import MIN_SIZE, ObserverApp, sparkline

import pymesh
from pymesh import Node, rpc_eval
from pymesh.runtime import _connection
from pymesh.runtime._trace import Tracer, render, short_repr, watch_traffic
from pymesh.wire import _terms

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def run(coro: Coroutine[Any, Any, T], timeout: float = 45.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def until(check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 10.0,
                step: Callable[[], Awaitable[Any]] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        ok = check()
        if not isinstance(ok, bool):
            ok = await ok
        if ok:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        await (step() if step is not None else asyncio.sleep(0.05))


def quiet(app: ObserverApp) -> ObserverApp:
    """No animations: Pilot waits for them after every key."""
    app.animation_level = "none"
    return app


def cells(app: ObserverApp, table: str) -> list[list[str]]:
    """The plain text of every row of a table, as shown."""
    dt = app.query_one(f"#{table}-table")
    return [[str(c) for c in dt.get_row_at(i)] for i in range(dt.row_count)]


# --- a source with fixed data ----------------------------------------------------------------


class FakeSource:
    """Deterministic snapshots: times start at T0 and advance 1 s a poll."""

    def __init__(self, *, alive: bool = True, names: int = 12, procs: int = 16) -> None:
        self.node = "alpha@host"
        self.via = "fake"
        self.n = 0
        self.alive = alive
        self.n_names = names
        self.n_procs = procs
        self.closed = False

    async def poll(self) -> Snapshot:
        self.n += 1
        t = T0 + self.n
        if not self.alive:
            return Snapshot(self.node, t, alive=False, reason="net_tick_timeout")
        k = self.n
        peers = [
            PeerInfo("alpha@host", "port 4370", "this", None, T0 - 3600, None, 0, 0, 0, 0, 0),
            PeerInfo("beta@host", "127.0.0.1:41000", "connected", None, T0 - 125, 0.00042,
                     1200 * k + 40 * k * k, 1100 * k, 98_000 * k, 87_000 * k, 0),
            PeerInfo("gamma@host", "127.0.0.1:41002", "connected", None, T0 - 64, 0.00051,
                     300 * k, 310 * k, 21_000 * k, 22_000 * k, 128),
            PeerInfo("tui42@host", "127.0.0.1:41010", "hidden", None, T0 - 5, None, 20 * k, 20 * k, 2000, 90_000, 0),
            PeerInfo("delta@host", "127.0.0.1:41004", "down", "net_tick_timeout", T0 - 30, None, 0, 0, 0, 0, 0),
        ]
        kinds = ["local", "registry", "global", "pg", "dreg"]
        names = [
            NameInfo(kinds[i % 5], f"{kinds[i % 5]}_name_{i}", f"#PID<alpha@host.{i + 1}.7>",
                     "alpha@host" if i % 3 else "beta@host")
            for i in range(self.n_names)
        ]
        procs = [
            ProcInfo(f"#PID<alpha@host.{i + 1}.7>", f"local_name_{i}" if i % 5 == 0 else None, (i * 7) % 11,
                     "waiting" if i % 4 else "runnable", f"app.workers.worker_{i % 3}")
            for i in range(self.n_procs)
        ]
        events = [
            TraceEvent(t - 0.5 + i * 0.01, "in" if i % 2 else "out", "beta@host" if i % 3 else "gamma@host",
                       ["send", "reg_send", "link", "monitor", "exit", "down"][i % 6],
                       f"#PID<beta@host.{i}.3>" if i % 2 else "", f"#PID<alpha@host.{i + 1}.7>",
                       40 + i * 13, short_repr(("msg", i, {"k": "v" * i})), None,
                       "local_name_0" if i % 5 == 0 else None)
            for i in range(8)
        ]
        return Snapshot(self.node, t, peers=peers, names=names, names_total=len(names), procs=procs,
                        procs_total=len(procs), events=events, left_out=3 * k, session="s1",
                        kinds=kinds)

    async def process_detail(self, pid: str) -> dict[str, Any] | None:
        return {"pid": pid, "registered_name": "local_name_0", "status": "waiting", "message_queue_len": 0,
                "links": ["#PID<beta@host.3.3>"], "monitors": [], "monitored_by": [], "trap_exit": True,
                "initial_call": "app.workers.worker_0", "label": None}

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# --- tracing, in one runtime -----------------------------------------------------------------


def test_tracer_samples_under_a_flood_and_counts_what_it_left_out() -> None:
    async def scenario() -> None:
        assert _connection.tracer is None  # nobody watches: the hot paths see None
        watch = watch_traffic(budget=100, capacity=50)  # 10 records per 0.1 s window
        tracer = _connection.tracer
        assert isinstance(tracer, Tracer)
        data = _terms.encode([1, pymesh.Pid("b@h", 1, 1), ("hello", 1)])
        for _ in range(1000):
            tracer.outgoing("b@h", data)
        tracer.incoming("b@h", [[1, pymesh.Pid("a@h", 2, 1), "x"]] * 30)
        batch = watch.read()
        assert len(batch.events) == 10
        assert batch.left_out == 1030 - 10
        assert {e.kind for e in batch.events} == {"send"}
        assert batch.events[0].preview == "('hello', 1)" and batch.events[0].size == len(data)
        await asyncio.sleep(0.25)  # the window refills
        tracer.incoming("b@h", [[2, pymesh.Pid("b@h", 3, 1), "sink", {"k": 1}]] * 4)
        batch = watch.read(limit=3)
        assert [e.kind for e in batch.events] == ["reg_send"] * 3 and batch.left_out == 1
        assert batch.events[0].to == "sink" and batch.events[0].direction == "in"
        # an ignored peer is not even counted
        watch.set_ignore(["c@h"])
        tracer.outgoing("c@h", data)
        assert watch.read().left_out == 0
        second = watch_traffic()
        assert _connection.tracer is tracer  # watches share one tracer
        watch.close()
        assert _connection.tracer is tracer
        second.close()
        assert _connection.tracer is None  # the last watch takes the cost away
        with pytest.raises(RuntimeError):
            watch.read()

    run(scenario())


class _Evil:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


@pytest.mark.parametrize(
    "value",
    [
        "x" * 10_000_000,
        b"\x00" * 3_000_000,
        list(range(1_000_000)),
        {i: str(i) * 50 for i in range(10_000)},
        "line1\nline2\x1b[31mred\x07\u202eevil",
        "[bold red]not markup[/]",
        _Evil(),
        ((((((((("deep",),),),),),),),),),
        10**5000,
    ],
    ids=["huge-str", "huge-bytes", "huge-list", "huge-dict", "control-chars", "markup", "broken-repr", "deep",
         "huge-int"],
)
def test_previews_of_any_size_or_type_are_short_and_printable(value: Any) -> None:
    t0 = time.perf_counter()
    text = short_repr(value)
    assert time.perf_counter() - t0 < 0.5
    assert len(text) <= 80 and text.isprintable()


def test_render_never_raises_and_shortens_big_messages() -> None:
    big = _terms.encode([1, pymesh.Pid("b@h", 1, 1), "y" * 3_000_000])
    e = render((T0, True, "b@h", big))
    assert e.kind == "send" and e.size == len(big) and "not decoded" in e.preview and len(e.preview) <= 80
    e = render((T0, True, "b@h", b"\xc1garbage"))
    assert e.kind == "?" and "undecodable" in e.preview
    e = render((T0, False, "b@h", [2, pymesh.Pid("b@h", 1, 1), "sink", "z" * 5_000_000]))
    assert e.kind == "reg_send" and e.approx and len(e.preview) <= 80
    e = render((T0, False, "b@h", ["nonsense"]))
    assert e.kind == "?"


# --- the pane over fixed data: Pilot and snapshots ----------------------------------------------


def test_navigation_filters_inspect_and_pause_with_a_fake_source() -> None:
    async def scenario() -> None:
        source = FakeSource(names=40)
        app = ObserverApp(source, interval=0)
        async with app.run_test(size=(130, 36)) as pilot:
            await pilot.pause()
            assert app.current_tab == "peers"
            assert [r[2] for r in cells(app, "peers")][-1] == "down (net_tick_timeout)"
            await pilot.press("2")
            assert app.current_tab == "names" and len(cells(app, "names")) == 40
            await pilot.press("slash", *"pg 1")  # filter as you type; '1' and ' ' go to the filter
            assert app.current_tab == "names" and app.is_running
            rows = cells(app, "names")
            assert rows and all(r[0] == "pg" and "1" in r[1] for r in rows)
            await pilot.press("q")  # typed into the filter, not quitting
            assert app.is_running and cells(app, "names") == []
            await pilot.press("escape")
            assert len(cells(app, "names")) == 40
            await pilot.press("3")
            assert app.current_tab == "traffic" and len(cells(app, "traffic")) == 8
            await pilot.press("space")  # pause: new polls do not move the tail
            assert app.paused
            await pilot.press("r")
            await pilot.pause()
            assert len(cells(app, "traffic")) == 8 and app.paused_count == 8 + 6
            await pilot.press("space", "r")
            await pilot.pause()
            assert len(cells(app, "traffic")) == 16
            await pilot.press("slash", *"gamma")
            assert {r[2] for r in cells(app, "traffic")} == {"gamma@host"}
            await pilot.press("escape", "c")
            assert cells(app, "traffic") == []
            await pilot.press("4", "down", "enter")
            await until(lambda: type(app.screen).__name__ == "ProcessScreen", "the inspector opens", step=pilot.pause)
            await pilot.press("escape")
            assert type(app.screen).__name__ == "Screen"
            await pilot.press("q")
        assert source.closed

    run(scenario())


def test_every_binding_is_in_the_footer_and_the_command_palette() -> None:
    async def scenario() -> None:
        app = ObserverApp(FakeSource(), interval=0)
        async with app.run_test(size=(160, 30)) as pilot:
            await pilot.pause()
            titles = {c.title for c in app.get_system_commands(app.screen)}
            for action in ("Show peers", "Show names", "Show traffic", "Show processes", "Filter", "Clear filter",
                           "Pause / resume traffic", "Clear traffic", "Inspect process", "Refresh now", "Quit"):
                assert action in titles
            shown = {b.description for b in ObserverApp.BINDINGS if b.show}
            assert shown == {"Peers", "Names", "Traffic", "Procs", "Filter", "Clear filter", "Pause",
                             "Clear traffic", "Inspect", "Refresh", "Quit"}

    run(scenario())


def test_a_terminal_too_small_gets_a_message() -> None:
    async def scenario() -> None:
        app = ObserverApp(FakeSource(), interval=0)
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.pause()
            assert not app.too_small and app.query_one("#main").display
            await pilot.resize_terminal(MIN_SIZE[0] - 10, MIN_SIZE[1] - 4)
            await until(lambda: app.too_small, "the pane notices", step=pilot.pause)
            assert not app.query_one("#main").display
            assert "too small" in str(app.query_one("#too-small").render())
            await pilot.resize_terminal(120, 30)
            await until(lambda: not app.too_small, "the layout returns", step=pilot.pause)
            assert app.query_one("#main").display

    run(scenario())


def test_sparkline_scales_to_its_maximum() -> None:
    assert sparkline([0, 1, 2, 4]) == "▁▃▅█"
    assert sparkline([0, 0]) == "▁▁" and sparkline([]) == ""


def _polls(n: int, keys: tuple[str, ...] = ()) -> Callable[[Any], Awaitable[None]]:
    async def before(pilot: Any) -> None:
        app = pilot.app
        for _ in range(n):
            app.apply(await app.source.poll())
        await pilot.press(*keys)
        await pilot.pause()

    return before


SIZE = (132, 32)


def test_snapshot_peers(snap_compare: Any, utc: None) -> None:
    assert snap_compare(ObserverApp(FakeSource(), interval=0), terminal_size=SIZE, run_before=_polls(6))


def test_snapshot_names_filtered(snap_compare: Any, utc: None) -> None:
    assert snap_compare(ObserverApp(FakeSource(), interval=0), terminal_size=SIZE,
                        run_before=_polls(2, ("2", "slash", *"name_1")))


def test_snapshot_traffic(snap_compare: Any, utc: None) -> None:
    assert snap_compare(ObserverApp(FakeSource(), interval=0), terminal_size=SIZE, run_before=_polls(3, ("3",)))


def test_snapshot_processes_and_inspector(snap_compare: Any, utc: None) -> None:
    assert snap_compare(ObserverApp(FakeSource(), interval=0), terminal_size=SIZE,
                        run_before=_polls(2, ("4", "down", "enter")))


def test_snapshot_node_down(snap_compare: Any, utc: None) -> None:
    assert snap_compare(ObserverApp(FakeSource(alive=False), interval=0), terminal_size=SIZE,
                        run_before=_polls(1))


def test_snapshot_too_small(snap_compare: Any, utc: None) -> None:
    assert snap_compare(ObserverApp(FakeSource(), interval=0), terminal_size=(50, 12), run_before=_polls(1))


# --- against real nodes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[DevCluster]:
    """Nodes a, b, c (OS processes) chattering with each other."""
    with DevCluster(tick_time=4) as c:
        c.start("a")
        c.start("b", connect="a")
        c.start("c", connect="a")
        nodes = [c.node(n) for n in "abc"]

        async def workload() -> None:
            await start_observer(c, "setup")
            try:
                for node in nodes:
                    assert await Node.connect(node, timeout=5)
                    await Node.spawn(node, "pymesh.tui._demo:chatter", "worker", [n for n in nodes if n != node], 30.0)
                    await Node.spawn(node, "pymesh.tui._demo:register_idle", [f"cache_{node[0]}"])
            finally:
                await pymesh.stop()

        run(workload())
        yield c


async def start_observer(c: DevCluster, name: str) -> str:
    return await pymesh.start(f"{name}{os.getpid()}@{short_host()}", cookie=c.cookie, hidden=True,
                              epmd_port=c.epmd_port, connect_all=False)


def test_pane_shows_a_real_cluster_live(cluster: DevCluster) -> None:
    a, b, c = (cluster.node(n) for n in "abc")

    async def scenario() -> None:
        await start_observer(cluster, "pilot")
        try:
            app = quiet(ObserverApp(RemoteSource(a), interval=0.3))
            async with app.run_test(size=(140, 40)) as pilot:
                def peers() -> dict[str, list[str]]:
                    return {r[0]: r for r in cells(app, "peers")}

                await until(lambda: {b, c} <= set(peers()) and peers()[b][4].endswith("ms"),
                            "b and c show with a round-trip time", timeout=15, step=lambda: pilot.pause(0.1))
                assert peers()[a][2] == "this" and peers()[b][2] == "connected"
                assert peers()[Node.self()][2] == "hidden"  # the pane itself: a hidden peer of a
                first = int(app.snapshot.peers[1].msgs_in)  # type: ignore[union-attr]
                await until(lambda: app.snapshot.peers[1].msgs_in > first,  # type: ignore[union-attr]
                            "the counters move", step=lambda: pilot.pause(0.1))
                await pilot.press("3")
                await until(lambda: len(cells(app, "traffic")) > 5, "traffic flows", step=lambda: pilot.pause(0.1))
                rows = cells(app, "traffic")
                assert {"reg_send"} <= {r[3] for r in rows} and {r[2] for r in rows} <= {b, c}
                assert Node.self() not in {r[2] for r in rows}  # the pane's own requests are not traced
                await pilot.press("slash", *b.split("@")[0] + "@")
                await until(lambda: cells(app, "traffic") and {r[2] for r in cells(app, "traffic")} == {b},
                            "the filter keeps b's traffic", step=lambda: pilot.pause(0.1))
                await pilot.press("escape", "2", "slash", *"cache")
                await until(lambda: [r[1] for r in cells(app, "names")] == ["cache_a"], "names filter",
                            step=lambda: pilot.pause(0.1))
                await pilot.press("escape", "4")
                await until(lambda: any(r[1] == "worker" for r in cells(app, "procs")), "processes",
                            step=lambda: pilot.pause(0.1))
                row = next(i for i, r in enumerate(cells(app, "procs")) if r[1] == "worker")
                app.query_one("#procs-table").move_cursor(row=row)
                await pilot.press("enter")
                await until(lambda: type(app.screen).__name__ == "ProcessScreen", "the inspector",
                            step=lambda: pilot.pause(0.1))
                assert "pymesh.tui._demo.chatter" in str(app.screen.query_one("#inspect-body").render())
                await pilot.press("escape", "q")
        finally:
            await pymesh.stop()

    run(scenario())


def test_local_observer_shows_its_own_node() -> None:
    async def scenario() -> None:
        with DevCluster() as c:
            await start_observer(c, "local")
            try:
                pymesh.spawn(_named_idle, "local_sink")
                app = ObserverApp(LocalSource(), interval=0.2)
                async with app.run_test(size=(120, 30)) as pilot:
                    await pilot.press("2")
                    await until(lambda: ["local", "local_sink"] in [r[:2] for r in cells(app, "names")],
                                "its own names", step=lambda: pilot.pause(0.1))
                    await pilot.press("q")
            finally:
                await pymesh.stop()

    run(scenario())


def test_names_of_every_kind_the_node_runs() -> None:
    """Local names, the services' names (each kind whose module imports) and a
    provider added by an application, with pid, owner node and kind."""
    from pymesh.tui import add_name_provider, remove_name_provider
    from pymesh.tui._names import collect

    class Jobs:
        kind = "jobs"

        def entries(self) -> list[tuple[Any, Any, str]]:
            return [(("job", 7), pymesh.Pid("x@h", 9, 1), "x@h")]

    class Broken:
        kind = "broken"

        def entries(self) -> list[tuple[Any, Any, str]]:
            raise RuntimeError("boom")

    async def scenario() -> None:
        with DevCluster() as c:
            me = await start_observer(c, "names")
            expected = {("local", "solo")}
            try:
                pymesh.spawn(_named_idle, "solo")
                await asyncio.sleep(0)
                try:
                    from pymesh.services._registry import Registry
                except ImportError:
                    Registry = None
                if Registry is not None:
                    await Registry.start("jobs_reg")
                    pymesh.spawn(_in_registry, Registry, "jobs_reg", "j1")
                    expected.add(("registry", "jobs_reg/j1"))
                try:
                    from pymesh.services._dist_registry import DistributedRegistry
                except ImportError:
                    DistributedRegistry = None
                if DistributedRegistry is not None:
                    await DistributedRegistry.start("dreg1")
                    pymesh.spawn(_in_registry, DistributedRegistry, "dreg1", "d1")
                    expected.add(("dreg", "dreg1/d1"))
                try:
                    from pymesh.services import PG
                except ImportError:
                    PG = None  # noqa: N806
                if PG is not None:
                    PG.join("workers", pymesh.whereis("solo"))
                    expected.add(("pg", "workers"))
                add_name_provider(Jobs())
                add_name_provider(Broken())
                expected.add(("jobs", "('job', 7)"))
                await asyncio.sleep(0.2)
                names, total, kinds, errors = collect(100)
                seen = {(n.kind, n.name) for n in names}
                assert expected <= seen, (expected - seen, errors)
                assert errors == ["broken: RuntimeError: boom"] and "broken" not in kinds
                solo = next(n for n in names if n.name == "solo")
                assert solo.node == me and solo.pid == repr(pymesh.whereis("solo"))
                assert collect(1)[0] and collect(1)[1] == total and len(collect(1)[0]) == 1
            finally:
                remove_name_provider("jobs")
                remove_name_provider("broken")
                await pymesh.stop()

    run(scenario())


async def _in_registry(registry: Any, reg: str, key: str) -> None:
    registry.register(reg, key)
    await pymesh.receive()


async def _named_idle(name: str) -> None:
    pymesh.register(name)
    await pymesh.receive()


def test_a_session_whose_pane_vanished_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pane killed without goodbye leaves no tracing cost behind on the node."""
    from pymesh.tui import _snapshot

    monkeypatch.setattr(_snapshot, "LEASE", 0.3)
    monkeypatch.setattr(_snapshot, "RTT_EVERY", 0.05)

    async def scenario() -> None:
        with DevCluster() as c:
            await start_observer(c, "lease")
            try:
                term = _snapshot.poll("gone@nowhere")
                assert Snapshot.from_term(term).node == Node.self()
                assert "gone@nowhere" in _snapshot._sessions and _connection.tracer is not None
                await until(lambda: "gone@nowhere" not in _snapshot._sessions, "the lease runs out", timeout=5)
                assert _connection.tracer is None
            finally:
                await pymesh.stop()

    run(scenario())


def test_observed_node_that_dies_shows_down_and_comes_back() -> None:
    with DevCluster(tick_time=2) as c:
        d = c.start("d")

        async def scenario() -> None:
            await start_observer(c, "watch")
            try:
                app = ObserverApp(RemoteSource(d, timeout=2.0, connect_timeout=1.0), interval=0.2)
                async with app.run_test(size=(120, 30)) as pilot:
                    def status() -> str:
                        return str(app.query_one("#status").render())

                    await until(lambda: status().startswith("● " + d), "the node is up",
                                step=lambda: pilot.pause(0.1))
                    await asyncio.get_running_loop().run_in_executor(None, c.stop, "d", signal.SIGKILL)
                    await until(lambda: "is down" in status(), "the pane says the node is down", timeout=15,
                                step=lambda: pilot.pause(0.1))
                    assert "connection_closed" in status()
                    assert any(r[0] == d and r[2] == "down (connection_closed)" for r in cells(app, "peers"))
                    await asyncio.get_running_loop().run_in_executor(None, c.start, "d")
                    await until(lambda: status().startswith("● " + d), "the pane reconnects", timeout=20,
                                step=lambda: pilot.pause(0.1))
                    assert app.is_running
                    await pilot.press("q")
            finally:
                await pymesh.stop()

        run(scenario(), timeout=55)


def _pty_read_until(fd: int, pattern: bytes, timeout: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if re.search(pattern, out):
                return out
    raise AssertionError(f"{pattern!r} never appeared; got {out[-500:]!r}")


def _pty_wait_exit(fd: int, child: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for ``child`` to exit, reading its terminal meanwhile (a full pty blocks its writes)."""
    deadline = time.monotonic() + timeout
    while child.poll() is None and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            try:
                os.read(fd, 65536)
            except OSError:
                time.sleep(0.05)
    if child.poll() is None:
        raise AssertionError(f"the child did not exit within {timeout}s")
    return child.returncode


def test_pymesh_tui_attaches_hidden_and_leaves_node_list_unchanged(cluster: DevCluster) -> None:
    nodes = [cluster.node(n) for n in "abc"]

    async def lists() -> dict[str, tuple[list[str], list[str]]]:
        out = {}
        for n in nodes:
            visible, _ = await rpc_eval(n, "Node.list()")
            hidden, _ = await rpc_eval(n, "Node.list('hidden')")
            out[n] = (visible, hidden)
        return out

    async def scenario() -> None:
        me = await start_observer(cluster, "lists")
        try:
            before = await lists()
            master, slave = os.openpty()
            env = {**cluster.env, "TERM": "xterm-256color"}
            child = subprocess.Popen([sys.executable, "-m", "pymesh", "tui", nodes[0]], stdin=slave, stdout=slave,
                                     stderr=slave, env=env, start_new_session=True)
            os.close(slave)
            try:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, _pty_read_until, master, rb"peers? up", 20)
                during = await lists()
                os.write(master, b"q")
                assert await loop.run_in_executor(None, _pty_wait_exit, master, child, 15) == 0
            finally:
                if child.poll() is None:
                    os.kill(child.pid, signal.SIGKILL)
                    child.wait()
                os.close(master)
            await asyncio.sleep(0.5)
            after = await lists()
        finally:
            await pymesh.stop()
        tui = f"tui{child.pid}@{short_host()}"
        for n in nodes:
            assert during[n][0] == before[n][0] == after[n][0], n  # Node.list() never changed
            assert me not in before[n][0]
        assert tui in during[nodes[0]][1]  # a saw the pane as a hidden node ...
        assert all(tui not in during[n][1] for n in nodes[1:])  # ... and nobody else met it
        assert all(tui not in after[n][1] for n in nodes)

    run(scenario())


def test_observer_runs_on_the_nodes_own_terminal_and_returns() -> None:
    """``await observer()`` inside a node (as the shell calls it), on a real
    terminal: the pane comes up for that node and quitting returns to the caller."""
    with DevCluster() as c:
        master, slave = os.openpty()
        child = subprocess.Popen([sys.executable, "-m", "pymesh.tui.bench", "--pane-node", "obs"], stdin=slave,
                                 stdout=slave, stderr=slave, env={**c.env, "TERM": "xterm-256color"},
                                 start_new_session=True)
        os.close(slave)
        try:
            _pty_read_until(master, rb"obs@", 20)
            _pty_read_until(master, rb"processes", 10)
            os.write(master, b"q")
            assert _pty_wait_exit(master, child, 15) == 0  # observer() returned, the node stopped
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
            os.close(master)


def test_serve_pty_bridges_keys_output_and_resizes(cluster: DevCluster) -> None:
    """What the shell's SSH server calls: the pane on a pty of its own, fed
    through two callables, resized on request."""
    from pymesh.tui import serve_pty

    async def scenario() -> None:
        await start_observer(cluster, "pty")
        try:
            keys: asyncio.Queue[bytes] = asyncio.Queue()
            screen = bytearray()
            sessions: list[Any] = []
            pane = asyncio.ensure_future(serve_pty(keys.get, screen.extend, node=cluster.node("c"), size=(90, 28),
                                                   on_start=sessions.append))
            await until(lambda: b"peers up" in screen, "the pane draws", timeout=20)
            assert len(sessions) == 1
            sessions[0].resize(50, 12)  # SIGWINCH to the pane: too small now, it says so
            await until(lambda: b"too small" in screen, "the pane sees the new size")
            keys.put_nowait(b"q")
            assert await asyncio.wait_for(pane, 15) == 0
        finally:
            await pymesh.stop()

    run(scenario())


def test_the_pane_over_ssh(cluster: DevCluster) -> None:
    asyncssh = pytest.importorskip("asyncssh")
    from pymesh.tui import ssh_session

    async def scenario() -> None:
        await start_observer(cluster, "ssh")
        key = asyncssh.generate_private_key("ssh-ed25519")

        class NoAuth(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return False

        server = await asyncssh.create_server(NoAuth, "127.0.0.1", 0, server_host_keys=[key],
                                              process_factory=lambda p: ssh_session(p, cluster.node("b")),
                                              encoding=None)
        port = server.sockets[0].getsockname()[1]
        try:
            async with asyncssh.connect("127.0.0.1", port, known_hosts=None, username="x", encoding=None) as conn:
                proc = await conn.create_process("tui", term_type="xterm-256color", term_size=(110, 30))
                seen = b""
                async with asyncio.timeout(25):
                    while b"peers up" not in seen and b"peer up" not in seen:
                        seen += await proc.stdout.read(65536)
                proc.change_terminal_size(100, 28)
                proc.stdin.write(b"q")
                result = await asyncio.wait_for(proc.wait(), 15)
                assert result.exit_status == 0
                # no terminal: a clear refusal
                plain = await conn.run("tui", term_type=None)
                assert plain.exit_status == 1 and b"needs a terminal" in plain.stderr
        finally:
            server.close()
            await pymesh.stop()

    run(scenario())
