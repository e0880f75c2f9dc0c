"""Processes, links, monitors, names, GenServer and Supervisor in one runtime.

Each test runs its scenario on a fresh event loop (:func:`run`) with a hard
time limit; the scenario's own task is a process too (it called ``self()``), so
it can receive, monitor and trap exits. Anything that may kill its parent runs
under a spawned process, never the scenario task itself.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from conftest import eventually, run

from pymesh import (
    ANY,
    NOREPLY,
    AlreadyRegistered,
    BadName,
    CallExit,
    CallTimeout,
    ChildSpec,
    Exit,
    GenServer,
    NoProcess,
    NotAProcess,
    Pid,
    ReceiveTimeout,
    Ref,
    SpawnError,
    Supervisor,
    call,
    cast,
    demonitor,
    exit,
    flush_mailbox,
    is_alive,
    link,
    make_ref,
    monitor,
    process_info,
    receive,
    register,
    registered,
    reply,
    self,
    send,
    spawn,
    spawn_link,
    spawn_monitor,
    trap_exit,
    unlink,
    unregister,
    whereis,
)
from pymesh.wire import NO_NODE


async def down_reason(pid: Pid, timeout: float = 3.0) -> Any:
    """Monitor ``pid`` and return its exit reason."""
    ref = monitor(pid)
    msg = await receive(("DOWN", ref, "process", pid, ANY), timeout=timeout)
    return msg[4]


async def sleeper() -> None:
    await asyncio.sleep(3600)


async def echo() -> None:
    while True:
        frm, msg = await receive()
        send(frm, msg)


async def crasher(exc: BaseException, delay: float = 0.0) -> None:
    await asyncio.sleep(delay)
    raise exc


async def returns(delay: float = 0.0) -> str:
    await asyncio.sleep(delay)
    return "done"


# --- spawn, send, receive -------------------------------------------------------------------


def test_spawn_send_receive_round_trip() -> None:
    async def scenario() -> None:
        pid = spawn(echo)
        assert type(pid) is Pid and pid != self()
        assert is_alive(pid)
        assert send(pid, (self(), "hello")) == (self(), "hello")
        assert await receive(timeout=2) == "hello"

    run(scenario)


def test_spawn_refuses_a_plain_function_and_needs_a_loop() -> None:
    def not_async() -> int:
        return 1

    async def scenario() -> None:
        with pytest.raises(TypeError, match="async"):
            spawn(not_async)  # type: ignore[arg-type]

    run(scenario)
    with pytest.raises(NotAProcess):
        spawn(echo)


def test_selective_receive_takes_the_first_match_and_leaves_the_rest_in_order() -> None:
    async def scenario() -> None:
        me = self()
        for m in [("a", 1), ("b", 2), ("c", 3), ("a", 4), "plain", ("c", 5)]:
            send(me, m)
        assert await receive(("c", int), timeout=0) == ("c", 3)
        assert await receive(lambda m: m == "plain", timeout=0) == "plain"
        assert await receive(("a", ANY), timeout=0) == ("a", 1)
        assert flush_mailbox() == [("b", 2), ("a", 4), ("c", 5)]

    run(scenario)


def test_selective_receive_waits_for_a_later_match_and_keeps_what_came_first() -> None:
    async def sender(to: Pid) -> None:
        for i in range(3):
            send(to, ("noise", i))
            await asyncio.sleep(0.01)
        send(to, ("wanted", 99))
        send(to, ("noise", 3))

    async def scenario() -> None:
        spawn(sender, self())
        assert await receive(("wanted", int), timeout=2) == ("wanted", 99)
        await asyncio.sleep(0.02)
        assert flush_mailbox() == [("noise", 0), ("noise", 1), ("noise", 2), ("noise", 3)]

    run(scenario)


def test_receive_timeout_raises_and_non_matching_messages_do_not_extend_it() -> None:
    async def chatter(to: Pid) -> None:
        while True:
            send(to, "noise")
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        with pytest.raises(ReceiveTimeout):
            await receive(timeout=0)
        with pytest.raises(ReceiveTimeout):
            await receive(timeout=0.05)
        pid = spawn(chatter, self())
        started = time.monotonic()
        with pytest.raises(ReceiveTimeout):
            await receive("never", timeout=0.2)
        assert time.monotonic() - started < 2.0
        exit(pid, "kill")
        assert set(flush_mailbox()) == {"noise"}

    run(scenario)


def test_receive_timeout_is_a_timeout_error() -> None:
    assert issubclass(ReceiveTimeout, TimeoutError)


# --- names ----------------------------------------------------------------------------------


def test_register_whereis_unregister() -> None:
    async def scenario() -> None:
        pid = spawn(echo)
        register("echo_t", pid)
        assert whereis("echo_t") == pid
        assert "echo_t" in registered()
        send("echo_t", (self(), "via name"))
        assert await receive(timeout=2) == "via name"
        other = spawn(sleeper)
        with pytest.raises(AlreadyRegistered) as info:
            register("echo_t", other)
        assert info.value.pid == pid
        with pytest.raises(BadName):
            register("second_name", pid)  # one name per process
        unregister("echo_t")
        assert whereis("echo_t") is None and "echo_t" not in registered()
        with pytest.raises(NoProcess):
            unregister("echo_t")
        register("echo_t", other)
        assert whereis("echo_t") == other

    run(scenario)


@pytest.mark.parametrize("bad", ["", "undefined", 42, None, ("a", "b")])
def test_register_refuses_bad_names(bad: Any) -> None:
    async def scenario() -> None:
        with pytest.raises(BadName):
            register(bad, spawn(sleeper))

    run(scenario)


def test_register_refuses_a_dead_pid() -> None:
    async def scenario() -> None:
        pid = spawn(returns)
        await down_reason(pid)
        with pytest.raises(BadName):
            register("ghost", pid)

    run(scenario)


def test_name_is_freed_when_its_process_exits() -> None:
    async def named_then_exits() -> None:
        register("short_lived")
        await receive("go")

    async def scenario() -> None:
        pid = spawn(named_then_exits)
        await eventually(lambda: whereis("short_lived") == pid, "it registers")
        send("short_lived", "go")
        assert await down_reason(pid) == "normal"
        assert whereis("short_lived") is None
        with pytest.raises(NoProcess):
            send("short_lived", "x")
        register("short_lived", spawn(sleeper))

    run(scenario)


def test_send_to_an_unknown_name_raises_no_process() -> None:
    async def scenario() -> None:
        with pytest.raises(NoProcess) as info:
            send("nobody_here", "hi")
        assert info.value.name == "nobody_here"
        with pytest.raises(BadName):
            send(3.5, "hi")

    run(scenario)


def test_send_to_a_dead_pid_is_dropped_silently() -> None:
    async def scenario() -> None:
        pid = spawn(returns)
        await down_reason(pid)
        assert send(pid, "into the void") == "into the void"
        assert not is_alive(pid)
        assert process_info(pid) is None

    run(scenario)


# --- links --------------------------------------------------------------------------------------


def test_normal_exit_of_a_linked_process_does_not_kill() -> None:
    async def parent(report: Pid) -> None:
        child = spawn_link(returns, 0.01)
        ref = monitor(child)
        await receive(("DOWN", ref, ANY, ANY, ANY))
        send(report, ("still alive", child))
        await receive("stop")

    async def scenario() -> None:
        pid = spawn(parent, self())
        _, child = await receive(("still alive", Pid), timeout=2)
        assert is_alive(pid)
        info = process_info(pid)
        assert info is not None and child not in info.links
        send(pid, "stop")
        assert await down_reason(pid) == "normal"

    run(scenario)


def test_a_crash_kills_linked_processes_with_the_same_reason() -> None:
    boom = ValueError("boom")

    async def parent() -> None:
        spawn_link(crasher, boom, 0.02)
        await sleeper()

    async def grandparent() -> None:
        spawn_link(parent)
        await sleeper()

    async def scenario() -> None:
        top = spawn(grandparent)
        assert await down_reason(top) is boom  # through two links

    run(scenario)


def test_trap_exit_turns_exit_signals_into_messages() -> None:
    boom = RuntimeError("child failed")

    async def scenario() -> None:
        trap_exit(True)
        child = spawn_link(crasher, boom, 0.01)
        assert await receive(("EXIT", child, ANY), timeout=2) == ("EXIT", child, boom)
        normal = spawn_link(returns)
        assert await receive(("EXIT", normal, ANY), timeout=2) == ("EXIT", normal, "normal")
        assert trap_exit(False) is True

    run(scenario)


def test_kill_cannot_be_trapped_and_spreads_as_killed() -> None:
    async def trapper(report: Pid) -> None:
        trap_exit(True)
        send(report, "trapping")
        await sleeper()

    async def linked_watcher(target: Pid, report: Pid) -> None:
        trap_exit(True)
        link(target)
        send(report, "linked")
        send(report, ("watcher got", await receive(("EXIT", ANY, ANY))))

    async def scenario() -> None:
        victim = spawn(trapper, self())
        await receive("trapping", timeout=2)
        spawn(linked_watcher, victim, self())
        await receive("linked", timeout=2)
        ref = monitor(victim)
        exit(victim, "kill")
        assert await receive(("DOWN", ref, ANY, ANY, ANY), timeout=2) == ("DOWN", ref, "process", victim, "killed")
        assert await receive(("watcher got", ANY), timeout=2) == ("watcher got", ("EXIT", victim, "killed"))

    run(scenario)


def test_exit_signals_without_a_link() -> None:
    async def trapper(report: Pid) -> None:
        trap_exit(True)
        send(report, "trapping")
        send(report, ("got", await receive()))

    async def scenario() -> None:
        plain = spawn(sleeper)
        exit(plain, "normal")  # ignored by a process that does not trap
        await asyncio.sleep(0.01)
        assert is_alive(plain)
        ref = monitor(plain)
        exit(plain, "custom")
        assert await receive(timeout=2) == ("DOWN", ref, "process", plain, "custom")

        t = spawn(trapper, self())
        await receive("trapping", timeout=2)
        exit(t, "please stop")
        assert await receive(("got", ANY), timeout=2) == ("got", ("EXIT", self(), "please stop"))

    run(scenario)


def test_link_to_a_dead_process_gives_noproc() -> None:
    async def scenario() -> None:
        dead = spawn(returns)
        await down_reason(dead)
        trap_exit(True)
        link(dead)
        assert await receive(timeout=2) == ("EXIT", dead, "noproc")

    run(scenario)


def test_unlink_stops_the_crash_from_spreading() -> None:
    async def parent(report: Pid) -> None:
        child = spawn_link(crasher, ValueError("x"), 0.05)
        unlink(child)
        send(report, ("child", child))
        await receive("stop")

    async def scenario() -> None:
        pid = spawn(parent, self())
        _, child = await receive(("child", Pid), timeout=2)
        assert isinstance(await down_reason(child), ValueError)
        await asyncio.sleep(0.01)
        assert is_alive(pid)
        send(pid, "stop")

    run(scenario)


def test_raise_exit_sets_the_reason_and_is_not_caught_by_except_exception() -> None:
    async def stubborn() -> None:
        try:
            raise Exit(("shutdown", "bye"))
        except Exception:  # noqa: BLE001, S110 - the point of the test
            pass

    async def scenario() -> None:
        assert await down_reason(spawn(stubborn)) == ("shutdown", "bye")

    run(scenario)


def test_a_long_chain_of_links_does_not_overflow_the_stack() -> None:
    async def link_to(prev: Pid | None) -> None:
        if prev is not None:
            link(prev)
        await sleeper()

    async def scenario() -> None:
        first = prev = spawn(link_to, None)
        await asyncio.sleep(0)
        for _ in range(3000):
            prev = spawn(link_to, prev)
        await asyncio.sleep(0.05)
        ref = monitor(prev)
        exit(first, "cascade")
        assert (await receive(("DOWN", ref, ANY, ANY, ANY), timeout=5))[4] == "cascade"

    run(scenario)


# --- monitors ---------------------------------------------------------------------------------


def test_monitor_delivers_down_with_the_reason_exactly_once() -> None:
    async def scenario() -> None:
        pid = spawn(crasher, KeyError("k"), 0.01)
        ref = monitor(pid)
        assert type(ref) is Ref
        msg = await receive(("DOWN", ref, ANY, ANY, ANY), timeout=2)
        assert msg[:4] == ("DOWN", ref, "process", pid) and isinstance(msg[4], KeyError)
        await asyncio.sleep(0.02)
        assert flush_mailbox() == []

    run(scenario)


def test_monitor_of_a_dead_pid_or_unknown_name_is_noproc_at_once() -> None:
    async def scenario() -> None:
        dead = spawn(returns)
        await down_reason(dead)
        ref = monitor(dead)
        assert await receive(timeout=0) == ("DOWN", ref, "process", dead, "noproc")
        ref2 = monitor("no_such_name")
        assert await receive(timeout=0) == ("DOWN", ref2, "process", ("no_such_name", NO_NODE), "noproc")

    run(scenario)


def test_monitor_by_name_names_the_object_in_down() -> None:
    async def scenario() -> None:
        pid = spawn(sleeper)
        register("watched", pid)
        ref = monitor("watched")
        exit(pid, "bye")
        assert await receive(timeout=2) == ("DOWN", ref, "process", ("watched", NO_NODE), "bye")

    run(scenario)


def test_demonitor_stops_down_and_flush_removes_a_delivered_one() -> None:
    async def scenario() -> None:
        pid = spawn(sleeper)
        ref = monitor(pid)
        assert demonitor(ref) is True
        assert demonitor(ref) is False
        exit(pid, "bye")
        await asyncio.sleep(0.02)
        assert flush_mailbox() == []

        pid2 = spawn(returns)
        ref2 = monitor(pid2)
        await asyncio.sleep(0.02)  # the DOWN is in the mailbox now
        send(self(), "keep me")
        demonitor(ref2, flush=True)
        assert flush_mailbox() == ["keep me"]

    run(scenario)


def test_monitors_are_independent() -> None:
    async def scenario() -> None:
        pid = spawn(sleeper)
        r1, r2 = monitor(pid), monitor(pid)
        assert r1 != r2
        demonitor(r1)
        exit(pid, "x")
        assert await receive(timeout=2) == ("DOWN", r2, "process", pid, "x")
        with pytest.raises(ReceiveTimeout):
            await receive(timeout=0.02)

    run(scenario)


def test_spawn_monitor_and_spawn_link_are_atomic() -> None:
    async def scenario() -> None:
        # the process dies before spawn_monitor's caller runs again: DOWN must still come
        pid, ref = spawn_monitor(crasher, OSError("early"))
        msg = await receive(("DOWN", ref, "process", pid, ANY), timeout=2)
        assert isinstance(msg[4], OSError)
        trap_exit(True)
        child = spawn_link(crasher, OSError("early too"))
        assert (await receive(("EXIT", child, ANY), timeout=2))[2].args == ("early too",)

    run(scenario)


# --- pids and refs ----------------------------------------------------------------------------


def test_pid_and_ref_print_parse_compare_and_hash() -> None:
    pid = Pid("node1@vm", 42, 3)
    assert repr(pid) == str(pid) == "#PID<node1@vm.42.3>"
    assert Pid.parse(repr(pid)) == pid and Pid.parse("  #PID<a.b@c.d.1.2> ") == Pid("a.b@c.d", 1, 2)
    assert pid == Pid("node1@vm", 42, 3) and hash(pid) == hash(Pid("node1@vm", 42, 3))
    assert pid != Pid("node1@vm", 42, 4) and pid != Pid("node2@vm", 42, 3) and pid != ("node1@vm", 42, 3)
    assert len({pid, Pid("node1@vm", 42, 3), Pid("node1@vm", 43, 3)}) == 2
    assert sorted([Pid("b@h", 1), Pid("a@h", 9), Pid("a@h", 2)]) == [Pid("a@h", 2), Pid("a@h", 9), Pid("b@h", 1)]
    ref = Ref("node1@vm", 7, 3)
    assert repr(ref) == "#Ref<node1@vm.7.3>" and Ref.parse(repr(ref)) == ref
    assert ref != Pid("node1@vm", 7, 3) and hash(ref) != hash(Pid("node1@vm", 7, 3))
    for bad in ["#PID<x>", "PID<a@b.1.2>", "#PID<a@b.x.2>", "#Ref<a@b.1.2>"]:
        with pytest.raises(ValueError):
            Pid.parse(bad)
    with pytest.raises(AttributeError):
        pid.id = 5  # type: ignore[misc]


def test_live_pids_and_refs_round_trip_through_their_printed_form() -> None:
    async def scenario() -> None:
        me, ref = self(), make_ref()
        assert Pid.parse(repr(me)) == me and Ref.parse(str(ref)) == ref
        assert make_ref() != ref
        info = process_info(Pid.parse(repr(me)))
        assert info is not None and info.pid == me

    run(scenario)


# --- GenServer --------------------------------------------------------------------------------


class Counter(GenServer):
    async def init(self, start: int = 0) -> None:
        self.n = start
        self.later: list[Any] = []

    async def handle_call(self, request: Any, frm: Any) -> Any:
        if request == "get":
            return self.n
        if request == "later":
            self.later.append(frm)
            return NOREPLY
        if request == "answer_later":
            for f in self.later:
                reply(f, ("late", self.n))
            return "answered"
        if request == "slow":
            await asyncio.sleep(1.0)
            return "slow"
        if request == "crash":
            raise ZeroDivisionError("crashed in a call")
        if request == "stop":
            raise Exit("stopped on request")
        raise ValueError(request)

    async def handle_cast(self, msg: Any) -> None:
        if msg == "inc":
            self.n += 1

    async def handle_info(self, msg: Any) -> None:
        if type(msg) is tuple and msg[0] == "add":
            self.n += msg[1]


def test_genserver_call_cast_and_info() -> None:
    async def scenario() -> None:
        pid = await Counter.start(10)
        assert await call(pid, "get") == 10
        cast(pid, "inc")
        send(pid, ("add", 5))
        assert await call(pid, "get") == 16
        cast("nobody_by_this_name", "inc")  # a cast never fails

    run(scenario)


def test_genserver_named_start_and_noreply() -> None:
    async def waiter(report: Pid) -> None:
        send(report, ("waiter got", await call("counter_t", "later")))

    async def scenario() -> None:
        pid = await Counter.start(1, name="counter_t")
        assert whereis("counter_t") == pid
        spawn(waiter, self())
        await asyncio.sleep(0.02)
        assert await call("counter_t", "answer_later") == "answered"
        assert await receive(("waiter got", ANY), timeout=2) == ("waiter got", ("late", 1))
        with pytest.raises(SpawnError):
            await Counter.start(name="counter_t")  # the name is taken
        assert await call("counter_t", "get") == 1

    run(scenario)


def test_genserver_call_timeout() -> None:
    async def scenario() -> None:
        pid = await Counter.start()
        with pytest.raises(CallTimeout) as info:
            await call(pid, "slow", timeout=0.1)
        assert info.value.timeout == 0.1 and info.value.dest == pid
        assert is_alive(pid)

    run(scenario)


def test_genserver_call_to_a_dead_or_dying_server_raises_call_exit_with_the_reason() -> None:
    async def scenario() -> None:
        pid = await Counter.start()
        with pytest.raises(CallExit) as info:
            await call(pid, "crash")
        assert isinstance(info.value.reason, ZeroDivisionError)
        assert not is_alive(pid)
        with pytest.raises(CallExit) as info:
            await call(pid, "get", timeout=2)  # long dead: at once, not after the timeout
        assert info.value.reason == "noproc"
        with pytest.raises(CallExit) as info:
            await call("never_registered", "get")
        assert info.value.reason == "noproc"
        other = await Counter.start()
        with pytest.raises(CallExit) as info:
            await call(other, "stop")
        assert info.value.reason == "stopped on request"
        assert flush_mailbox() == []  # no stray DOWN or reply left behind

    run(scenario)


def test_genserver_init_failure_raises_spawn_error() -> None:
    class Broken(GenServer):
        async def init(self) -> None:
            raise RuntimeError("cannot start")

    async def scenario() -> None:
        with pytest.raises(SpawnError, match="cannot start"):
            await Broken.start(name="broken_t")
        assert whereis("broken_t") is None

    run(scenario)


def test_genserver_start_link_init_failure_leaves_the_caller_alive() -> None:
    class Broken(GenServer):
        async def init(self) -> None:
            raise RuntimeError("cannot start")

    async def starter(report: Pid) -> None:
        try:
            await Broken.start_link()
        except SpawnError as e:
            send(report, ("spawn error", str(e)))
        await receive("stop")

    async def scenario() -> None:
        pid = spawn(starter, self())
        ref = monitor(pid)
        msg = await receive(lambda m: m[0] in ("spawn error", "DOWN"), timeout=2)
        assert msg[0] == "spawn error", f"the starter died: {msg}"
        send(pid, "stop")
        assert (await receive(("DOWN", ref, ANY, ANY, ANY), timeout=2))[4] == "normal"

    run(scenario)


# --- Supervisor -------------------------------------------------------------------------------


class Worker(GenServer):
    """Logs its starts and stops; traps exits so a stop is logged before it is reported."""

    trap_exit = True

    async def init(self, wid: str, log: list[tuple[str, str]]) -> None:
        self.wid, self.log = wid, log
        log.append(("start", wid))

    async def handle_call(self, request: Any, frm: Any) -> Any:
        return self.wid

    async def handle_cast(self, msg: Any) -> None:
        if msg == "crash":
            raise RuntimeError(f"{self.wid} crashed")
        if msg == "quit":
            raise Exit("normal")

    async def terminate(self, reason: Any) -> None:
        self.log.append(("stop", self.wid))


def spec(wid: str, log: list[tuple[str, str]], restart: str = "permanent") -> ChildSpec:
    return ChildSpec(wid, (Worker.start_link, (wid, log)), restart=restart)  # type: ignore[arg-type]


async def pids_of(sup: Pid) -> dict[str, Pid | None]:
    return {cid: pid for cid, pid, _ in await Supervisor.which_children(sup)}


async def restarted(sup: Pid, before: dict[str, Pid | None], wid: str) -> dict[str, Pid | None]:
    """Wait until child ``wid`` runs under a new pid; return all children's pids."""
    now: dict[str, Pid | None] = {}

    async def check() -> bool:
        nonlocal now
        now = await pids_of(sup)
        return now.get(wid) is not None and now[wid] != before[wid]

    await eventually(check, f"{wid} is restarted")
    return now


