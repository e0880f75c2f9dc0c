"""pymesh.Registry: Elixir's Registry documentation examples as conformance tests,
then what pymesh adds or must guarantee (exit cleanup, listeners, via-names,
supervision, bad input), and a property test against a plain dict model.

Each Elixir example keeps its registry name and its order of calls; where the
docs show a unique and a duplicate variant, both run, and every example runs
with 1 and with 4 partitions. Everything here is local: one OS process.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pymesh
from pymesh import (
    ANY,
    AlreadyRegistered,
    BadName,
    GenServer,
    NoProcess,
    Pid,
    SpawnError,
    Supervisor,
    UnknownRegistry,
    call,
    cast,
    monitor,
    receive,
    self,
    send,
    spawn,
    trap_exit,
    whereis,
)
from pymesh._errors import BadKey, PymeshError, RegistryError
from pymesh.runtime import _process as P
from pymesh.services import Registry, RegistryStatistics

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
PARTITIONS = pytest.mark.parametrize("partitions", [1, 4])
_ids = itertools.count()


def run(scenario: Callable[[], Coroutine[Any, Any, T]], timeout: float = 10.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await scenario()

    return asyncio.run(bounded())


def fresh(name: str) -> str:
    """A registry name no other test uses (registries live as long as their loop)."""
    return f"{name}.{next(_ids)}"


async def in_process(fn: Callable[[], Any]) -> Any:
    """Run ``fn()`` in a new process and return its result (Elixir's Task.async |> Task.await)."""
    me = self()

    async def task() -> None:
        try:
            send(me, ("task", True, fn()))
        except Exception as e:  # noqa: BLE001 - handed back to the caller
            send(me, ("task", False, e))

    spawn(task)
    _, ok, value = await receive(("task", bool, ANY), timeout=5)
    if not ok:
        raise value
    return value


class Agent(GenServer):
    """Enough of Elixir's Agent for the via example: get and update a state."""

    async def init(self, state: Any) -> None:
        self.state = state

    async def handle_call(self, request: Any, frm: Any) -> Any:
        op, fn = request
        if op == "get":
            return fn(self.state)
        self.state = fn(self.state)
        return "ok"


# --- the moduledoc ---------------------------------------------------------------------------


@PARTITIONS
def test_moduledoc_using_in_via(partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("MyApp.Registry")
        await Registry.start(reg, keys="unique", partitions=partitions)
        name = ("via", reg, "agent")
        agent = await Agent.start(0, name=name)
        assert await call(name, ("get", lambda s: s)) == 0
        await call(name, ("update", lambda s: s + 1))
        assert await call(name, ("get", lambda s: s)) == 1
        assert Registry.lookup(reg, "agent") == [(agent, None)]
        # the name is taken: the second start fails, naming the owner
        with pytest.raises(SpawnError, match="already registered"):
            await Agent.start(0, name=name)

    run(scenario)


@PARTITIONS
def test_moduledoc_using_as_a_dispatcher(partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.DispatcherTest")
        await Registry.start(reg, keys="duplicate", partitions=partitions)
        Registry.register(reg, "hello", ("IO", "inspect"))
        called: list[Any] = []
        await Registry.dispatch(reg, "hello", lambda entries: called.extend((pid, m, f) for pid, (m, f) in entries))
        assert called == [(self(), "IO", "inspect")]
        # no entries: the callback is never invoked
        await Registry.dispatch(reg, "nobody", lambda entries: called.append("called"))
        assert len(called) == 1

    run(scenario)


@PARTITIONS
def test_moduledoc_using_as_a_pubsub(partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.PubSubTest")
        await Registry.start(reg, keys="duplicate", partitions=partitions)
        Registry.register(reg, "hello", [])
        await Registry.dispatch(reg, "hello", lambda entries: [send(pid, ("broadcast", "world")) for pid, _ in entries])
        assert await receive(timeout=1) == ("broadcast", "world")

    run(scenario)


# --- the function docs --------------------------------------------------------------------------


@PARTITIONS
@pytest.mark.parametrize("keys", ["unique", "duplicate"])
def test_count(keys: str, partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.CountTest")
        await Registry.start(reg, keys=keys, partitions=partitions)
        assert Registry.count(reg) == 0
        Registry.register(reg, "hello", "world")
        Registry.register(reg, "world" if keys == "unique" else "hello", "world")
        assert Registry.count(reg) == 2

    run(scenario)


@PARTITIONS
def test_count_match(partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.CountMatchTest")
        await Registry.start(reg, keys="duplicate", partitions=partitions)
        Registry.register(reg, "hello", (1, "atom", 1))
        Registry.register(reg, "hello", (2, "atom", 2))
        assert Registry.count_match(reg, "hello", (1, ANY, ANY)) == 1
        assert Registry.count_match(reg, "hello", (2, ANY, ANY)) == 1
        assert Registry.count_match(reg, "hello", (ANY, "atom", ANY)) == 2
        assert Registry.count_match(reg, "hello", (ANY, ANY, ANY), lambda v: v[0] == v[2]) == 2
        assert Registry.count_match(reg, "hello", (ANY, ANY, ANY), lambda v: v[2] > 1) == 1
        assert Registry.count_match(reg, "hello", (ANY, str, ANY)) == 2

    run(scenario)


@PARTITIONS
def test_count_select(partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.CountSelectTest")
        await Registry.start(reg, keys="unique", partitions=partitions)
        Registry.register(reg, "hello", "value")
        Registry.register(reg, "world", "value")
        assert Registry.count_select(reg, [((ANY, ANY, "value"), None, None)]) == 2

    run(scenario)


def test_put_meta_meta_and_delete_meta() -> None:
    async def scenario() -> None:
        reg = fresh("Registry.MetaTest")
        await Registry.start(reg, keys="unique", meta={"custom_key": "custom_value"})
        assert Registry.meta(reg, "custom_key") == "custom_value"
        assert Registry.meta(reg, "unknown_key") is None
        missing = object()
        assert Registry.meta(reg, "unknown_key", missing) is missing
        reg = fresh("Registry.PutMetaTest")
        await Registry.start(reg, keys="unique")
        Registry.put_meta(reg, "custom_key", "custom_value")
        assert Registry.meta(reg, "custom_key") == "custom_value"
        Registry.put_meta(reg, ("tuple", "key"), "tuple_value")
        assert Registry.meta(reg, ("tuple", "key")) == "tuple_value"
        Registry.delete_meta(reg, "custom_key")
        assert Registry.meta(reg, "custom_key", missing) is missing
        Registry.delete_meta(reg, "never_there")

    run(scenario)


@PARTITIONS
def test_keys_and_register_unique(partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.UniqueKeysTest")
        await Registry.start(reg, keys="unique", partitions=partitions)
        assert Registry.keys(reg, self()) == []
        owner = Registry.register(reg, "hello", "world")
        assert type(owner) is Pid
        with pytest.raises(AlreadyRegistered) as info:
            Registry.register(reg, "hello", "later")  # registry is unique
        assert info.value.pid == self() and info.value.key == "hello"
        assert Registry.keys(reg, self()) == ["hello"]

    run(scenario)


@PARTITIONS
def test_keys_and_register_duplicate(partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.DuplicateKeysTest")
        await Registry.start(reg, keys="duplicate", partitions=partitions)
        assert Registry.keys(reg, self()) == []
        Registry.register(reg, "hello", "world")
        Registry.register(reg, "hello", "world")
        assert Registry.keys(reg, self()) == ["hello", "hello"]

    run(scenario)


@PARTITIONS
def test_lookup_unique(partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.UniqueLookupTest")
        await Registry.start(reg, keys="unique", partitions=partitions)
        assert Registry.lookup(reg, "hello") == []
        Registry.register(reg, "hello", "world")
        assert Registry.lookup(reg, "hello") == [(self(), "world")]
        assert await in_process(lambda: Registry.lookup(reg, "hello")) == [(self(), "world")]

    run(scenario)


@PARTITIONS
def test_lookup_duplicate(partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.DuplicateLookupTest")
        await Registry.start(reg, keys="duplicate", partitions=partitions)
        assert Registry.lookup(reg, "hello") == []
        Registry.register(reg, "hello", "world")
        assert Registry.lookup(reg, "hello") == [(self(), "world")]
        Registry.register(reg, "hello", "another")
        assert sorted(Registry.lookup(reg, "hello")) == [(self(), "another"), (self(), "world")]

    run(scenario)


@PARTITIONS
def test_match(partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.MatchTest")
        await Registry.start(reg, keys="duplicate", partitions=partitions)
        Registry.register(reg, "hello", (1, "atom", 1))
        Registry.register(reg, "hello", (2, "atom", 2))
        me = self()
        assert Registry.match(reg, "hello", (1, ANY, ANY)) == [(me, (1, "atom", 1))]
        assert Registry.match(reg, "hello", (2, ANY, ANY)) == [(me, (2, "atom", 2))]
        both = [(me, (1, "atom", 1)), (me, (2, "atom", 2))]
        assert sorted(Registry.match(reg, "hello", (ANY, "atom", ANY))) == both
        assert sorted(Registry.match(reg, "hello", (ANY, ANY, ANY), lambda v: v[0] == v[2])) == both
        assert Registry.match(reg, "hello", (ANY, ANY, ANY), lambda v: v[2] > 1) == [(me, (2, "atom", 2))]
        assert sorted(Registry.match(reg, "hello", (ANY, str, ANY))) == both

    run(scenario)


@PARTITIONS
@pytest.mark.parametrize("keys", ["unique", "duplicate"])
def test_select(keys: str, partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.SelectAllTest")
        await Registry.start(reg, keys=keys, partitions=partitions)
        Registry.register(reg, "hello", "value")
        Registry.register(reg, "world", "value")
        everything = [((ANY, ANY, ANY), None, lambda e: (e[0], e[1], e[2]))]
        assert sorted(Registry.select(reg, everything)) == [("hello", self(), "value"), ("world", self(), "value")]
        assert sorted(Registry.select(reg, [((ANY, ANY, ANY), None, None)])) == [
            ("hello", self(), "value"),
            ("world", self(), "value"),
        ]
        keys_only = [((ANY, ANY, ANY), None, lambda e: e[0])]
        assert sorted(Registry.select(reg, keys_only)) == ["hello", "world"]
        # Elixir's body shapes: a map of the bound variables
        as_map = [((str, Pid, ANY), lambda e: e[0] == "world", lambda e: {"key": e[0], "pid": e[1], "value": e[2]})]
        assert Registry.select(reg, as_map) == [{"key": "world", "pid": self(), "value": "value"}]

    run(scenario)


@PARTITIONS
@pytest.mark.parametrize("keys", ["unique", "duplicate"])
def test_unregister(keys: str, partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.UnregisterTest")
        await Registry.start(reg, keys=keys, partitions=partitions)
        Registry.register(reg, "hello", "world")
        if keys == "duplicate":
            Registry.register(reg, "hello", "world")
        assert Registry.keys(reg, self()) == ["hello"] * (1 if keys == "unique" else 2)
        assert Registry.unregister(reg, "hello") is None
        assert Registry.keys(reg, self()) == []
        assert Registry.lookup(reg, "hello") == []
        Registry.unregister(reg, "never")  # always fine

    run(scenario)


@PARTITIONS
def test_unregister_match_unique(partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.UniqueUnregisterMatchTest")
        await Registry.start(reg, keys="unique", partitions=partitions)
        Registry.register(reg, "hello", "world")
        assert Registry.keys(reg, self()) == ["hello"]
        Registry.unregister_match(reg, "hello", "foo")
        assert Registry.keys(reg, self()) == ["hello"]
        Registry.unregister_match(reg, "hello", "world")
        assert Registry.keys(reg, self()) == []

    run(scenario)


@PARTITIONS
def test_unregister_match_duplicate(partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.DuplicateUnregisterMatchTest")
        await Registry.start(reg, keys="duplicate", partitions=partitions)
        for value in ("world_a", "world_b", "world_c"):
            Registry.register(reg, "hello", value)
        assert Registry.keys(reg, self()) == ["hello", "hello", "hello"]
        Registry.unregister_match(reg, "hello", "world_a")
        assert Registry.keys(reg, self()) == ["hello", "hello"]
        assert Registry.lookup(reg, "hello") == [(self(), "world_b"), (self(), "world_c")]
        Registry.unregister_match(reg, "hello", str, lambda v: v.endswith("c"))
        assert Registry.lookup(reg, "hello") == [(self(), "world_b")]

    run(scenario)


@PARTITIONS
def test_update_value(partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.UpdateTest")
        await Registry.start(reg, keys="unique", partitions=partitions)
        Registry.register(reg, "hello", 1)
        assert Registry.lookup(reg, "hello") == [(self(), 1)]
        assert Registry.update_value(reg, "hello", lambda v: v + 1) == (2, 1)
        assert Registry.lookup(reg, "hello") == [(self(), 2)]
        # Elixir's :error: a key the caller does not hold
        assert Registry.update_value(reg, "nope", lambda v: v) is None
        assert await in_process(lambda: Registry.update_value(reg, "hello", lambda v: 99)) is None
        assert Registry.lookup(reg, "hello") == [(self(), 2)]

    run(scenario)


@PARTITIONS
def test_values_unique(partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.UniqueValuesTest")
        await Registry.start(reg, keys="unique", partitions=partitions)
        assert Registry.values(reg, "hello", self()) == []
        Registry.register(reg, "hello", "world")
        assert Registry.values(reg, "hello", self()) == ["world"]
        assert await in_process(lambda: Registry.values(reg, "hello", self())) == []
        parent = self()
        assert await in_process(lambda: Registry.values(reg, "hello", parent)) == ["world"]

    run(scenario)


@PARTITIONS
def test_values_duplicate(partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Registry.DuplicateValuesTest")
        await Registry.start(reg, keys="duplicate", partitions=partitions)
        assert Registry.values(reg, "hello", self()) == []
        Registry.register(reg, "hello", "world")
        assert Registry.values(reg, "hello", self()) == ["world"]
        Registry.register(reg, "hello", "another")
        assert sorted(Registry.values(reg, "hello", self())) == ["another", "world"]

    run(scenario)


# --- beyond the docs: exits, listeners, dispatch, via-names --------------------------------------


async def worker(reg: str, keys: list[Any], parent: Pid) -> None:
    for key in keys:
        Registry.register(reg, key, f"value of {key}")
    send(parent, ("registered", self()))
    await receive("never sent")


@PARTITIONS
@pytest.mark.parametrize("keys", ["unique", "duplicate"])
def test_entries_vanish_when_their_process_ends(keys: str, partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Exits")
        await Registry.start(reg, keys=keys, partitions=partitions)
        a = spawn(worker, reg, ["a1", "a2", ("tuple", 1)], self())
        b = spawn(worker, reg, ["b1", "b2"], self())
        await receive(("registered", a), timeout=1)
        await receive(("registered", b), timeout=1)
        assert Registry.count(reg) == 5
        assert Registry.statistics(reg).processes == 2
        pymesh.exit(a, "kill")
        # synchronous: gone the moment the process is
        assert Registry.lookup(reg, "a1") == [] and Registry.lookup(reg, ("tuple", 1)) == []
        assert Registry.keys(reg, a) == []
        assert Registry.lookup(reg, "b1") == [(b, "value of b1")]
        assert Registry.count(reg) == 2
        stats = Registry.statistics(reg)
        assert stats == RegistryStatistics(reg, keys, partitions, 2, 1, 0, stats.owner)

    run(scenario)


def test_listeners_hear_register_unregister_and_exits() -> None:
    async def scenario() -> None:
        heard: dict[str, list[Any]] = {"named": [], "pid": []}

        async def listener(tag: str) -> None:
            while True:
                heard[tag].append(await receive())

        pymesh.register("reg_listener", spawn(listener, "named"))
        by_pid = spawn(listener, "pid")
        reg = fresh("Listened")
        await Registry.start(reg, keys="duplicate", listeners=["reg_listener", by_pid, "gone_listener"])
        Registry.register(reg, "k", 1)
        w = spawn(worker, reg, ["w"], self())
        await receive(("registered", w), timeout=1)
        Registry.unregister(reg, "k")
        pymesh.exit(w, "kill")  # entries that vanish with their process are announced too
        await asyncio.sleep(0.01)
        me = self()
        expected = [
            ("register", reg, "k", me, 1),
            ("register", reg, "w", w, "value of w"),
            ("unregister", reg, "k", me),
            ("unregister", reg, "w", w),
        ]
        assert heard == {"named": expected, "pid": expected}

    run(scenario)


def test_parallel_dispatch_runs_partitions_concurrently() -> None:
    async def scenario() -> None:
        reg = fresh("Parallel")
        await Registry.start(reg, keys="duplicate", partitions=4)
        pids = [spawn(worker, reg, ["topic"], self()) for _ in range(16)]
        for pid in pids:
            await receive(("registered", pid), timeout=1)
        groups: list[list[tuple[Pid, Any]]] = []
        started = asyncio.Event()
        expected = len([1 for part in range(4) if any(p.id % 4 == part for p in pids)])

        async def per_partition(entries: list[tuple[Pid, Any]]) -> None:
            groups.append(entries)
            if len(groups) == expected:
                started.set()
            await started.wait()  # only returns if the others run at the same time

        await asyncio.wait_for(Registry.dispatch(reg, "topic", per_partition, parallel=True), 2)
        assert sorted(pid for group in groups for pid, _ in group) == sorted(pids)
        # serially, each partition's call happens one after the other, with the same entries
        seen: list[list[Any]] = []
        await Registry.dispatch(reg, "topic", seen.append)
        assert sorted(map(len, seen)) == sorted(map(len, groups)) and len(seen) == expected

    run(scenario)


def test_via_names_with_send_whereis_monitor_and_cast() -> None:
    async def scenario() -> None:
        reg = fresh("Via")
        await Registry.start(reg)
        name = ("via", reg, ("server", 1))
        pid = await Agent.start([], name=name)
        assert whereis(name) == pid
        cast(name, "ignored")
        await call(name, ("update", lambda s: s + ["x"]))
        assert await call(name, ("get", lambda s: s)) == ["x"]
        ref = monitor(name)
        pymesh.exit(pid, "kill")
        assert await receive(("DOWN", ref, ANY, ANY, ANY), timeout=1) == ("DOWN", ref, "process", pid, "killed")
        assert whereis(name) is None
        with pytest.raises(NoProcess):
            send(name, "hello")
        # a via-name needs a unique registry
        dup = fresh("ViaDup")
        await Registry.start(dup, keys="duplicate")
        with pytest.raises(RegistryError):
            whereis(("via", dup, "x"))
        with pytest.raises(UnknownRegistry):
            whereis(("via", "no such registry", "x"))

    run(scenario)


# --- supervision and restarts ---------------------------------------------------------------


def test_a_crashed_owner_is_restarted_and_nothing_is_left_half_registered() -> None:
    async def scenario() -> None:
        trap_exit(True)
        reg = fresh("Supervised")
        sup = await Supervisor.start_link([Registry.child_spec(reg, keys="unique", partitions=4)])
        [(child_id, owner, kind)] = await Supervisor.which_children(sup)
        assert child_id == ("Registry", reg) and kind == "supervisor"

        async def trapping(parent: Pid) -> None:
            trap_exit(True)
            Registry.register(reg, "trapper", 1)
            send(parent, ("registered", self()))
            msg = await receive(("EXIT", ANY, ANY))
            send(parent, ("trapper got", msg, Registry.keys(reg, self()) if reg in Registry.which() else None))
            await receive("never sent")

        plain = spawn(worker, reg, ["p1", "p2"], self())
        trapper = spawn(trapping, self())
        await receive(("registered", plain), timeout=1)
        await receive(("registered", trapper), timeout=1)
        ref = monitor(plain)
        assert Registry.count(reg) == 3

        pymesh.exit(owner, "kill")
        # a registrant dies with the owner, as if linked; a trapping one is told
        assert (await receive(("DOWN", ref, ANY, ANY, ANY), timeout=2))[4] == "killed"
        _, (tag, frm, reason), _keys = await receive(("trapper got", ANY, ANY), timeout=2)
        assert (tag, frm, reason) == ("EXIT", owner, "killed")
        assert pymesh.is_alive(trapper)

        async def restarted() -> Any:
            children = await Supervisor.which_children(sup)
            return children[0][1] not in (None, owner) and reg in Registry.which()

        for _ in range(100):
            if await restarted():
                break
            await asyncio.sleep(0.01)
        assert await restarted()
        # a fresh, empty registry: nothing survived the crash, and it works
        assert Registry.count(reg) == 0
        assert Registry.keys(reg, trapper) == [] and Registry.lookup(reg, "trapper") == []
        Registry.register(reg, "p1", "again")
        assert Registry.lookup(reg, "p1") == [(self(), "again")]

    run(scenario)


def test_stop_and_names() -> None:
    async def scenario() -> None:
        reg = fresh("Stopped")
        owner = await Registry.start(reg)
        with pytest.raises(AlreadyRegistered) as info:
            await Registry.start(reg)
        assert info.value.pid == owner
        with pytest.raises(RegistryError):
            await Registry.start("global")  # taken by Global's via resolver
        Registry.register(reg, "k", 1)
        Registry.stop(reg)
        with pytest.raises(UnknownRegistry):
            Registry.lookup(reg, "k")
        assert reg not in Registry.which()
        await Registry.start(reg)
        assert Registry.lookup(reg, "k") == []

    run(scenario)


# --- bad input --------------------------------------------------------------------------------


def test_unknown_registry_raises_everywhere() -> None:
    async def scenario() -> None:
        calls: list[Callable[[], Any]] = [
            lambda: Registry.register("nope", "k", 1),
            lambda: Registry.unregister("nope", "k"),
            lambda: Registry.unregister_match("nope", "k", ANY),
            lambda: Registry.lookup("nope", "k"),
            lambda: Registry.match("nope", "k", ANY),
            lambda: Registry.select("nope", []),
            lambda: Registry.count("nope"),
            lambda: Registry.count_match("nope", "k", ANY),
            lambda: Registry.count_select("nope", []),
            lambda: Registry.update_value("nope", "k", lambda v: v),
            lambda: Registry.keys("nope", self()),
            lambda: Registry.values("nope", "k", self()),
            lambda: Registry.meta("nope", "k"),
            lambda: Registry.put_meta("nope", "k", 1),
            lambda: Registry.delete_meta("nope", "k"),
            lambda: Registry.statistics("nope"),
            lambda: Registry.stop("nope"),
            lambda: Registry.lookup(["unhashable name"], "k"),
        ]
        for fn in calls:
            with pytest.raises(UnknownRegistry):
                fn()
        with pytest.raises(UnknownRegistry):
            await Registry.dispatch("nope", "k", print)

    run(scenario)


@PARTITIONS
@pytest.mark.parametrize("keys", ["unique", "duplicate"])
def test_unhashable_and_unencodable_keys(keys: str, partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("BadKeys")
        await Registry.start(reg, keys=keys, partitions=partitions)
        for bad in ([1, 2], {"a": 1}, {1}, ("ok", [1])):
            for fn in (
                lambda bad=bad: Registry.register(reg, bad, 1),
                lambda bad=bad: Registry.lookup(reg, bad),
                lambda bad=bad: Registry.unregister(reg, bad),
                lambda bad=bad: Registry.values(reg, bad, self()),
            ):
                with pytest.raises(BadKey) as info:
                    fn()
                assert isinstance(info.value, TypeError) and isinstance(info.value, PymeshError)
                assert info.value.key == bad and "hashable" in str(info.value)
        unencodable = ("ok", object())
        with pytest.raises(BadKey, match="encodable") as info:
            Registry.register(reg, unencodable, 1)
        assert info.value.key is unencodable
        assert Registry.count(reg) == 0 and Registry.keys(reg, self()) == []
        # values are local and may be anything
        Registry.register(reg, ("fine", 1), object())

    run(scenario)


def test_bad_options_and_specs() -> None:
    async def scenario() -> None:
        for kwargs in ({"keys": "many"}, {"partitions": 0}, {"partitions": 1.5}, {"listeners": [3]}):
            with pytest.raises(RegistryError):
                await Registry.start(fresh("Bad"), **kwargs)
        reg = fresh("Dup")
        await Registry.start(reg, keys="duplicate")
        with pytest.raises(RegistryError, match="unique"):
            Registry.update_value(reg, "k", lambda v: v)
        for spec in ((ANY, None, None), [ANY], [(ANY, None, "not callable")]):
            with pytest.raises(RegistryError):
                Registry.select(reg, spec)  # type: ignore[arg-type]
        uni = fresh("Uni")
        await Registry.start(uni)
        with pytest.raises(BadName):  # GenServer.start(name=via) for a pid that is not a live local process
            P.rt.via_register[uni]("k", Pid("other@host", 1, 1))

    run(scenario)


# --- a property test against a dict ------------------------------------------------------------------


class Model:
    """The registry as plain data: key -> [(process index, value)], in registration order."""

    def __init__(self, unique: bool) -> None:
        self.unique = unique
        self.entries: dict[Any, list[tuple[int, Any]]] = {}

    def register(self, who: int, key: Any, value: Any) -> bool:
        listed = self.entries.setdefault(key, [])
        if self.unique and listed:
            return False
        listed.append((who, value))
        return True

    def unregister(self, who: int, key: Any) -> None:
        listed = [e for e in self.entries.get(key, []) if e[0] != who]
        if listed:
            self.entries[key] = listed
        else:
            self.entries.pop(key, None)

    def exit(self, who: int) -> None:
        for key in list(self.entries):
            self.unregister(who, key)


async def puppet() -> None:
    """A process that runs the functions it is sent and answers with their result."""
    while True:
        frm, fn = await receive()
        try:
            send(frm, ("ok", fn()))
        except AlreadyRegistered:
            send(frm, ("taken", None))


ops = st.lists(
    st.tuples(
        st.sampled_from(["register", "unregister", "exit"]),
        st.integers(0, 2),
        st.sampled_from(["a", "b", ("t", 1), 7]),
        st.integers(0, 3),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, unique=st.booleans(), partitions=st.sampled_from([1, 3]))
def test_registry_behaves_like_a_dict(ops: list[tuple[str, int, Any, int]], unique: bool, partitions: int) -> None:
    async def scenario() -> None:
        reg = fresh("Model")
        await Registry.start(reg, keys="unique" if unique else "duplicate", partitions=partitions)
        model = Model(unique)
        procs = [spawn(puppet) for _ in range(3)]
        await asyncio.sleep(0)  # let them start: killing a never-started process warns "never awaited"

        async def do(who: int, fn: Callable[[], Any]) -> Any:
            send(procs[who], (self(), fn))
            return await receive(("ok", ANY), timeout=1)

        for op, who, key, value in ops:
            if op == "register":
                send(procs[who], (self(), lambda k=key, v=value: Registry.register(reg, k, v)))
                status, _ = await receive((str, ANY), timeout=1)
                assert (status == "ok") == model.register(who, key, value)
            elif op == "unregister":
                await do(who, lambda k=key: Registry.unregister(reg, k))
                model.unregister(who, key)
            else:
                pymesh.exit(procs[who], "kill")
                procs[who] = spawn(puppet)
                await asyncio.sleep(0)
                model.exit(who)
            for k in ("a", "b", ("t", 1), 7):
                expected = [(procs[w], v) for w, v in model.entries.get(k, [])]
                assert sorted(map(repr, Registry.lookup(reg, k))) == sorted(map(repr, expected))
            assert Registry.count(reg) == sum(map(len, model.entries.values()))
            for w, pid in enumerate(procs):
                held = [k for k, es in model.entries.items() for who_, _ in es if who_ == w]
                assert sorted(map(repr, Registry.keys(reg, pid))) == sorted(map(repr, held))

    run(scenario)
