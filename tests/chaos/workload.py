"""What every chaos node runs, and what it remembers for the harness's invariant checks.

Loaded into a ``tests/nodes/testnode.py`` node by the harness (``import
chaos.workload as W; await W.setup(...)`` over the node's stdin), so the
harness can ask for :func:`snapshot` even while the node's network is cut.

The processes, one each per node:

* ``receiver`` (registered ``chaos_rx``): takes ``("chaos_seq", sender, n)``
  messages and checks, as they arrive, that each sender's numbers only grow
  (no reordering, no duplicate) and that a gap comes only after a nodedown of
  the sender's node (it subscribes to ``monitor_nodes``; the runtime puts the
  nodedown in its mailbox before anything from a later connection).
* ``traffic``: every ``SEND_INTERVAL`` sends the next number of a stream to a
  random other node's receiver. Each stream is *monitored*; the numbers sent
  while one monitor was active form an *epoch*, closed by that monitor's
  ``DOWN``. The harness checks that every number the receiver never got lies
  in an epoch closed by a ``DOWN``: a loss is always reported to the sender.
* ``watcher`` (trapping exits): spawns short-lived ``target`` processes on
  random other nodes, links to and monitors each, and counts every ``EXIT``
  and ``DOWN`` per link and monitor: a second one, or one for something it
  never watched, is a violation; so is a monitor that never fired (checked
  at the end).
* ``namer``: starts ``holder`` processes that claim a key in one of four
  registries — ``register`` (local names), ``Registry`` (local), ``Global``,
  ``DistributedRegistry`` — or join a ``PG`` group, from a small key space,
  so nodes contend for the same names across partitions; holders live a
  random time, some unregister (leave) first. Live holders are listed in :data:`HOLDERS` for the final check.
* a ``DistributedSupervisor`` (``chaos_sup``) member; its children are
  :func:`child`, each recording itself in :data:`RUNNING`.

Violations are printed at once on stderr as ``CHAOS-VIOLATION ...`` lines (the
harness keeps every node's stderr, so they survive a ``kill -9``) and kept
in :func:`snapshot`.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pymesh
from pymesh import (
    ANY,
    PG,
    AlreadyRegistered,
    DistributedRegistry,
    DistributedSupervisor,
    Exit,
    Global,
    Node,
    Pid,
    ReceiveTimeout,
    Registry,
    SpawnError,
    link,
    monitor,
    receive,
    register,
    send,
    spawn,
    trap_exit,
)

SEND_INTERVAL = 0.01
WATCH_INTERVAL = 0.15
NAME_INTERVAL = 0.12
TARGET_LIFETIME = (0.05, 1.5)
HOLDER_LIFETIME = (0.5, 6.0)
KEYS = 10  # per registry kind: small, so that nodes contend for names

LREG = "chaos_lreg"
DREG = "chaos_dreg"
SUP = "chaos_sup"
KINDS = ("local", "lreg", "global", "dreg", "pg")


@dataclass
class _Rx:
    first: int
    last: int
    count: int = 1
    gaps: list[list[int]] = field(default_factory=list)
    downs_at_last: int = 0


@dataclass
class _Tx:
    seq: int = 0
    ref: Any = None
    epoch_first: int = 1
    epochs: list[list[Any]] = field(default_factory=list)  # [first, last, reason]
    paused_until: float = 0.0
    dead: bool = False


class _State:
    def __init__(self) -> None:
        self.node = ""
        self.running = False
        self.frozen = False
        self.rng = random.Random()
        self.directory: dict[str, Pid] = {}  # node -> its receiver
        self.violations: list[str] = []
        self.counters: dict[str, int] = {}
        self.rx: dict[Pid, _Rx] = {}
        self.tx: dict[Pid, _Tx] = {}
        self.monitors: dict[Any, list[Any]] = {}  # ref -> [target, downs]
        self.links: dict[Pid, int] = {}  # target -> EXITs received
        self.down_reasons: dict[Pid, Any] = {}  # target -> the reason its monitor fired with
        self.pids: dict[str, Pid] = {}

    def count(self, what: str, n: int = 1) -> None:
        self.counters[what] = self.counters.get(what, 0) + n

    def violation(self, text: str) -> None:
        line = f"{self.node}: {text}"
        if len(self.violations) < 200:
            self.violations.append(line)
        self.count("violations")
        print(f"CHAOS-VIOLATION {line}", file=sys.stderr, flush=True)


S = _State()
#: live holders on this node: pid -> (kind, key)
HOLDERS: dict[Pid, tuple[str, Any]] = {}
#: supervised children running on this node: child id -> pid
RUNNING: dict[Any, Pid] = {}
STARTS: dict[Any, int] = {}


# --- setup and control (called by the harness through eval) -----------------------------------------


async def setup(seed: int, index: int, incarnation: int, sabotage: str = "") -> str:
    """Start the registries, the supervisor member and the workload processes; return the receiver's pid.

    ``sabotage`` breaks the runtime on purpose, for the harness's self-test
    (its checks must notice): ``drop`` loses every 97th sequenced message
    silently, ``dup_down`` delivers every 5th ``DOWN`` twice.
    """
    for kind in filter(None, sabotage.split(",")):
        _sabotage(kind)
    S.node = Node.self()
    S.rng = random.Random(f"{seed}/{index}/{incarnation}")
    await Registry.start(LREG, keys="unique")
    await DistributedRegistry.start(DREG)
    await DistributedSupervisor.start(SUP)
    rx = spawn(receiver)
    register("chaos_rx", rx)
    S.pids = {"receiver": rx, "traffic": spawn(traffic), "watcher": spawn(watcher), "namer": spawn(namer)}
    S.running = True
    return str(rx)


def _sabotage(kind: str) -> None:
    from pymesh.runtime import _process as P

    if kind == "drop":
        deliver = P.deliver

        def lossy(proc: Any, msg: Any) -> None:
            if type(msg) is tuple and msg[:1] == ("chaos_seq",) and msg[2] % 97 == 0:
                return
            deliver(proc, msg)

        P.deliver = lossy
    elif kind == "dup_down":
        deliver = P.deliver
        seen = [0]

        def twice(proc: Any, msg: Any) -> None:
            deliver(proc, msg)
            if type(msg) is tuple and msg[:1] == ("DOWN",):
                seen[0] += 1
                if seen[0] % 5 == 0:
                    deliver(proc, msg)

        P.deliver = twice
    else:
        raise ValueError(f"unknown sabotage {kind!r}")


def set_directory(directory: dict[str, str]) -> None:
    S.directory = {node: Pid.parse(pid) for node, pid in directory.items() if node != S.node}


async def start_children(ids: list[str]) -> list[str]:
    out = []
    for child_id in ids:
        pid = await DistributedSupervisor.start_child(SUP, {"id": child_id, "start": "chaos.workload:child", "args": (child_id,)})
        out.append(str(pid))
    return out


def quiesce() -> None:
    """Stop making traffic, watches and names; holders keep the names they have."""
    S.running = False
    S.frozen = True


def snapshot(directory: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything the harness checks, JSON-shaped (pids as their printed form)."""
    if directory is not None:
        set_directory(directory)
    pending = sum(1 for _, downs in S.monitors.values() if downs == 0)
    return {
        "node": S.node,
        "time": time.time(),
        "traffic_pid": str(S.pids["traffic"]) if "traffic" in S.pids else None,
        "counters": dict(S.counters),
        "violations": list(S.violations),
        "rx": {str(p): [r.first, r.last, r.count, r.gaps] for p, r in S.rx.items()},
        "tx": {
            str(p): {"seq": t.seq, "epochs": t.epochs, "open": None if t.ref is None else t.epoch_first, "dead": t.dead}
            for p, t in S.tx.items()
        },
        "watch": {
            "monitors": len(S.monitors),
            "pending": pending,
            "links": len(S.links),
            "pending_links": sum(1 for n in S.links.values() if n == 0),
            # what fired for each target whose link or monitor did not (for the report)
            "unfired": [
                [str(pid), S.links.get(pid), S.down_reasons.get(pid)]
                for pid in {t for t, n in S.links.items() if n == 0} | {t for t, d in S.monitors.values() if d == 0}
            ][:20],
        },
        "alive": {name: pymesh.is_alive(pid) for name, pid in S.pids.items()},
    }