@pytest.mark.parametrize(
    "strategy, expected",
    [
        ("one_for_one", [("stop", "b"), ("start", "b")]),
        ("one_for_all", [("stop", "b"), ("stop", "c"), ("stop", "a"), ("start", "a"), ("start", "b"), ("start", "c")]),
        ("rest_for_one", [("stop", "b"), ("stop", "c"), ("start", "b"), ("start", "c")]),
    ],
)
def test_supervisor_strategies_restart_the_right_children_in_order(
    strategy: str, expected: list[tuple[str, str]]
) -> None:
    async def scenario() -> None:
        trap_exit(True)
        log: list[tuple[str, str]] = []
        sup = await Supervisor.start_link([spec(w, log) for w in "abc"], strategy=strategy)  # type: ignore[arg-type]
        assert log == [("start", "a"), ("start", "b"), ("start", "c")]
        before = await pids_of(sup)
        log.clear()
        cast(before["b"], "crash")
        after = await restarted(sup, before, "b")
        assert log == expected
        restarted_ids = {w for op, w in expected if op == "start"}
        for w in "abc":
            assert (after[w] != before[w]) == (w in restarted_ids), w
            assert is_alive(after[w])  # type: ignore[arg-type]
        assert await call(after["b"], "id") == "b"
        exit(sup, "shutdown")
        assert await receive(("EXIT", sup, ANY), timeout=5) == ("EXIT", sup, "shutdown")
        assert not any(is_alive(p) for p in after.values() if p is not None)

    run(scenario)


