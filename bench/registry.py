"""Registry and global-name figures, the workloads of ``shared/beam-bench/bench.exs``.

    python bench/registry.py [--rounds 3] [--keys 200000] [--names 2000]

* ``registry_register_per_s`` — one process registers ``--keys`` unique integer
  keys (value None) in a unique registry with one partition;
* ``registry_lookup_per_s`` — then looks each of them up;
* ``global_register_us`` — mean time of ``spawn`` + ``Global.register_name``
  of a fresh name, over ``--names`` names, on a cluster of three nodes in three
  OS processes (this one and two peers started here, on a private port mapper).

Each figure is measured ``--rounds`` times; the table shows the median and
min–max. :func:`registry_figures` and :func:`global_figures` return the raw
samples, for ``pymesh bench`` to embed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import pymesh
from pymesh import Node, receive, spawn
from pymesh.services import Global, Registry

Figures = dict[str, list[float]]


# --- the workloads -----------------------------------------------------------------------------


async def registry_figures(rounds: int = 3, keys: int = 200_000) -> Figures:
    """``registry_register_per_s`` and ``registry_lookup_per_s``, one sample per round."""
    out: Figures = {"registry_register_per_s": [], "registry_lookup_per_s": []}
    for r in range(rounds):
        name = f"bench.registry.{os.getpid()}.{r}"
        await Registry.start(name, keys="unique", partitions=1)
        register, lookup = Registry.register, Registry.lookup
        t0 = time.perf_counter()
        for i in range(keys):
            register(name, i, None)
        t1 = time.perf_counter()
        for i in range(keys):
            lookup(name, i)
        t2 = time.perf_counter()
        assert Registry.count(name) == keys and lookup(name, keys - 1) == [(pymesh.self(), None)]
        Registry.stop(name)
        out["registry_register_per_s"].append(keys / (t1 - t0))
        out["registry_lookup_per_s"].append(keys / (t2 - t1))
    return out


async def _idle() -> None:
    await receive("stop")


async def global_figures(rounds: int = 3, names: int = 2000) -> Figures:
    """``global_register_us`` on this (started) node and its connected peers."""
    out: Figures = {"global_register_us": []}
    assert await Global.sync(), "the peers did not sync global names"
    for r in range(rounds):
        pids = []
        t0 = time.perf_counter()
        for i in range(names):
            pid = spawn(_idle)
            if not await Global.register_name(("n", r, i), pid):
                raise RuntimeError(f"could not register ('n', {r}, {i})")
            pids.append(pid)
        out["global_register_us"].append((time.perf_counter() - t0) / names * 1e6)
        for pid in pids:
            pymesh.send(pid, "stop")
        await asyncio.sleep(0.2)  # let the unregistrations reach the peers
    return out


# --- the peers and the port mapper -----------------------------------------------------------------


async def _peer(name: str, cookie: str, epmd_port: int) -> None:
    await pymesh.start(name, cookie=cookie, epmd_port=epmd_port, listen_host="127.0.0.1")
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()  # until the measuring process closes our stdin (or goes away)
    await pymesh.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


async def _cluster_main(args: argparse.Namespace, cookie: str, peers: list[str]) -> Figures:
    await pymesh.start(f"benchg{os.getpid()}", cookie=cookie, epmd_port=args.epmd_port, listen_host="127.0.0.1")
    try:
        for peer in peers:
            if not await Node.connect(peer):
                raise SystemExit(f"registry bench: cannot connect to {peer}")
        figures = await registry_figures(args.rounds, args.keys)
        figures.update(await global_figures(args.rounds, args.names))
        return figures
    finally:
        await pymesh.stop()


def _row(name: str, samples: list[float], target: str, fmt: Callable[[float], str]) -> str:
    lo, hi = min(samples), max(samples)
    return f"| {name} | {fmt(statistics.median(samples))} | {fmt(lo)}–{fmt(hi)} | {target} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--names", type=int, default=2000)
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--cookie", help=argparse.SUPPRESS)
    parser.add_argument("--epmd-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        pymesh.run(_peer(args.peer, args.cookie, args.epmd_port))
        return 0

    cookie = "bench" + secrets.token_hex(6)
    args.epmd_port = _free_port()
    host = socket.gethostname().split(".")[0]
    epmd = subprocess.Popen(
        [sys.executable, "-m", "pymesh", "epmd", "--port", str(args.epmd_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        time.sleep(0.5)
        peers = [f"benchp{i}{os.getpid()}" for i in range(2)]
        for peer in peers:
            procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--peer", peer, "--cookie", cookie, "--epmd-port", str(args.epmd_port)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
            )
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise SystemExit("registry bench: a peer node did not start")
        figures = pymesh.run(_cluster_main(args, cookie, [f"{p}@{host}" for p in peers]))
    finally:
        for proc in procs:
            _kill(proc)
        _kill(epmd)

    print(f"registry bench ({pymesh.loop_name()} loop, {args.rounds} rounds, {args.keys} keys, "
          f"{args.names} global names on 3 nodes)")
    print("| figure | median | min–max | target |")
    print("|---|---:|---:|---:|")
    print(_row("local register (keys/s)", figures["registry_register_per_s"], "≥ 400,000", lambda v: f"{v:,.0f}"))
    print(_row("local lookup (lookups/s)", figures["registry_lookup_per_s"], "≥ 1,000,000", lambda v: f"{v:,.0f}"))
    print(_row("global register, 3 nodes (µs)", figures["global_register_us"], "≤ 1,000", lambda v: f"{v:,.1f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
