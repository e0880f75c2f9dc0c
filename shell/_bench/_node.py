"""One pymesh bench node: an OS process that runs workloads when told to.

    python -m pymesh.shell._bench._node --name NAME --cookie C --epmd-port P [--tick 1]

The driver (:mod:`pymesh.shell._bench._driver`) starts these and speaks a
line protocol over stdin/stdout: it writes one command a line, the node
answers one line ``ok key=value ...`` (or ``error ...``). The BEAM twin of this
file is ``bench/beam/node.exs``; the two take the same commands and do the
same work, so that each figure is measured the same way on both runtimes.

Every node serves the peer side of the workloads from the start: ``sink``
(counts ``("msg", i, payload)``, answers ``("ping", from, i)``),
``bench_server`` (a GenServer answering ``"ping"`` with ``"pong"``) and
``pgw`` (watches a process group for the pg workload). Timestamps that cross
OS processes are wall-clock nanoseconds (``time.time_ns()``, the BEAM's
``:os.system_time(:nanosecond)``): every node runs on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pymesh
from pymesh import PG, DistributedRegistry, GenServer, Global, Node, Registry, call, receive, register, self, send, spawn

PAYLOADS: dict[str, Any] = {
    "small": {"key": "value", "n": 42},
    "1k": bytes(1024),
    "64k": bytes(65536),
}

DREG = "bench_dreg"


# --- the peer side, on every node ----------------------------------------------------------


async def _sink() -> None:
    count = n = 0
    frm = None
    while True:
        m = await receive()
        tag = m[0]
        if tag == "msg":
            count += 1
            if count == n:
                send(frm, ("done", count))
        elif tag == "ping":
            send(m[1], ("pong", m[2]))
        elif tag == "start":
            _, frm, n = m
            count = 0
        elif tag == "stop":
            return


class _Server(GenServer):
    async def handle_call(self, request: Any, frm: Any) -> Any:
        if request == "ping":
            return "pong"
        return None


async def _pg_watch() -> None:
    while True:
        _, frm, group = await receive(("watch", pymesh.ANY, pymesh.ANY))
        ref, _ = PG.monitor(group)
        send(frm, ("watching",))
        while True:
            m = await receive()
            if m[0] == ref and m[1] == "join":
                send(frm, ("seen", time.time_ns()))
            elif m[0] == "unwatch":
                PG.demonitor(ref)
                send(m[1], ("unwatched",))
                break


_seen: dict[Any, int] = {}


async def _dreg_listener() -> None:
    while True:
        m = await receive()
        if m[0] == "register":
            _seen.setdefault(m[2], time.time_ns())


async def _idle() -> None:
    await receive()


# --- the workloads, run on the measuring node ------------------------------------------------


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * q))]


async def _rpc_whereis(peer: str, name: str) -> Any:
    return await pymesh.rpc_call(peer, "pymesh:whereis", name)


async def cmd_connect(*peers: str) -> str:
    for peer in peers:
        if not await Node.connect(peer, timeout=20):
            raise RuntimeError(f"cannot connect to {peer}")
    if not await Global.sync(20):
        raise RuntimeError("global names did not sync")
    return f"nodes={len(Node.list())}"


async def cmd_throughput(peer: str, payload_name: str, n: str) -> str:
    count = int(n)
    payload = PAYLOADS[payload_name]
    target = await _rpc_whereis(peer, "sink")
    me = self()
    send(target, ("start", me, count))
    t0 = time.perf_counter()
    for i in range(count):
        send(target, ("msg", i, payload))
    t1 = time.perf_counter()
    await receive(("done", int), timeout=300)
    t2 = time.perf_counter()
    return f"msgs_per_s={count / (t2 - t0):.1f} send_loop_s={t1 - t0:.3f} total_s={t2 - t0:.3f}"


async def cmd_rtt(peer: str, m: str) -> str:
    count = int(m)
    target = await _rpc_whereis(peer, "sink")
    me = self()
    perf = time.perf_counter
    samples = []
    for i in range(count):
        t0 = perf()
        send(target, ("ping", me, i))
        await receive()
        samples.append(perf() - t0)
    return f"p50_us={_pct(samples, 0.5) * 1e6:.2f} p99_us={_pct(samples, 0.99) * 1e6:.2f}"


async def cmd_call(peer: str, m: str) -> str:
    count = int(m)
    dest = ("bench_server", peer)
    perf = time.perf_counter
    samples = []
    for _ in range(count):
        t0 = perf()
        await call(dest, "ping")
        samples.append(perf() - t0)
    return f"p50_us={_pct(samples, 0.5) * 1e6:.2f} p99_us={_pct(samples, 0.99) * 1e6:.2f}"


_rounds = 0


async def cmd_registry(keys: str) -> str:
    global _rounds
    k = int(keys)
    _rounds += 1
    name = f"bench.registry.{_rounds}"
    await Registry.start(name, keys="unique", partitions=1)
    reg, look = Registry.register, Registry.lookup
    perf = time.perf_counter
    t0 = perf()
    for i in range(k):
        reg(name, i, None)
    t1 = perf()
    for i in range(k):
        look(name, i)
    t2 = perf()
    if Registry.count(name) != k or look(name, k - 1) != [(self(), None)]:
        raise RuntimeError("the registry lost keys")
    Registry.stop(name)
    await asyncio.sleep(0)
    return f"register_per_s={k / (t1 - t0):.1f} lookup_per_s={k / (t2 - t1):.1f}"


async def cmd_global(names: str, rnd: str) -> str:
    g = int(names)
    pids = []
    perf = time.perf_counter
    t0 = perf()
    for i in range(g):
        pid = spawn(_idle)
        if not await Global.register_name(("n", rnd, i), pid):
            raise RuntimeError(f"could not register ('n', {rnd}, {i})")
        pids.append(pid)
    elapsed = perf() - t0
    for pid in pids:
        send(pid, "stop")
    await asyncio.sleep(0.2)  # let the names go on every node before the next round
    return f"register_us={elapsed / g * 1e6:.2f} nodes={len(Node.list()) + 1}"


async def cmd_pg(peer: str, joins: str, rnd: str) -> str:
    j = int(joins)
    group = ("bench_pg", rnd)
    me = self()
    send(("pgw", peer), ("watch", me, group))
    await receive(("watching",), timeout=10)
    pids = [spawn(_idle) for _ in range(j)]
    samples = []
    ns = time.time_ns
    for pid in pids:
        t0 = ns()
        PG.join(group, pid)
        _, t1 = await receive(("seen", int), timeout=10)
        samples.append((t1 - t0) / 1000)
    send(("pgw", peer), ("unwatch", me))
    await receive(("unwatched",), timeout=10)
    for pid in pids:
        send(pid, "stop")
    return f"p50_us={_pct(samples, 0.5):.2f} p99_us={_pct(samples, 0.99):.2f}"


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def cmd_spawn(k: str) -> str:
    count = int(k)
    gc.collect()
    before = _rss()
    perf = time.perf_counter
    t0 = perf()
    pids = [spawn(_idle) for _ in range(count)]
    rate = count / (perf() - t0)
    await asyncio.sleep(0)  # every process starts and parks in receive
    await asyncio.sleep(0)
    gc.collect()
    per_proc = (_rss() - before) / count
    for pid in pids:
        send(pid, "bye")
    await asyncio.sleep(0.05)
    return f"per_s={rate:.1f} bytes_per_process={per_proc:.1f}"


async def cmd_form(seed: str, others: str) -> str:
    """Connect to ``seed`` (unless this is it); answer when ``others`` nodes are connected."""
    want = int(others)
    Node.monitor_nodes(True)
    if Node.self() != seed and not await Node.connect(seed, timeout=60):
        raise RuntimeError(f"cannot connect to {seed}")
    while len(Node.list()) < want:
        await receive(("nodeup", str), timeout=60)
    t = time.time_ns()
    Node.monitor_nodes(False)
    return f"t_ns={t} nodes={len(Node.list())}"


async def cmd_dreg_start(members: str) -> str:
    register("bench_dreg_listener", spawn(_dreg_listener))
    await DistributedRegistry.start(DREG, listeners=["bench_dreg_listener"])
    want = int(members)
    deadline = time.monotonic() + 30
    while len(DistributedRegistry.members(DREG)) < want:
        if time.monotonic() > deadline:
            raise RuntimeError("the registries did not meet")
        await asyncio.sleep(0.01)
    return f"members={len(DistributedRegistry.members(DREG))}"


async def _holder(key: Any, ready: asyncio.Future[int]) -> None:
    t0 = time.time_ns()
    DistributedRegistry.register(DREG, key, None)
    ready.set_result(t0)
    await receive()


async def cmd_dreg_register(names: str, spacing_ms: str, rnd: str) -> str:
    """Register ``names`` keys, one every ``spacing_ms``, each from its own process."""
    starts = []
    loop = asyncio.get_running_loop()
    for i in range(int(names)):
        ready: asyncio.Future[int] = loop.create_future()
        spawn(_holder, ("k", rnd, i), ready)
        starts.append(str(await ready))
        await asyncio.sleep(float(spacing_ms) / 1000)
    return "t0_ns=" + ",".join(starts)


async def cmd_dreg_seen(names: str, rnd: str) -> str:
    return "seen_ns=" + ",".join(str(_seen.get(("k", rnd, i), -1)) for i in range(int(names)))


async def _flow(target: Any, rate: int, stop: asyncio.Event) -> None:
    """Send ``rate`` small messages a second to ``target`` until ``stop`` is set."""
    payload = PAYLOADS["small"]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sent = 0
    while not stop.is_set():
        due = int((loop.time() - t0) * rate)
        while sent < due:
            send(target, ("msg", sent, payload))
            sent += 1
        await asyncio.sleep(0.001)


async def cmd_nodedown(peer: str, rate: str, flow_s: str) -> str:
    """Flow ``rate`` msgs/s to ``peer`` for ``flow_s`` s (no nodedown allowed),
    print ``stop_now``, and answer with the moment the peer's nodedown arrives."""
    Node.monitor_nodes(True)
    target = await _rpc_whereis(peer, "sink")
    stop = asyncio.Event()
    flow = asyncio.get_running_loop().create_task(_flow(target, int(rate), stop))
    false_downs = 0
    try:
        deadline = time.monotonic() + float(flow_s)
        while (left := deadline - time.monotonic()) > 0:
            try:
                m = await receive(("nodedown", str), timeout=left)
            except pymesh.ReceiveTimeout:
                break
            if m[1] == peer:
                false_downs += 1
                raise RuntimeError(f"false nodedown of {peer} while the flow ran")
        print("stop_now", flush=True)
        while True:
            m = await receive(("nodedown", str), timeout=30)
            if m[1] == peer:
                t_down = time.time_ns()
                break
    finally:
        stop.set()
        await flow
        Node.monitor_nodes(False)
    return f"t_down_ns={t_down} false_downs={false_downs}"


