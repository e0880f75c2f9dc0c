"""Running the workloads on both runtimes, round by round, interleaved.

A :class:`Side` starts nodes of one runtime (pymesh: ``python -m
pymesh.shell._bench._node``; the BEAM: ``elixir bench/beam/node.exs``), each on
loopback with a private port mapper of its own kind, and hands back
:class:`~pymesh.shell._bench._procs.BenchNode` objects to command.

The core workloads (throughput, RTT, GenServer call, Registry, Global, pg,
spawn) run on one 3-node cluster per runtime, both clusters up at once: each
round runs on pymesh and then on the BEAM, so the two figures of a ratio are
measured seconds apart under the same machine load. Distributed-registry
convergence (8 nodes), cluster formation (16 and 32 nodes, fresh nodes every
round) and silent-node detection (fresh nodes, tick 1 s) start clusters of
their own.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ._procs import BenchNode, NodeFailed, Reaper, free_port, stop_nodes
from ._report import Results

__all__ = ["Counts", "Side", "PymeshSide", "BeamSide", "run_workloads", "WORKLOADS", "beam_script"]


@dataclass
class Counts:
    """How much work each workload does; ``--quick`` and ``--scale`` shrink it."""

    rounds: int = 3
    small: int = 200_000
    kib1: int = 100_000
    kib64: int = 20_000
    rtt: int = 20_000
    call: int = 10_000
    keys: int = 200_000
    global_names: int = 2_000
    pg_joins: int = 2_000
    spawn: int = 100_000
    dreg_nodes: int = 8
    dreg_names: int = 200
    dreg_spacing_ms: int = 5
    formation: tuple[int, ...] = (16, 32)
    flow_rate: int = 50_000
    flow_s: float = 3.0

    def scaled(self, factor: float) -> Counts:
        c = Counts(**{k: v for k, v in self.__dict__.items()})
        for name in ("small", "kib1", "kib64", "rtt", "call", "keys", "global_names", "pg_joins", "spawn", "dreg_names"):
            setattr(c, name, max(10, int(getattr(c, name) * factor)))
        return c


def beam_script() -> Path | None:
    """``bench/beam/node.exs`` of this checkout (or of the working directory)."""
    here = Path(__file__).resolve()
    for base in (here.parents[2], Path.cwd()):
        script = base / "bench" / "beam" / "node.exs"
        if script.exists():
            return script
    return None


class Side:
    """Nodes of one runtime, on a port mapper of their own."""

    name = ""
    title = ""

    def __init__(self, reaper: Reaper) -> None:
        self.reaper = reaper
        self.cookie = "bench" + secrets.token_hex(6)
        self.epmd_port = free_port()
        self.tag = secrets.token_hex(2)
        self._count = 0
        self._epmd = None

    def start_epmd(self) -> None:
        raise NotImplementedError

    def node_cmd(self, short: str, tick: float | None) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def start_nodes(self, n: int, tick: float | None = None, timeout: float = 120.0) -> list[BenchNode]:
        """Start ``n`` nodes at once; return them once each said it is ready."""
        nodes = []
        for _ in range(n):
            self._count += 1
            short = f"b{self.name[0]}{self.tag}n{self._count}"
            cmd, env = self.node_cmd(short, tick)
            nodes.append(BenchNode(self.reaper, cmd, env, f"{self.name} node {short}", short))
        try:
            for node in nodes:
                node.wait_ready(timeout)
        except BaseException:
            stop_nodes(nodes)
            raise
        return nodes

    def _wait_port(self, timeout: float = 10.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.epmd_port)) == 0:
                    return
            time.sleep(0.05)
        raise NodeFailed(f"{self.name}: the port mapper on port {self.epmd_port} did not start")


class PymeshSide(Side):
    name = "pymesh"

    def start_epmd(self) -> None:
        self._epmd = self.reaper.popen([sys.executable, "-m", "pymesh", "epmd", "--port", str(self.epmd_port)])
        self._wait_port()

    def node_cmd(self, short: str, tick: float | None) -> tuple[list[str], dict[str, str]]:
        cmd = [sys.executable, "-m", "pymesh.shell._bench._node", "--name", short, "--cookie", self.cookie,
               "--epmd-port", str(self.epmd_port)]
        if tick is not None:
            cmd += ["--tick", str(tick)]
        return cmd, dict(os.environ)


class BeamSide(Side):
    name = "beam"

    def __init__(self, reaper: Reaper, script: Path) -> None:
        super().__init__(reaper)
        self.script = script

    @staticmethod
    def available() -> str | None:
        """Why the BEAM half cannot run, or None when it can."""
        if shutil.which("elixir") is None or shutil.which("epmd") is None:
            return "Erlang/Elixir not installed (apt-get install erlang-base elixir)"
        if beam_script() is None:
            return "bench/beam/node.exs not found (run from a pymesh checkout)"
        return None

    def start_epmd(self) -> None:
        self._epmd = self.reaper.popen(["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"])
        self._wait_port()

    def node_cmd(self, short: str, tick: float | None) -> tuple[list[str], dict[str, str]]:
        erl = "-kernel inet_dist_use_interface {127,0,0,1}"
        if tick is not None:
            # net_ticktime is whole seconds; the BEAM's minimum is 1
            erl += f" -kernel net_ticktime {max(1, round(tick))}"
        cmd = ["elixir", "--sname", short, "--cookie", self.cookie, "--erl", erl, str(self.script)]
        env = dict(os.environ, ERL_EPMD_PORT=str(self.epmd_port))
        return cmd, env


# --- the workloads -------------------------------------------------------------------------------

Log = Callable[[str], None]


@dataclass
class Run:
    counts: Counts
    sides: list[Side]
    results: Results = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)
    log: Log = print
    core: dict[str, list[BenchNode]] = field(default_factory=dict)
    loads: dict[str, str] = field(default_factory=dict)  # workload -> /proc/loadavg as it started

    def add(self, key: str, side: Side, value: float) -> None:
        self.results.setdefault(key, {}).setdefault(side.name, []).append(value)

    def cluster(self, side: Side) -> list[BenchNode]:
        """The core 3-node cluster of ``side``, started on first use."""
        nodes = self.core.get(side.name)
        if nodes is None:
            nodes = self.core[side.name] = side.start_nodes(3)
            nodes[0].ask(f"connect {nodes[1].name} {nodes[2].name}", 60)
        return nodes

    def each_round(self, workload: str, fn: Callable[[Side, int], str]) -> None:
        """Run ``fn(side, round)`` for every round and side, interleaved; log a line per round."""
        for r in range(self.counts.rounds):
            said = []
            for side in self.sides:
                try:
                    said.append(f"{side.name} {fn(side, r)}")
                except NodeFailed as e:
                    self.misses.append(f"{workload}, round {r + 1}, {side.name}: {e}")
                    said.append(f"{side.name} FAILED ({e})")
            self.log(f"  {workload} round {r + 1}: " + "; ".join(said))


def _f(d: dict[str, str], key: str) -> float:
    return float(d[key])


def w_throughput(run: Run) -> None:
    c = run.counts
    for payload, key, n in (("small", "throughput_small", c.small), ("1k", "throughput_1k", c.kib1),
                            ("64k", "throughput_64k", c.kib64)):
        def one(side: Side, r: int, payload: str = payload, key: str = key, n: int = n) -> str:
            a, b, _ = run.cluster(side)
            v = _f(a.ask(f"throughput {b.name} {payload} {n}"), "msgs_per_s")
            run.add(key, side, v)
            return f"{v:,.0f} msgs/s"

        run.each_round(f"throughput {payload} x{n}", one)


def w_rtt(run: Run) -> None:
    def one(side: Side, r: int) -> str:
        a, b, _ = run.cluster(side)
        d = a.ask(f"rtt {b.name} {run.counts.rtt}")
        run.add("rtt_p50", side, _f(d, "p50_us"))
        run.add("rtt_p99", side, _f(d, "p99_us"))
        return f"p50 {d['p50_us']} µs p99 {d['p99_us']} µs"

    run.each_round(f"rtt x{run.counts.rtt}", one)


def w_call(run: Run) -> None:
    def one(side: Side, r: int) -> str:
        a, b, _ = run.cluster(side)
        d = a.ask(f"call {b.name} {run.counts.call}")
        run.add("call_p50", side, _f(d, "p50_us"))
        run.add("call_p99", side, _f(d, "p99_us"))
        return f"p50 {d['p50_us']} µs p99 {d['p99_us']} µs"

    run.each_round(f"call x{run.counts.call}", one)


def w_registry(run: Run) -> None:
    def one(side: Side, r: int) -> str:
        a = run.cluster(side)[0]
        d = a.ask(f"registry {run.counts.keys}")
        run.add("registry_register", side, _f(d, "register_per_s"))
        run.add("registry_lookup", side, _f(d, "lookup_per_s"))
        return f"register {float(d['register_per_s']):,.0f}/s lookup {float(d['lookup_per_s']):,.0f}/s"

    run.each_round(f"registry x{run.counts.keys}", one)


def w_global(run: Run) -> None:
    def one(side: Side, r: int) -> str:
        a = run.cluster(side)[0]
        d = a.ask(f"global {run.counts.global_names} r{r}")
        run.add("global_register", side, _f(d, "register_us"))
        return f"{d['register_us']} µs ({d['nodes']} nodes)"

    run.each_round(f"global x{run.counts.global_names}", one)


def w_pg(run: Run) -> None:
    def one(side: Side, r: int) -> str:
        a, b, _ = run.cluster(side)
        d = a.ask(f"pg {b.name} {run.counts.pg_joins} r{r}")
        run.add("pg_join_p50", side, _f(d, "p50_us"))
        run.add("pg_join_p99", side, _f(d, "p99_us"))
        return f"p50 {d['p50_us']} µs p99 {d['p99_us']} µs"

    run.each_round(f"pg x{run.counts.pg_joins}", one)


def w_spawn(run: Run) -> None:
    def one(side: Side, r: int) -> str:
        # the third node: it holds no state from the other workloads
        node = run.cluster(side)[2]
        d = node.ask(f"spawn {run.counts.spawn}")
        run.add("spawn_rate", side, _f(d, "per_s"))
        run.add("spawn_memory", side, _f(d, "bytes_per_process"))
        return f"{float(d['per_s']):,.0f}/s {float(d['bytes_per_process']):,.0f} B"

    run.each_round(f"spawn x{run.counts.spawn}", one)


def w_dist_registry(run: Run) -> None:
    c = run.counts
    clusters: dict[str, list[BenchNode]] = {}
    try:
        for side in run.sides:
            nodes = clusters[side.name] = side.start_nodes(c.dreg_nodes)
            names = [n.name for n in nodes]
            for node in nodes:
                node.ask("connect " + " ".join(x for x in names if x != node.name), 60)
            for node in nodes:
                node.send(f"dreg_start {c.dreg_nodes}")
            for node in nodes:
                node.readline(60)

        def one(side: Side, r: int) -> str:
            nodes = clusters[side.name]
            d = nodes[0].ask(f"dreg_register {c.dreg_names} {c.dreg_spacing_ms} r{r}", 300)
            t0 = [int(x) for x in d["t0_ns"].split(",")]
            if side.name == "beam":
                # :global: register_name returns once every node holds the name
                lat = [(int(t1) - s) / 1e6 for s, t1 in zip(t0, d["t1_ns"].split(","))]
                missing = 0
            else:
                time.sleep(0.3)
                seen = [[int(x) for x in n.ask(f"dreg_seen {c.dreg_names} r{r}")["seen_ns"].split(",")]
                        for n in nodes[1:]]
                lat, missing = [], 0
                for i, s in enumerate(t0):
                    times = [row[i] for row in seen]
                    if min(times) < 0:
                        missing += 1
                    else:
                        lat.append((max(times) - s) / 1e6)
            if missing:
                run.misses.append(f"dist_registry round {r + 1} {side.name}: {missing} names never seen on every node")
            if not lat:
                raise NodeFailed("no name converged")
            lat.sort()
            p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            run.add("dreg_p50", side, p50)
            run.add("dreg_p99", side, p99)
            return f"p50 {p50:.2f} ms p99 {p99:.2f} ms ({missing} missing)"

        run.each_round(f"dist_registry {c.dreg_nodes} nodes x{c.dreg_names}", one)
    finally:
        for nodes in clusters.values():
            stop_nodes(nodes)


def w_formation(run: Run) -> None:
    for size in run.counts.formation:
        def one(side: Side, r: int, size: int = size) -> str:
            nodes = side.start_nodes(size)
            try:
                seed = nodes[0].name
                time.sleep(0.5)  # let the start-up work of the last nodes settle
                t0 = time.time_ns()
                for node in nodes:
                    node.send(f"form {seed} {size - 1}")
                done = [int(node.readline(120).split("t_ns=")[1].split()[0]) for node in nodes]
            finally:
                stop_nodes(nodes)
            ms = (max(done) - t0) / 1e6
            run.add(f"formation_{size}", side, ms)
            return f"{ms:.0f} ms"

        run.each_round(f"formation {size} nodes", one)


def w_nodedown(run: Run) -> None:
    c = run.counts

    def one(side: Side, r: int) -> str:
        a, b = side.start_nodes(2, tick=1.0)
        try:
            a.ask(f"connect {b.name}", 60)
            a.send(f"nodedown {b.name} {c.flow_rate} {c.flow_s}")
            try:
                a.readline(c.flow_s + 30, prefixes=("stop_now",))
            except NodeFailed as e:
                if "false nodedown" in str(e):
                    run.add("false_nodedowns", side, 1)
                raise
            os.kill(b.os_pid, signal.SIGSTOP)
            t_stop = time.time_ns()
            d = a.readline(60)
            t_down = int(d.split("t_down_ns=")[1].split()[0])
        finally:
            try:
                os.kill(b.os_pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            stop_nodes([a, b])
        ms = (t_down - t_stop) / 1e6
        run.add("nodedown", side, ms)
        run.add("false_nodedowns", side, 0)
        return f"{ms:.0f} ms"

    run.each_round(f"nodedown (tick 1 s, {c.flow_rate:,} msgs/s for {c.flow_s:g} s first)", one)


WORKLOADS: dict[str, Callable[[Run], None]] = {
    "throughput": w_throughput,
    "rtt": w_rtt,
    "call": w_call,
    "registry": w_registry,
    "global": w_global,
    "pg": w_pg,
    "spawn": w_spawn,
    "dist_registry": w_dist_registry,
    "formation": w_formation,
    "nodedown": w_nodedown,
}


def run_workloads(run: Run, names: list[str]) -> None:
    """Run the named workloads in :data:`WORKLOADS` order, logging as they go."""
    try:
        for name in WORKLOADS:
            if name not in names:
                continue
            t0 = time.monotonic()
            run.loads[name] = _load()
            run.log(f"{name} ({run.loads[name]})")
            try:
                WORKLOADS[name](run)
            except NodeFailed as e:
                run.misses.append(f"{name}: {e}")
                run.log(f"  {name} FAILED: {e}")
            run.log(f"  {name} took {time.monotonic() - t0:.1f}s")
    finally:
        for nodes in run.core.values():
            stop_nodes(nodes)
        run.core.clear()


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return "load " + " ".join(f.read().split()[:3])
    except OSError:
        return "load ?"


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
