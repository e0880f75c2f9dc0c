"""The chaos harness: N real nodes, faults from a seeded schedule, invariants checked at the end.

A run (:class:`ChaosRun`) starts N ``tests/nodes/testnode.py`` processes, each
with the workload of :mod:`chaos.workload`, all their connections routed
through :mod:`chaos.network`'s proxies. For ``duration`` seconds it injects
faults drawn from ``random.Random(seed)``:

==============  ===============================================================
``partition``   split the nodes in two (or isolate one); the links across are
                *cut* (connections reset, reconnects refused) or *stalled*
                (bytes held, both ways or one way) for 0.3-6 s, then healed
``kill``        ``kill -9`` a node (by its pid); restart it 0.5-4 s later, with
                the same name and a new creation
``stop``        ``SIGSTOP`` a node for 0.2 s up to 2.5 tick times, then
                ``SIGCONT`` (a silent stall; peers may time it out)
``latency``     add 5-150 ms each way on some links for 2-8 s
``flap``        cut and heal one link 3-6 times in a row
==============  ===============================================================

Then it heals everything, restarts what is dead, waits for the cluster to
converge, stops the workload and checks:

* **messages** — per sender, numbers arrive increasing (no reorder, no
  duplicate); a gap only after a nodedown of the sender's node at the receiver;
  and every lost message lies in an epoch of the sender's monitor of the
  receiver that ended with ``DOWN`` — a loss is reported to the sender;
* **links and monitors** — every one fired exactly once (no duplicate, none
  for something never watched, none still pending at the end);
* **names** — for ``register``, ``Registry``, ``Global`` and
  ``DistributedRegistry``: every name resolves to one pid, the same on every
  node; that pid is a live holder that believes it holds the name, and every
  such holder's name resolves to it (so no name points at a dead pid); for
  ``PG``: every node lists, per group, exactly the live processes that joined;
* **membership** — every node lists every other, in ``Node.list()``, in the
  distributed registry's members and in the supervisor's live members;
* **supervised children** — each child runs exactly once in the cluster, where
  every node's ``which_children`` says it runs;
* no node process died except by the harness's hand.

The fault draws come from the seed; the interleavings do not (real processes,
real sockets), and a fault whose nodes or links are still busy with an
earlier one is drawn again, so a failing seed is a strong hint, not a replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.nodeproc import HOST, TESTNODE, NodeProc, RemoteFailure, stop_process

from .network import Network

__all__ = ["ChaosConfig", "ChaosRun", "Report", "check_streams", "run_chaos"]

TESTS_DIR = Path(__file__).resolve().parent.parent
FAULTS = ("partition", "kill", "stop", "latency", "flap")


@dataclass
class ChaosConfig:
    nodes: int = 4
    duration: float = 40.0  # seconds of faults
    seed: int = 1
    tick_time: float = 2.0
    fault_gap: tuple[float, float] = (0.4, 2.0)  # seconds between fault starts
    children: int = 8
    weights: dict[str, float] = field(
        default_factory=lambda: {"partition": 3, "kill": 1.5, "stop": 1.5, "latency": 1, "flap": 1}
    )
    converge_timeout: float = 45.0
    verbose: bool = False
    sabotage: str = ""  # break the nodes on purpose (see workload.setup): the self-test of the checks


@dataclass
class Incarnation:
    """One life of one node: from its start to its ``kill -9`` (or the end of the run)."""

    index: int
    number: int
    proc: NodeProc
    rx: str = ""
    killed: bool = False
    stopped: bool = False
    snapshot: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.proc.name


@dataclass
class Report:
    seed: int
    config: ChaosConfig
    elapsed: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)  # invariant -> times it was checked
    violations: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        lines = [
            (f"chaos run: seed {self.seed}, {self.config.nodes} nodes, {self.config.duration:.0f} s of faults, "
            f"{self.elapsed:.0f} s in all"),
            "faults injected: " + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) + f" ({sum(self.faults.values())} in all)",
            "figures: " + ", ".join(f"{k} {v}" for k, v in self.figures.items()),
            f"invariant checks: {sum(self.checks.values())} ("
            + ", ".join(f"{k} {v}" for k, v in self.checks.items()) + f"); violations: {len(self.violations)}",
        ]
        lines += [f"  VIOLATION {v}" for v in self.violations[:40]]
        if len(self.violations) > 40:
            lines.append(f"  ... and {len(self.violations) - 40} more")
        lines += [f"  note: {w}" for w in self.warnings[:20]]
        if not self.ok:
            lines.append(f"reproduce the schedule with: python -m tests.chaos --nodes {self.config.nodes} "
                         f"--seconds {self.config.duration:.0f} --seed {self.seed}")
        return "\n".join(lines)


class ChaosRun:
    def __init__(self, config: ChaosConfig) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)  # the fault schedule, and only that
        self.aux = random.Random(f"{config.seed}/aux")  # incidental choices, so the schedule stays the seed's
        tag = secrets.token_hex(2)
        self.shorts = [f"chaos{i}x{tag}" for i in range(config.nodes)]
        self.names = [f"{s}@{HOST}" for s in self.shorts]
        self.cookie = "chaos-" + secrets.token_hex(8)
        self.net = Network(self.shorts)
        self.current: list[Incarnation | None] = [None] * config.nodes
        self.history: list[Incarnation] = []
        self.report = Report(config.seed, config)
        self.busy_links: set[frozenset[str]] = set()
        self.busy_nodes: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = 0.0

    # --- nodes --------------------------------------------------------------------------------------

    def log(self, text: str) -> None:
        if self.cfg.verbose:
            print(f"[{time.monotonic() - self._started:7.2f}] {text}", file=sys.stderr, flush=True)

    async def start_node(self, index: int) -> Incarnation:
        short = self.shorts[index]
        number = sum(1 for inc in self.history if inc.index == index)
        argv = [sys.executable, str(TESTNODE), short, "--cookie", self.cookie,
                "--epmd-port", str(self.net.epmd_port(short)), "--tick-time", str(self.cfg.tick_time)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)
        env.pop("PYMESH_COOKIE", None)
        inc = Incarnation(index, number, NodeProc(short, argv, env))
        self.history.append(inc)
        self.current[index] = inc
        await inc.proc.wait_ready(30)
        await inc.proc.eval("import chaos.workload as W")
        inc.rx = await inc.proc.eval(
            f"await W.setup({self.cfg.seed}, {index}, {number}, {self.cfg.sabotage!r})", timeout=30
        )
        self.log(f"started {inc.name} #{number} rx={inc.rx}")
        if number:
            # a restarted node finds the cluster again, as its discovery would make it
            peers = [other.name for other in self.live() if other is not inc]
            if peers:
                peer = self.aux.choice(peers)
                with contextlib.suppress(RemoteFailure, TimeoutError):
                    await inc.proc.eval(f"await Node.connect({peer!r})", timeout=15)
        return inc

    def directory(self) -> dict[str, str]:
        return {inc.name: inc.rx for inc in self.current if inc is not None and inc.rx and not inc.killed}

    def live(self) -> list[Incarnation]:
        """Incarnations that run and answer (not killed, not stopped)."""
        return [inc for inc in self.current if inc is not None and not inc.killed and not inc.stopped]

    async def pull(self, inc: Incarnation, timeout: float = 5.0) -> None:
        try:
            inc.snapshot = await inc.proc.eval(f"W.snapshot({self.directory()!r})", timeout=timeout)
        except (RemoteFailure, TimeoutError) as e:
            self.log(f"snapshot of {inc.name} failed: {type(e).__name__}")

    async def _poller(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            await asyncio.gather(*(self.pull(inc) for inc in self.live()))

    # --- faults ------------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _free_links(self, pairs: list[tuple[int, int]]) -> list[frozenset[str]] | None:
        links = [frozenset((self.shorts[a], self.shorts[b])) for a, b in pairs]
        if any(link in self.busy_links for link in links):
            return None
        return links

    async def inject(self) -> None:
        """Start one fault, drawn from the weights; another draw when the first finds its targets busy."""
        kinds = list(self.cfg.weights)
        for _ in range(5):
            kind = self.rng.choices(kinds, weights=[self.cfg.weights[k] for k in kinds])[0]
            if self._start_fault(kind):
                self.report.faults[kind] += 1
                return

    def _start_fault(self, kind: str) -> bool:
        n = self.cfg.nodes
        if kind == "partition":
            side = self.rng.sample(range(n), self.rng.randint(1, n // 2))
            pairs = [(a, b) for a in side for b in range(n) if b not in side]
            links = self._free_links(pairs)
            if links is None:
                return False
            how = self.rng.choices(["cut", "stall", "oneway"], weights=[6, 2.5, 1.5])[0]
            duration = self.rng.uniform(0.3, 6.0)
            self._spawn(self._partition(side, links, how, duration))
        elif kind in ("kill", "stop"):
            candidates = [i for i in range(n) if i not in self.busy_nodes]
            # keep a majority untouched by process faults
            if not candidates or len(self.busy_nodes) >= (n - 1) // 2:
                return False
            victim = self.rng.choice(candidates)
            self.busy_nodes.add(victim)
            if kind == "kill":
                self._spawn(self._kill(victim, self.rng.uniform(0.5, 4.0)))
            else:
                self._spawn(self._stop(victim, self.rng.uniform(0.2, 2.5 * self.cfg.tick_time)))
        elif kind == "latency":
            pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
            chosen = self.rng.sample(pairs, self.rng.randint(1, len(pairs)))
            links = self._free_links(chosen)
            if links is None:
                return False
            self._spawn(self._latency(links, self.rng.uniform(0.005, 0.15), self.rng.uniform(2, 8)))
        elif kind == "flap":
            a, b = self.rng.sample(range(n), 2)
            links = self._free_links([(a, b)])
            if links is None:
                return False
            times = [self.rng.uniform(0.05, 0.5) for _ in range(2 * self.rng.randint(3, 6))]
            self._spawn(self._flap(links[0], times))
        else:  # pragma: no cover - a weight for an unknown fault
            raise ValueError(kind)
        return True

    async def _partition(self, side: list[int], links: list[frozenset[str]], how: str, duration: float) -> None:
        self.busy_links.update(links)
        sides = {self.shorts[i] for i in side}
        self.log(f"partition {sorted(sides)} | rest: {how} for {duration:.1f}s")
        try:
            for key in links:
                link = self.net.links[key]
                if how == "cut":
                    link.cut()
                elif how == "stall":
                    link.stall()
                else:
                    src = next(iter(key & sides))
                    dst = next(iter(key - sides))
                    link.stall((src, dst))
            await asyncio.sleep(duration)
        finally:
            for key in links:
                self.net.links[key].heal()
            self.busy_links.difference_update(links)
            self.log("healed")

    async def _kill(self, index: int, down_for: float) -> None:
        try:
            inc = self.current[index]
            if inc is None:
                return
            await self.pull(inc, timeout=3)  # its counters so far
            self.log(f"kill -9 {inc.name}")
            inc.killed = True
            inc.proc.signal(signal.SIGKILL)
            await asyncio.to_thread(inc.proc.popen.wait, 10)
            await asyncio.sleep(down_for)
            await self.start_node(index)
        finally:
            self.busy_nodes.discard(index)

    async def _stop(self, index: int, stopped_for: float) -> None:
        try:
            inc = self.current[index]
            if inc is None or inc.killed:
                return
            self.log(f"SIGSTOP {inc.name} for {stopped_for:.1f}s")
            inc.stopped = True
            inc.proc.signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(stopped_for)
            finally:
                inc.proc.signal(signal.SIGCONT)
                inc.stopped = False
        finally:
            self.busy_nodes.discard(index)

    async def _latency(self, links: list[frozenset[str]], delay: float, duration: float) -> None:
        self.busy_links.update(links)
        self.log(f"latency {delay * 1000:.0f} ms on {len(links)} links for {duration:.1f}s")
        try:
            for key in links:
                self.net.links[key].set_delay(delay)
            await asyncio.sleep(duration)
        finally:
            for key in links:
                self.net.links[key].set_delay(0.0)
            self.busy_links.difference_update(links)

    async def _flap(self, key: frozenset[str], times: list[float]) -> None:
        self.busy_links.add(key)
        link = self.net.links[key]
        self.log(f"flap {sorted(key)} x{len(times) // 2}")
        try:
            for i, pause in enumerate(times):
                link.cut() if i % 2 == 0 else link.heal()
                await asyncio.sleep(pause)
        finally:
            link.heal()
            self.busy_links.discard(key)

    # --- the run ------------------------------------------------------------------------------------

    async def run(self) -> Report:
        self._started = time.monotonic()
        await self.net.start()
        poller: asyncio.Task[None] | None = None
        try:
            await asyncio.gather(*(self.start_node(i) for i in range(self.cfg.nodes)))
            await self._form_cluster()
            poller = asyncio.get_running_loop().create_task(self._poller())
            deadline = time.monotonic() + self.cfg.duration
            while time.monotonic() < deadline:
                await asyncio.sleep(self.rng.uniform(*self.cfg.fault_gap))
                if time.monotonic() < deadline:
                    await self.inject()
            await self._settle(poller)
            poller = None
            await self._final_checks()
        finally:
            if poller is not None:
                poller.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for inc in self.history:
                stop_process(inc.proc.popen)
            await self.net.close()
            self.report.elapsed = time.monotonic() - self._started
        return self.report

    async def _form_cluster(self) -> None:
        first = self.current[0]
        assert first is not None
        for name in self.names[1:]:
            assert await first.proc.eval(f"await Node.connect({name!r})") is True, f"cannot connect to {name}"
        await self._converged(30)
        for inc in self.live():
            inc.snapshot = await inc.proc.eval(f"W.snapshot({self.directory()!r})")
        ids = [f"c{i}" for i in range(self.cfg.children)]
        await first.proc.eval(f"await W.start_children({ids!r})", timeout=30)
        self.children = ids

    async def _converged(self, timeout: float) -> dict[str, Any]:
        """Wait until every node lists every other (visible, registry and supervisor members)."""
        deadline = time.monotonic() + timeout
        want = sorted(self.names)
        last: dict[str, Any] = {}
        while True:
            ok = True
            for inc in self.live():
                try:
                    members = (await inc.proc.eval("W.names()['members']", timeout=5))
                except (RemoteFailure, TimeoutError):
                    ok = False
                    continue
                last[inc.name] = members
                others = sorted(n for n in want if n != inc.name)
                if members["visible"] != others or members["dreg"] != want or members["sup"] != want:
                    ok = False
            if ok and len(last) == len(want):
                return last
            if time.monotonic() > deadline:
                raise _NotConverged(last)
            await asyncio.sleep(0.5)

    async def _settle(self, poller: asyncio.Task[None]) -> None:
        """Heal everything, bring every node back, converge, stop the workload."""
        # running faults end by themselves (each heals what it broke; a kill restarts its node)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 60)
        self.net.heal_all()
        for inc in self.current:
            if inc is not None and inc.stopped:
                inc.proc.signal(signal.SIGCONT)
                inc.stopped = False
        for i, inc in enumerate(self.current):
            if inc is None or inc.killed:
                await self.start_node(i)
        for inc in self.current:
            assert inc is not None
            if inc.proc.popen.poll() is not None:
                self.violation(f"{inc.name} (incarnation {inc.number}) exited by itself with status {inc.proc.popen.returncode}")
        self.log("settling")
        await asyncio.gather(*(self.pull(inc) for inc in self.live()))  # the latest directory, everywhere
        try:
            members = await self._converged(self.cfg.converge_timeout)
            self.report.checks["membership"] += len(members) * 3
        except _NotConverged as e:
            self.violation(f"membership did not converge within {self.cfg.converge_timeout}s: {e.last}")
        poller.cancel()
        await asyncio.gather(poller, return_exceptions=True)
        for inc in self.live():
            await inc.proc.eval("W.quiesce()")
        await asyncio.sleep(2.5)  # targets end, in-flight messages land
        for inc in self.live():
            with contextlib.suppress(RemoteFailure, TimeoutError):
                await inc.proc.eval("await W.synced(10)", timeout=15)
        await asyncio.gather(*(self.pull(inc, timeout=10) for inc in self.live()))

    def violation(self, text: str) -> None:
        self.report.violations.append(text)

    # --- the checks --------------------------------------------------------------------------------

    async def _final_checks(self) -> None:
        rep = self.report
        # violations the nodes found as they went, including in incarnations killed since
        for inc in self.history:
            for line in inc.proc.log_lines:
                if line.startswith("CHAOS-VIOLATION "):
                    self.violation(line[len("CHAOS-VIOLATION "):])
        streams = check_streams(self.history)
        rep.checks["loss reported by DOWN (per stream)"] += streams.pop("checks")
        for v in streams.pop("violations"):
            self.violation(v)
        rep.figures.update(streams)
        finals = [inc for inc in self.current if inc is not None]
        totals: Counter[str] = Counter()
        for inc in self.history:
            totals.update((inc.snapshot or {}).get("counters", {}))
        for inc in finals:
            snap = inc.snapshot or {}
            watch = snap.get("watch", {})
            rep.checks["no monitor or link left unfired"] += 2
            rep.checks["workload processes alive"] += 1
            if watch.get("pending") or watch.get("pending_links"):
                self.violation(f"{inc.name}: {watch.get('pending')} monitors and {watch.get('pending_links')} links never fired "
                               f"([target, EXITs, DOWN reason]: {watch.get('unfired')})")
            dead = [name for name, up in snap.get("alive", {}).items() if not up]
            if dead:
                self.violation(f"{inc.name}: workload processes died: {dead}")
        rep.checks["order and gaps (per message, online)"] += totals["received"]
        rep.checks["monitor/link fires once (per signal, online)"] += totals["downs"] + totals["exits"]
        rep.figures.update(
            messages_sent=totals["sent"],
            messages_received=totals["received"],
            nodedowns_seen_by_receivers=totals["nodedowns_seen"],
            monitors_and_links=totals["watched"],
            downs=totals["downs"],
            exits=totals["exits"],
            remote_spawns_failed=totals["spawn_failed"],
            names_claimed=totals["claims"],
            names_held=sum(totals[f"held_{k}"] for k in ("local", "lreg", "global", "dreg", "pg")),
            incarnations=len(self.history),
            proxied_connections=self.net.stats["connections"],
            refused_connections=self.net.stats["refused"],
        )
        # names, membership and children are eventually consistent: retry a while
        deadline = time.monotonic() + 20
        while True:
            problems, checks = await self._check_names()
            if not problems or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        rep.checks.update(checks)
        for p in problems:
            self.violation(p)
        errors = [line for inc in self.history for line in inc.proc.log_lines
                  if " ERROR " in line or line.startswith("Traceback") or "never retrieved" in line]
        if errors:
            rep.warnings.append(f"{len(errors)} error lines in the node logs, e.g. {errors[:3]}")
        rep.figures["error_log_lines"] = len(errors)
        rep.figures["handshake_guard_lockouts"] = sum(
            "too many failed handshakes" in line for inc in self.history for line in inc.proc.log_lines
        )

    async def _check_names(self) -> tuple[list[str], Counter[str]]:
        views: dict[str, dict[str, Any]] = {}
        problems: list[str] = []
        for inc in self.live():
            try:
                views[inc.name] = await inc.proc.eval("W.names()", timeout=10)
            except (RemoteFailure, TimeoutError) as e:
                problems.append(f"{inc.name}: cannot read its names: {e}")
        return check_names(views, self.children, problems)


class _NotConverged(Exception):
    def __init__(self, last: dict[str, Any]) -> None:
        super().__init__("not converged")
        self.last = last


# --- pure checks (unit-tested with made-up data in test_chaos.py) ------------------------------------


def _covered(lo: int, hi: int, epochs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``lo..hi`` no epoch in ``epochs`` covers."""
    out = []
    cur = lo
    for a, b in sorted(epochs):
        if b < cur:
            continue
        if a > cur:
            out.append((cur, min(hi, a - 1)))
        cur = max(cur, b + 1)
        if cur > hi:
            break
    if cur <= hi:
        out.append((cur, hi))
    return [(a, b) for a, b in out if a <= b]