@pytest.mark.parametrize(
    "restart, how, restarted_expected, kept",
    [
        ("permanent", "quit", True, True),
        ("permanent", "crash", True, True),
        ("transient", "quit", False, True),
        ("transient", "crash", True, True),
        ("temporary", "quit", False, False),
        ("temporary", "crash", False, False),
    ],
)
def test_supervisor_restart_types(restart: str, how: str, restarted_expected: bool, kept: bool) -> None:
    async def scenario() -> None:
        trap_exit(True)
        log: list[tuple[str, str]] = []
        sup = await Supervisor.start_link([spec("w", log, restart), spec("marker", log)])
        before = await pids_of(sup)
        ref = monitor(before["w"])
        cast(before["w"], how)
        await receive(("DOWN", ref, ANY, ANY, ANY), timeout=2)
        if restarted_expected:
            after = await restarted(sup, before, "w")
        else:
            # let the supervisor handle the EXIT; a call is served after it
            await asyncio.sleep(0.05)
            after = await pids_of(sup)
            assert after.get("w") is None
        assert ("w" in after) == kept
        assert after["marker"] == before["marker"]
        exit(sup, "shutdown")
        await receive(("EXIT", sup, ANY), timeout=5)

    run(scenario)


def test_supervisor_gives_up_past_max_restart_intensity_and_the_parent_sees_shutdown() -> None:
    async def scenario() -> None:
        trap_exit(True)
        log: list[tuple[str, str]] = []
        sup = await Supervisor.start_link([spec("a", log), spec("b", log)], max_restarts=2, max_seconds=30)
        pids = await pids_of(sup)
        for _ in range(2):
            cast(pids["b"], "crash")
            pids = await restarted(sup, pids, "b")
        assert is_alive(sup)
        cast(pids["b"], "crash")  # the third restart within the window is one too many
        assert await receive(("EXIT", sup, ANY), timeout=5) == ("EXIT", sup, "shutdown")
        assert not is_alive(sup)
        assert not any(is_alive(p) for p in pids.values() if p is not None)
        assert log[-2:] == [("stop", "b"), ("stop", "a")]

    run(scenario)