def names() -> dict[str, Any]:
    """What this node resolves, per registry kind, and which holders think they hold what."""
    local = {repr(n): str(pymesh.whereis(n)) for n in pymesh.registered() if n.startswith("chaos_l")}
    lreg = {}
    for k in range(KEYS):
        found = Registry.lookup(LREG, ("l", k))
        if found:
            lreg[repr(("l", k))] = [str(p) for p, _ in found]
    glob = {repr(n): str(Global.whereis_name(n)) for n in Global.registered_names() if type(n) is tuple and n[:1] == ("g",)}
    dreg = {}
    for key, pid in DistributedRegistry.select(DREG, [((ANY, ANY, ANY), None, lambda e: (e[0], e[1]))]):
        dreg.setdefault(repr(key), []).append(str(pid))
    pg = {repr(g): sorted(str(p) for p in PG.get_members(g)) for g in PG.which_groups() if type(g) is tuple and g[:1] == ("p",)}
    return {
        "node": S.node,
        "pg": pg,
        "local": local,
        "lreg": lreg,
        "global": glob,
        "dreg": dreg,
        "holders": [[kind, repr(key), str(pid)] for pid, (kind, key) in HOLDERS.items() if pymesh.is_alive(pid)],
        "members": {
            "visible": Node.list(),
            "dreg": sorted(DistributedRegistry.members(DREG)),
            "sup": sorted(n for n, up in DistributedSupervisor.members(SUP).items() if up),
        },
        "children": {repr(k): str(p) for k, p in RUNNING.items()},
        "which_children": [[repr(k), str(p) if p is not None else None] for k, p, _ in DistributedSupervisor.which_children(SUP)],
    }