def check_streams(history: list[Any]) -> dict[str, Any]:
    """Every message a receiver never got was sent in an epoch that a ``DOWN`` closed.

    ``history`` holds incarnations (``snapshot``, ``killed``, ``rx``). A
    sender's epochs tile the numbers it sent (a monitor is set before the first
    send after a ``DOWN``), so the rule is: no missing number in the epoch
    still open at the end. Only a sender alive at the end is held to it (a
    killed sender reports to no one); and a sender alive at the end must have
    no open epoch towards a killed receiver — that monitor must have fired.
    Returns figures, ``checks`` and ``violations``.
    """
    by_rx: dict[str, dict[str, list[Any]]] = {}
    rx_killed: dict[str, bool] = {}
    for inc in history:
        if inc.snapshot and inc.rx:
            by_rx[inc.rx] = inc.snapshot.get("rx", {})
            rx_killed[inc.rx] = inc.killed
    violations: list[str] = []
    checks = lost = streams = 0
    for inc in history:
        snap = inc.snapshot
        if not snap or inc.killed:
            continue
        sender = snap.get("traffic_pid")
        for rx, t in snap.get("tx", {}).items():
            seq, open_first = t["seq"], t.get("open")
            if seq == 0:
                continue
            streams += 1
            checks += 1
            if rx_killed.get(rx, True):
                if open_first is not None:
                    violations.append(f"{sender} -> {rx}: the receiver was killed but the monitor from {open_first} on never fired")
                continue
            missing = _covered(1, seq, _received_ranges(by_rx.get(rx, {}).get(sender)))
            lost += sum(b - a + 1 for a, b in missing)
            if open_first is not None:
                unreported = [(max(a, open_first), b) for a, b in missing if b >= open_first]
                if unreported:
                    violations.append(
                        f"{sender} -> {rx}: messages {unreported} lost without a DOWN "
                        f"(sent {seq}, closed epochs {t['epochs']}, open from {open_first})"
                    )
    return {
        "checks": checks,
        "violations": violations,
        "streams_checked": streams,
        "messages_lost": lost,
    }


