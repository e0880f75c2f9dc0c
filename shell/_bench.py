"""``pymesh bench``: the core runtime's figures, measured between real OS processes.

Workloads (each run ``--rounds`` times; the table shows the median and min–max):

* ``inter_node_msgs_per_s`` — one-way ``send`` of ``("msg", i, {"key": "value",
  "n": 42})`` to a registered process on another node (another OS process),
  timed until that process has received all N and says so;
* ``rtt_p50_us`` / ``rtt_p99_us`` — ping-pong round trips to that process;
* ``spawn_per_s`` — local ``spawn`` of processes that wait in ``receive``;
* ``bytes_per_idle_process`` — resident memory growth per such process.

The same workloads on the BEAM (``--beam``) come from ``shared/beam-bench``
when Erlang/Elixir are installed, so ratios are measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pymesh
from pymesh import Node, receive, register, self, send, spawn
from pymesh.trace import watch_traffic

__all__ = ["configure_bench", "run_bench"]

PAYLOAD = {"key": "value", "n": 42}


# --- the peer node ------------------------------------------------------------------------


async def _sink() -> None:
    register("sink")
    count = 0
    n = 0
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


async def _peer_main(name: str, cookie: str, epmd_port: int | None, trace: bool = False) -> None:
    await pymesh.start(name, cookie=cookie, epmd_port=epmd_port)
    if trace:
        watch_traffic()
    pid = spawn(_sink)
    ref = pymesh.monitor(pid)
    print("ready", flush=True)
    await receive(("DOWN", ref, pymesh.ANY, pymesh.ANY, pymesh.ANY))
    await pymesh.stop()


# --- the measuring node -------------------------------------------------------------------


async def _throughput(target: tuple[str, str], n: int) -> float:
    send(target, ("start", self(), n))
    t0 = time.perf_counter()
    for i in range(n):
        send(target, ("msg", i, PAYLOAD))
    await receive(("done", int), timeout=120)
    return n / (time.perf_counter() - t0)


async def _rtt(target: tuple[str, str], m: int) -> tuple[float, float]:
    samples = []
    me = self()
    perf = time.perf_counter
    for i in range(m):
        t0 = perf()
        send(target, ("ping", me, i))
        await receive()
        samples.append(perf() - t0)
    samples.sort()
    return samples[len(samples) // 2] * 1e6, samples[int(len(samples) * 0.99)] * 1e6


async def _idle() -> None:
    await receive()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _spawn_rate(k: int) -> tuple[float, float]:
    gc.collect()
    before = _rss()
    t0 = time.perf_counter()
    pids = [spawn(_idle) for _ in range(k)]
    rate = k / (time.perf_counter() - t0)
    await asyncio.sleep(0)  # let every process start and park in receive
    await asyncio.sleep(0)
    gc.collect()
    per_proc = (_rss() - before) / k
    for pid in pids:
        send(pid, "bye")
    await asyncio.sleep(0.05)
    return rate, per_proc


async def _measure(args: argparse.Namespace, peer: str) -> dict[str, list[float]]:
    host = socket.gethostname().split(".")[0]
    await pymesh.start(f"bencha{os.getpid()}@{host}", cookie=args.cookie, epmd_port=args.epmd_port)
    if args.trace:
        watch_traffic()
    if not await Node.connect(peer):
        raise SystemExit(f"pymesh bench: cannot connect to the peer node {peer}")
    target = ("sink", peer)
    results: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        results.setdefault("inter_node_msgs_per_s", []).append(await _throughput(target, args.n))
        p50, p99 = await _rtt(target, args.m)
        results.setdefault("rtt_p50_us", []).append(p50)
        results.setdefault("rtt_p99_us", []).append(p99)
        rate, mem = await _spawn_rate(args.k)
        results.setdefault("spawn_per_s", []).append(rate)
        results.setdefault("bytes_per_idle_process", []).append(mem)
    send(target, ("stop",))
    await pymesh.stop()
    return results


def _beam(n: int) -> dict[str, float]:
    script = Path(__file__).resolve().parents[1] / ".." / "shared" / "beam-bench" / "run.sh"
    candidates = [script, Path.cwd().parent / "shared" / "beam-bench" / "run.sh"]
    found = next((p for p in candidates if p.exists()), None)
    if found is None:
        print("pymesh bench: shared/beam-bench/run.sh not found; skipping the BEAM", file=sys.stderr)
        return {}
    proc = subprocess.run(["bash", str(found)], capture_output=True, text=True, timeout=300, env={**os.environ, "N": str(n)})
    out: dict[str, float] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "beam":
            out[parts[1]] = float(parts[2])
    if not out:
        print(f"pymesh bench: the BEAM run printed nothing usable: {proc.stderr.strip()[:300]}", file=sys.stderr)
    return out


TARGETS = {
    "inter_node_msgs_per_s": (">=", 150_000),
    "rtt_p50_us": ("<=", 100),
    "spawn_per_s": (">=", 100_000),
    "bytes_per_idle_process": ("<=", 3072),
}


def _table(results: dict[str, list[float]], beam: dict[str, float]) -> str:
    lines = [
        "| figure | median | min–max | target | BEAM (same run) |",
        "|---|---:|---:|---:|---:|",
    ]
    beam_keys = {"rtt_p50_us": "rtt_us"}
    for key, values in results.items():
        med = statistics.median(values)
        target = TARGETS.get(key)
        tgt = f"{target[0]} {target[1]:,}" if target else ""
        b = beam.get(beam_keys.get(key, key))
        lines.append(
            f"| {key} | {med:,.1f} | {min(values):,.1f}–{max(values):,.1f} | {tgt} | {'' if b is None else f'{b:,.1f}'} |"
        )
    return "\n".join(lines)


def configure_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=3, help="rounds per workload (median reported; default 3)")
    parser.add_argument("-n", type=int, default=200_000, help="messages for the throughput run (default 200000)")
    parser.add_argument("-m", type=int, default=20_000, help="ping-pongs for the RTT run (default 20000)")
    parser.add_argument("-k", type=int, default=100_000, help="processes for the spawn run (default 100000)")
    parser.add_argument("--cookie", default=f"bench{os.getpid()}")
    parser.add_argument("--epmd-port", type=int, default=None)
    parser.add_argument("--beam", action="store_true", help="also run shared/beam-bench (needs erlang-base and elixir)")
    parser.add_argument("--trace", action="store_true", help="with a traffic watch open on both nodes (its cost)")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    parser.add_argument("--peer", help=argparse.SUPPRESS)  # internal: run as the sink node


def run_bench(args: argparse.Namespace) -> int:
    if args.peer:
        pymesh.run(_peer_main(args.peer, args.cookie, args.epmd_port, args.trace))
        return 0
    host = socket.gethostname().split(".")[0]
    peer = f"benchb{os.getpid()}@{host}"
    cmd = [sys.executable, "-m", "pymesh", "bench", "--peer", peer, "--cookie", args.cookie]
    if args.trace:
        cmd.append("--trace")
    if args.epmd_port:
        cmd += ["--epmd-port", str(args.epmd_port)]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            print("pymesh bench: the peer node did not start", file=sys.stderr)
            return 1
        results = pymesh.run(_measure(args, peer))
    finally:
        if child.poll() is None:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGKILL)
                child.wait()
    beam = _beam(args.n) if args.beam else {}
    print(f"pymesh bench ({pymesh.loop_name()} loop, {args.rounds} rounds, "
          f"n={args.n}, m={args.m}, k={args.k})")
    print(_table(results, beam))
    if args.json:
        print(json.dumps({"pymesh": results, "beam": beam}))
    return 0