def test_supervisor_escalation_lets_the_parent_supervisor_restart_the_child_supervisor() -> None:
    async def scenario() -> None:
        trap_exit(True)
        log: list[tuple[str, str]] = []

        async def inner_start() -> Pid:
            return await Supervisor.start_link([spec("x", log)], max_restarts=0, max_seconds=30)

        top = await Supervisor.start_link([ChildSpec("inner", (inner_start, ()), type="supervisor")])
        (_, inner_pid, kind), = await Supervisor.which_children(top)
        assert kind == "supervisor"
        (_, x_pid, _), = await Supervisor.which_children(inner_pid)
        cast(x_pid, "crash")  # max_restarts=0: the inner supervisor gives up at once

        async def inner_replaced() -> bool:
            ((_, pid, _),) = await Supervisor.which_children(top)
            return pid is not None and pid != inner_pid

        await eventually(inner_replaced, "the top supervisor restarts the inner one")
        assert not is_alive(inner_pid)  # type: ignore[arg-type]
        assert log.count(("start", "x")) == 2
        exit(top, "shutdown")
        await receive(("EXIT", top, ANY), timeout=5)

    run(scenario)


def test_supervisor_refuses_bad_specs() -> None:
    async def scenario() -> None:
        with pytest.raises(ValueError):
            await Supervisor.start_link([], strategy="one_for_some")  # type: ignore[arg-type]
        log: list[tuple[str, str]] = []
        with pytest.raises(ValueError, match="unique"):
            await Supervisor.start_link([spec("a", log), spec("a", log)])
        with pytest.raises(ValueError):
            ChildSpec("a", (Worker.start_link, ()), restart="sometimes")  # type: ignore[arg-type]

    run(scenario)