def _received_ranges(record: list[Any] | None) -> list[tuple[int, int]]:
    if not record:
        return []
    first, last, _, gaps = record
    out = []
    cur = first
    for a, b in gaps:
        if a > cur:
            out.append((cur, a - 1))
        cur = b + 1
    if cur <= last:
        out.append((cur, last))
    return out


def check_names(
    views: dict[str, dict[str, Any]], children: list[str], problems: list[str]
) -> tuple[list[str], Counter[str]]:
    """Every name resolves to one live claiming holder, the same everywhere; children run once.

    ``views`` maps each node to its :func:`chaos.workload.names` answer.
    Returns the problems found (appended to ``problems``) and how many times
    each invariant was checked.
    """
    checks: Counter[str] = Counter()
    holders: dict[str, dict[tuple[str, str], str]] = {}  # node -> (kind, key) -> pid
    live_pids: set[str] = set()
    joined: dict[str, list[str]] = {}  # pg group -> live members that joined it (a group has many)
    for node, v in views.items():
        h: dict[tuple[str, str], str] = {}
        for kind, key, pid in v["holders"]:
            if kind == "pg":
                joined.setdefault(key, []).append(pid)
                continue
            if (kind, key) in h:
                problems.append(f"{node}: two live holders believe they hold {kind} {key}: {h[(kind, key)]}, {pid}")
            h[(kind, key)] = pid
            live_pids.add(pid)
        holders[node] = h
    # local names and the local Registry: exactly the node's own live holders
    for node, v in views.items():
        for kind in ("local", "lreg"):
            mine = {key: pid for (k, key), pid in holders[node].items() if k == kind}
            shown: dict[str, Any] = {}
            for key, pids in v[kind].items():
                checks[f"{kind}: one live claiming owner"] += 1
                if not isinstance(pids, str) and len(pids) != 1:
                    problems.append(f"{node}: {kind} {key} resolves to {pids}")
                shown[key] = pids if isinstance(pids, str) else pids[0]
            for key in set(shown) | set(mine):
                checks[f"{kind}: one live claiming owner"] += 1
                if shown.get(key) != mine.get(key):
                    problems.append(f"{node}: {kind} {key} resolves to {shown.get(key)}, its live claiming holder is {mine.get(key)}")
    # cluster-wide kinds: the same table on every node, pointing at live claiming holders
    for kind in ("global", "dreg"):
        what = f"{kind}: same owner everywhere, live and claiming"
        tables = {node: v[kind] for node, v in views.items()}
        reference_node, reference = next(iter(tables.items()), ("", {}))
        for node, table in tables.items():
            for key in set(table) | set(reference):
                checks[what] += 1
                if table.get(key) != reference.get(key):
                    problems.append(f"{kind} {key}: {node} resolves it to {table.get(key)}, {reference_node} to {reference.get(key)}")
        claimed: dict[str, str] = {}
        for h in holders.values():
            for (k, key), pid in h.items():
                if k == kind:
                    if key in claimed:
                        problems.append(f"{kind} {key}: two live holders believe they hold it: {claimed[key]}, {pid}")
                    claimed[key] = pid
        for key in set(reference) | set(claimed):
            checks[what] += 1
            pids = reference.get(key)
            pid = pids[0] if isinstance(pids, list) and len(pids) == 1 else pids
            if isinstance(pid, list):
                problems.append(f"{kind} {key} resolves to several pids: {pid}")
            elif pid is not None and pid not in live_pids:
                problems.append(f"{kind} {key} resolves to {pid}, which is no live holder (a dead pid?)")
            elif pid != claimed.get(key):
                problems.append(f"{kind} {key} resolves to {pid}, but the live holder believing it holds it is {claimed.get(key)}")
    # process groups: every node lists exactly the live holders that joined, from every node
    for node, v in views.items():
        groups = v.get("pg", {})
        for key in set(groups) | set(joined):
            checks["pg: members are the live joined holders"] += 1
            if sorted(groups.get(key, [])) != sorted(joined.get(key, [])):
                problems.append(f"pg {key}: {node} lists {groups.get(key, [])}, the live joined holders are {sorted(joined.get(key, []))}")
    # supervised children: exactly once, and where which_children says
    running: dict[str, list[str]] = {}
    for v in views.values():
        for key, pid in v["children"].items():
            running.setdefault(key, []).append(pid)
    for cid in children:
        checks["child runs exactly once"] += 1
        copies = running.get(repr(cid), [])
        if len(copies) != 1:
            problems.append(f"child {cid} runs {len(copies)} times: {copies}")
            continue
        for node, v in views.items():
            checks["which_children agrees"] += 1
            where = {k: p for k, p in v["which_children"]}
            if where.get(repr(cid)) != copies[0]:
                problems.append(f"{node}: which_children says {cid} runs as {where.get(repr(cid))}, it runs as {copies[0]}")
    extra = set(running) - {repr(c) for c in children}
    if extra:
        problems.append(f"children nobody started run: {sorted(extra)}")
    return problems, checks


async def run_chaos(config: ChaosConfig) -> Report:
    return await ChaosRun(config).run()
