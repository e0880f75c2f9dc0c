"""The rules every strategy shares, tested with scripted strategies and a recording ClusterOps.

Reconnects (lc #148), disconnects only on a successful answer (lc #82),
logging once per change of state, supervision of crashing strategies, the
start-up wait (lc #40), hooks, and the state records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import FrozenInstanceError
from typing import Any

import pytest

import pymesh
from pymesh._errors import DiscoveryError
from pymesh.services import discovery
from pymesh.services.discovery import (
    Cluster,
    DefaultOps,
    Option,
    PollingStrategy,
    Report,
    Strategy,
    TopologySpec,
    TopologyState,
    _topology,
    start_topologies,
)

from .discovery_helpers import FakeOps, run, wait_until

LOGGER = "pymesh.discovery"


class Script:
    """Answers for a scripted strategy: sets of nodes, or exceptions to raise; the last one repeats."""

    def __init__(self, *steps: Any) -> None:
        self.steps = list(steps)
        self.polls = 0

    def next(self) -> Any:
        self.polls += 1
        return self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]

    def push(self, *steps: Any) -> None:
        self.steps = list(steps)


class Scripted(PollingStrategy):
    name = "scripted"
    options: Mapping[str, Option] = {"script": Option(lambda v: v), "polling_interval": Option(float, 0.02)}
    closed = 0

    async def poll(self) -> set[str]:
        step = self.config["script"].next()
        if isinstance(step, BaseException):
            raise step
        return set(step)

    async def aclose(self) -> None:
        Scripted.closed += 1


def spec(name: str, script: Script, cls: type[Strategy] = Scripted, **hooks: Any) -> TopologySpec:
    return TopologySpec(name, cls.name, {"script": script, "polling_interval": 0.02}, cls, **hooks)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_topology, "BACKOFF_MIN", 0.01)
    monkeypatch.setattr(_topology, "BACKOFF_MAX", 0.05)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and text in r.getMessage()]


def test_found_nodes_are_connected_and_a_returning_peer_is_reconnected() -> None:
    ops = FakeOps()
    script = Script({"a@h", "b@h", "me@host"})

    async def scenario() -> None:
        async with Cluster([spec("t", script)], ops) as cluster:
            await wait_until(lambda: ops.connected == {"a@h", "b@h"}, what="both connected")
            assert ops.count("connect", "me@host") == 0  # never connects to itself
            ops.drop("a@h")  # the connection broke; discovery still lists the node
            await wait_until(lambda: "a@h" in ops.connected, what="reconnect (lc #148)")
            assert ops.count("connect", "a@h") == 2
            (state,) = cluster.states()
            assert state.nodes_found == ("a@h", "b@h") and state.connected == ("a@h", "b@h")

    run(scenario())


def test_failed_answers_never_disconnect_only_successful_omissions_do(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    ops = FakeOps()
    script = Script({"a@h", "b@h"})

    async def scenario() -> None:
        async with Cluster([spec("t", script)], ops) as cluster:
            await wait_until(lambda: ops.connected == {"a@h", "b@h"})
            script.push(DiscoveryError("backend timed out", kind="timeout"))
            polls = script.polls
            await wait_until(lambda: script.polls > polls + 5, what="several failed polls")
            assert ops.connected == {"a@h", "b@h"} and ops.count("disconnect") == 0
            state = cluster.states()[0]
            assert not state.healthy and state.last_error == "backend timed out"
            assert state.nodes_found == ("a@h", "b@h")  # the last *successful* answer

            script.push({"a@h"})  # a successful answer without b
            await wait_until(lambda: ops.connected == {"a@h"}, what="b disconnected")
            assert ops.calls.count(("disconnect", "b@h")) == 1
            state = cluster.states()[0]
            assert state.healthy and state.last_error == "backend timed out" and state.last_error_at

    run(scenario())
    assert len(messages(caplog, "discovery failed")) == 1
    assert len(messages(caplog, "discovery recovered")) == 1
    assert messages(caplog, "disconnected b@h")


def test_an_outage_is_logged_once_however_its_failures_vary(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    script = Script(set())

    async def scenario() -> None:
        async with Cluster([spec("t", script)], FakeOps()):
            for error in (
                DiscoveryError("timeout after 1.01s", kind="timeout"),
                DiscoveryError("timeout after 1.02s", kind="timeout"),  # same kind: silent
                DiscoveryError("answered 503", kind="http 503"),  # another kind: debug only
                OSError("boom"),
            ):
                script.push(error)
                polls = script.polls
                await wait_until(lambda polls=polls: script.polls > polls + 3)
            script.push({"x@y"})
            polls = script.polls
            await wait_until(lambda: script.polls > polls + 3)

    run(scenario())
    failed = [r for r in caplog.records if "discovery failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING
    assert "topology=t strategy=scripted: discovery failed: timeout after 1.01s" in failed[0].getMessage()
    changes = [r.getMessage() for r in caplog.records if "still failing" in r.getMessage()]
    assert [c.split("now: ")[1] for c in changes] == ["answered 503", "OSError: boom"]
    assert len(messages(caplog, "recovered")) == 1


def test_unreachable_node_is_retried_at_each_answer_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    ops = FakeOps(reachable={"a@h"})
    script = Script({"a@h", "down@h"})

    async def scenario() -> None:
        async with Cluster([spec("t", script)], ops):
            await wait_until(lambda: ops.count("connect", "down@h") >= 5, what="retries")
            assert ops.connected == {"a@h"}
            assert ops.reachable is not None
            ops.reachable.add("down@h")
            await wait_until(lambda: "down@h" in ops.connected)

    run(scenario())
    assert len(messages(caplog, "cannot connect to down@h")) == 1
    assert messages(caplog, "connected to down@h")


class Crashing(Strategy):
    name = "crashing"
    options: Mapping[str, Option] = {"script": Option(lambda v: v), "polling_interval": Option(float, 0.02)}
    runs = 0

    async def run(self, report: Report) -> None:
        Crashing.runs += 1
        await report.found({"a@h"})
        raise RuntimeError("bug in the strategy")


def test_a_crashing_strategy_is_restarted_with_backoff_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    Crashing.runs = 0
    ops = FakeOps()

    async def scenario() -> None:
        async with Cluster([spec("c", Script(), Crashing)], ops) as cluster:
            await wait_until(lambda: Crashing.runs >= 4, what="restarts")
            state = cluster.states()[0]
            assert state.restarts >= 3
            assert state.last_error == "strategy crashed: RuntimeError: bug in the strategy"
            assert ops.connected == {"a@h"}

    run(scenario())
    crashes = [r for r in caplog.records if "strategy crashed" in r.getMessage() and r.levelno >= logging.ERROR]
    assert len(crashes) == 1 and crashes[0].exc_info is not None


def test_a_strategy_that_cannot_even_start_does_not_take_the_node_down() -> None:
    class Broken(Strategy):
        name = "broken"

        def __init__(self, config: Any, local: Any) -> None:
            raise ValueError("cannot construct")

        async def run(self, report: Report) -> None:  # pragma: no cover
            pass

    async def scenario() -> None:
        cluster = Cluster([TopologySpec("b", "broken", {}, Broken)], FakeOps())
        cluster.start()
        await wait_until(lambda: cluster.states()[0].restarts >= 3)
        assert "cannot construct" in (cluster.states()[0].last_error or "")
        await cluster.stop()

    run(scenario())


def test_a_node_found_by_another_topology_is_not_disconnected() -> None:
    ops = FakeOps()
    one, two = Script({"a@h", "shared@h"}), Script({"shared@h"})

    async def scenario() -> None:
        async with Cluster([spec("one", one), spec("two", two)], ops):
            await wait_until(lambda: ops.connected == {"a@h", "shared@h"})
            one.push({"a@h"})
            polls = one.polls
            await wait_until(lambda: one.polls > polls + 3)
            assert "shared@h" in ops.connected
            two.push(set())
            await wait_until(lambda: ops.connected == {"a@h"})

    run(scenario())


def test_hooks_replace_the_node_operations() -> None:
    ops = FakeOps()
    calls: list[str] = []

    async def connect(node: str) -> bool:
        calls.append(node)
        ops.connected.add(node)
        return True

    async def scenario() -> None:
        async with Cluster([spec("t", Script({"a@h"}), connect=connect)], ops):
            await wait_until(lambda: calls == ["a@h"])
        assert ops.count("connect") == 0

    run(scenario())


def test_start_up_waits_for_n_nodes_or_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario() -> None:
        ops = FakeOps()
        cluster = await start_topologies([spec("t", Script({"a@h", "b@h"}))], ops, wait_for=2, wait_timeout=5)
        assert len(ops.connected) == 2  # returned only once both were connected
        await cluster.stop()

        ops = FakeOps(reachable=set())
        loop = asyncio.get_running_loop()
        started = loop.time()
        cluster = await start_topologies([spec("t", Script({"a@h"}))], ops, wait_for=1, wait_timeout=0.3)
        assert 0.3 <= loop.time() - started < 3
        assert cluster.running  # discovery goes on
        await cluster.stop()

    run(scenario())
    assert messages(caplog, "0 of 1 nodes connected after 0.3s")


def test_wait_settings_come_from_the_config_unless_overridden() -> None:
    config = discovery.DiscoveryConfig((spec("t", Script({"a@h"})),), wait_for=1, wait_timeout=5)

    async def scenario() -> None:
        ops = FakeOps()
        cluster = await start_topologies(config, ops)
        assert ops.connected == {"a@h"}
        await cluster.stop()

    run(scenario())


def test_states_are_frozen_records_and_stop_closes_strategies() -> None:
    Scripted.closed = 0

    async def scenario() -> None:
        cluster = Cluster([spec("t", Script({"a@h"}))], FakeOps())
        assert cluster.states() == [TopologyState("t", "scripted", None, (), None, ())]
        cluster.start()
        await wait_until(lambda: cluster.states()[0].connected == ("a@h",))
        assert discovery.states() == cluster.states()
        state = cluster.states()[0]
        with pytest.raises(FrozenInstanceError):
            state.name = "x"  # type: ignore[misc]
        assert state.last_poll is not None and state.last_poll.tzinfo is not None
        await cluster.stop()
        assert Scripted.closed == 1
        assert discovery.states() == []
        await cluster.stop()  # idempotent

    run(scenario())


def test_duplicate_topology_names_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate topology name"):
        Cluster([spec("t", Script()), spec("t", Script())], FakeOps())


class PushStrategy(Strategy):
    name = "push"
    options: Mapping[str, Option] = {"script": Option(lambda v: v)}

    async def run(self, report: Report) -> None:
        for node in self.config["script"].steps:
            await report.seen(node)
        await asyncio.Event().wait()


def test_seen_nodes_are_connected_and_never_removed() -> None:
    ops = FakeOps()

    async def scenario() -> None:
        async with Cluster(
            [TopologySpec("p", "push", {"script": Script("a@h", "b@h", "me@host")}, PushStrategy)], ops
        ) as c:
            await wait_until(lambda: ops.connected == {"a@h", "b@h"})
            assert c.states()[0].nodes_found == ("a@h", "b@h")

    run(scenario())


def test_an_unreachable_node_heard_often_is_not_retried_at_every_heartbeat() -> None:
    ops = FakeOps(reachable=set())
    beats = Script(*(["down@h"] * 50))

    async def scenario() -> None:
        async with Cluster([TopologySpec("p", "push", {"script": beats}, PushStrategy)], ops) as cluster:
            await wait_until(lambda: cluster.states()[0].nodes_found == ("down@h",))
            await asyncio.sleep(0.1)
        assert ops.count("connect", "down@h") == 1  # 50 heartbeats, one attempt within SEEN_RETRY

    run(scenario())


def test_a_slow_connect_to_one_heard_node_does_not_hold_up_the_others() -> None:
    class SlowOps(FakeOps):
        async def connect(self, node: str) -> bool:
            if node == "slow@h":
                self.calls.append(("connect", node))
                await asyncio.sleep(30)  # a dial that hangs (cancelled when the cluster stops)
            return await super().connect(node)

    ops = SlowOps()
    beats = Script("slow@h", "a@h", "b@h")

    async def scenario() -> None:
        async with Cluster([TopologySpec("p", "push", {"script": beats}, PushStrategy)], ops):
            await wait_until(lambda: ops.connected == {"a@h", "b@h"}, timeout=2)
            assert ops.count("connect", "slow@h") == 1

    run(scenario())


def test_default_ops_call_pymesh_node(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []

    class Node:
        @staticmethod
        async def connect(node: str) -> bool:
            calls.append(("connect", node))
            return True

        @staticmethod
        def disconnect(node: str) -> bool:
            calls.append(("disconnect", node))
            return True

        @staticmethod
        def list() -> list[str]:
            return ["a@h"]

        @staticmethod
        def self() -> str:
            return "me@h"

        @staticmethod
        def port() -> int:
            return 4369

    monkeypatch.setattr(pymesh, "Node", Node, raising=False)
    ops = DefaultOps(dist_port=4370)

    async def scenario() -> None:
        assert await ops.connect("a@h") is True
        assert await ops.disconnect("a@h") is True
        assert await ops.list_nodes() == ["a@h"]

    run(scenario())
    assert ops.self_name() == "me@h" and ops.dist_port() == 4370
    assert DefaultOps().dist_port() == 4369  # asked of Node.port() when not given
    assert calls == [("connect", "a@h"), ("disconnect", "a@h")]


def test_a_hung_poll_counts_as_failed() -> None:
    class Hanging(PollingStrategy):
        name = "hanging"
        options: Mapping[str, Option] = {"timeout": Option(float, 0.01), "polling_interval": Option(float, 0.01)}

        async def poll(self) -> set[str]:
            await asyncio.sleep(30)
            return set()

    async def scenario() -> None:
        async with Cluster(
            [TopologySpec("h", "hanging", {"timeout": 0.01, "polling_interval": 0.01}, Hanging)], FakeOps()
        ) as c:
            await wait_until(lambda: c.states()[0].last_error is not None)
            assert c.states()[0].last_error == "poll took longer than 0.06s"

    run(scenario())