def test_tasks_of_one_process_can_receive_at_once() -> None:
    """asyncio.gather of selective receives in one process: each task gets its
    own reply, whatever order the replies arrive in, and none waits for a timeout."""

    async def server() -> None:
        while True:
            frm, ref, delay = await receive()
            await asyncio.sleep(delay)
            send(frm, (ref, delay))

    async def ask(pid: Any, delay: float) -> Any:
        ref = make_ref()
        send(pid, (self(), ref, delay))
        return (await receive((ref, ANY), timeout=2))[1]

    async def scenario() -> None:
        delays = [0.03, 0.01, 0.02, 0.0]
        servers = [spawn(server) for _ in delays]
        t0 = time.monotonic()
        got = await asyncio.gather(*(ask(p, d) for p, d in zip(servers, delays, strict=True)))
        assert got == delays
        assert time.monotonic() - t0 < 1.0  # nobody sat out its 2 s timeout

    run(scenario)


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_process_killed_before_its_first_step_leaves_no_unawaited_coroutine() -> None:
    import gc
    import warnings

    async def sleeper() -> None:
        await asyncio.sleep(10)

    async def scenario() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pid = spawn(sleeper)
            exit(pid, "kill")
            await asyncio.sleep(0.01)
            gc.collect()

    run(scenario)