async def synced(timeout: float = 5.0) -> bool:
    """Global names and the distributed registry have synced with every connected node."""
    return await Global.sync(timeout) and await DistributedRegistry.wait_synced(DREG, timeout)


# --- sequenced messages ------------------------------------------------------------------------------


async def receiver() -> None:
    Node.monitor_nodes(True)
    downs: dict[str, int] = {}
    while True:
        m = await receive()
        if type(m) is not tuple or not m:
            S.violation(f"receiver got a stray message {m!r}")
            continue
        if m[0] == "chaos_seq":
            _, frm, seq = m
            r = S.rx.get(frm)
            S.count("received")
            if r is None:
                S.rx[frm] = _Rx(seq, seq, downs_at_last=downs.get(frm.node, 0))
                continue
            if seq <= r.last:
                kind = "duplicate" if seq == r.last else "reordered"
                S.violation(f"{kind} message from {frm}: {seq} after {r.last}")
                continue
            down_count = downs.get(frm.node, 0)
            if seq > r.last + 1:
                r.gaps.append([r.last + 1, seq - 1])
                if down_count == r.downs_at_last:
                    S.violation(f"messages {r.last + 1}..{seq - 1} from {frm} lost with no nodedown of {frm.node} between")
            r.last, r.downs_at_last = seq, down_count
            r.count += 1
        elif m[0] == "nodedown":
            downs[m[1]] = downs.get(m[1], 0) + 1
            S.count("nodedowns_seen")
        elif m[0] != "nodeup":
            S.violation(f"receiver got a stray message {m!r}")


async def traffic() -> None:
    me = pymesh.self()
    refs: dict[Any, Pid] = {}
    loop = asyncio.get_running_loop()
    while True:
        try:
            m = await receive(("DOWN", ANY, "process", ANY, ANY), timeout=SEND_INTERVAL)
        except ReceiveTimeout:
            m = None
        if m is not None:
            _, ref, _, rx, reason = m
            target = refs.pop(ref, None)
            t = S.tx.get(target) if target is not None else None
            if t is None or t.ref != ref:
                S.violation(f"traffic got a DOWN for a monitor it does not hold: {m!r}")
                continue
            t.epochs.append([t.epoch_first, t.seq, reason if type(reason) is str else repr(reason)])
            t.ref = None
            t.paused_until = loop.time() + 0.2
            S.count("tx_downs")
            if reason != "noconnection":
                t.dead = True  # the receiver itself ended (its node restarted): a new one will be announced
            continue
        if not S.running or not S.directory:
            continue
        rx = S.rng.choice(sorted(S.directory.values()))
        t = S.tx.get(rx)
        if t is None:
            t = S.tx[rx] = _Tx()
        if t.dead:
            continue
        if t.ref is None:
            if loop.time() < t.paused_until:
                continue
            t.ref = monitor(rx)
            refs[t.ref] = rx
            t.epoch_first = t.seq + 1
        t.seq += 1
        send(rx, ("chaos_seq", me, t.seq))
        S.count("sent")


# --- links and monitors --------------------------------------------------------------------------------