COMMANDS: dict[str, Callable[..., Awaitable[str]]] = {
    "connect": cmd_connect,
    "throughput": cmd_throughput,
    "rtt": cmd_rtt,
    "call": cmd_call,
    "registry": cmd_registry,
    "global": cmd_global,
    "pg": cmd_pg,
    "spawn": cmd_spawn,
    "form": cmd_form,
    "dreg_start": cmd_dreg_start,
    "dreg_register": cmd_dreg_register,
    "dreg_seen": cmd_dreg_seen,
    "nodedown": cmd_nodedown,
}


# --- the node -----------------------------------------------------------------------------------


async def _main(args: argparse.Namespace) -> None:
    name = await pymesh.start(
        args.name, cookie=args.cookie, epmd_port=args.epmd_port, listen_host="127.0.0.1", tick_time=args.tick
    )
    register("sink", spawn(_sink))
    register("pgw", spawn(_pg_watch))
    await _Server.start(name="bench_server")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(f"ready {name} {os.getpid()}", flush=True)
    while line := await reader.readline():
        words = line.decode().split()
        if not words:
            continue
        if words[0] == "quit":
            break
        try:
            answer = "ok " + await COMMANDS[words[0]](*words[1:])
        except Exception as e:  # the driver reports it; the node goes on
            answer = f"error {type(e).__name__}: {e}".replace("\n", " ")
        print(answer, flush=True)
    await pymesh.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True)
    p.add_argument("--cookie", required=True)
    p.add_argument("--epmd-port", type=int, required=True)
    p.add_argument("--tick", type=float, default=15.0, help="tick_time in seconds")
    args = p.parse_args(argv)
    pymesh.run(_main(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