async def target(lifetime: float) -> None:
    await asyncio.sleep(lifetime)
    raise Exit("done")


async def watcher() -> None:
    trap_exit(True)
    while True:
        try:
            while True:
                m = await receive(timeout=WATCH_INTERVAL)
                _watched(m)
        except ReceiveTimeout:
            pass
        if not S.running:
            continue
        peers = sorted(S.directory)
        if not peers:
            continue
        node = S.rng.choice(peers)
        lifetime = S.rng.uniform(*TARGET_LIFETIME)
        try:
            pid = await Node.spawn(node, "chaos.workload:target", lifetime, timeout=3.0)
        except SpawnError:
            S.count("spawn_failed")
            continue
        S.links[pid] = 0
        link(pid)
        S.monitors[monitor(pid)] = [pid, 0]
        S.count("watched")


def _watched(m: Any) -> None:
    if type(m) is tuple and len(m) == 5 and m[0] == "DOWN":
        entry = S.monitors.get(m[1])
        if entry is None:
            S.violation(f"DOWN for an unknown monitor: {m!r}")
            return
        entry[1] += 1
        S.down_reasons[entry[0]] = repr(m[4])
        S.count("downs")
        if entry[1] > 1:
            S.violation(f"monitor {m[1]} of {entry[0]} fired {entry[1]} times (now {m[4]!r})")
    elif type(m) is tuple and len(m) == 3 and m[0] == "EXIT":
        if m[1] not in S.links:
            S.violation(f"EXIT from a process never linked: {m!r}")
            return
        S.links[m[1]] += 1
        S.count("exits")
        if S.links[m[1]] > 1:
            S.violation(f"link to {m[1]} fired {S.links[m[1]]} times (now {m[2]!r})")
    else:
        S.violation(f"watcher got a stray message {m!r}")


# --- names ---------------------------------------------------------------------------------------------


async def namer() -> None:
    while True:
        await asyncio.sleep(NAME_INTERVAL)
        if not S.running:
            continue
        kind = S.rng.choice(KINDS)
        key = S.rng.randrange(KEYS)
        spawn(holder, kind, key, S.rng.uniform(*HOLDER_LIFETIME), S.rng.random() < 0.3)
        S.count("claims")


async def _claim(kind: str, key: Any) -> bool:
    me = pymesh.self()
    try:
        if kind == "local":
            register(key, me)
        elif kind == "lreg":
            Registry.register(LREG, key)
        elif kind == "dreg":
            DistributedRegistry.register(DREG, key)
        elif kind == "pg":
            PG.join(key, [me])
        else:
            return await Global.register_name(key, me)
    except AlreadyRegistered:
        return False
    return True


def _release(kind: str, key: Any) -> None:
    if kind == "local":
        pymesh.unregister(key)
    elif kind == "lreg":
        Registry.unregister(LREG, key)
    elif kind == "dreg":
        DistributedRegistry.unregister(DREG, key)
    elif kind == "pg":
        PG.leave(key, [pymesh.self()])


async def holder(kind: str, k: int, lifetime: float, unregister_first: bool) -> None:
    key: Any = {"local": f"chaos_l{k}", "lreg": ("l", k), "global": ("g", k), "dreg": ("d", k), "pg": ("p", k)}[kind]
    me = pymesh.self()
    if not await _claim(kind, key):
        return
    S.count(f"held_{kind}")
    HOLDERS[me] = (kind, key)
    try:
        deadline = time.monotonic() + lifetime
        while not S.frozen and time.monotonic() < deadline:
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        if S.frozen:
            await receive("never")  # hold the name until the end of the run
        if unregister_first:
            del HOLDERS[me]
            if kind == "global":
                await Global.unregister_name(key)
            else:
                _release(kind, key)
            await asyncio.sleep(0.1)
    finally:
        HOLDERS.pop(me, None)


# --- supervised children -------------------------------------------------------------------------------


async def child(child_id: str) -> None:
    me = pymesh.self()
    RUNNING[child_id] = me
    STARTS[child_id] = STARTS.get(child_id, 0) + 1
    try:
        await receive("never")
    finally:
        if RUNNING.get(child_id) == me:
            del RUNNING[child_id]


async def burst_then_exit(to: Pid, n: int) -> None:
    """Wait for ``"go"``, send ``("n", i)`` for each i < n to ``to``, end normally (a guarantee test's)."""
    await receive("go")
    for i in range(n):
        send(to, ("n", i))
