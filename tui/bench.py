"""The pane's benchmark: key latency and the watched node's throughput.

    python -m pymesh.tui.bench [--rounds 3] [--rate 20000] [--seconds 3] [--keys 40]

Real OS processes on loopback, a private port mapper:

* ``sink`` — the watched node: a ``pymesh run`` node with a counting process
  (``remote`` runs), or a node that runs ``observer()`` for itself on a
  pseudo-terminal (``local`` runs, the pane in the node's own event loop);
* ``load`` — a node that sends ``("load", i, {...})`` to the sink;
* the pane — ``pymesh tui sink`` on a pseudo-terminal (``remote``), driven
  like a person: a key is written to the terminal and the time until the
  redrawn pane shows the new tab is measured.

Figures, each the median over ``--rounds`` (min–max beside it):

* ``throughput_*`` — messages a second the sink receives under a flood (the
  load node sends as fast as it can), with nobody watching, with the pane
  attached from another process, and with the pane inside the sink node;
* ``sink_cpu_*`` — CPU time the sink node's OS process spends per message
  in that flood (steadier than throughput on a shared machine);
* ``key_ms_p50``/``key_ms_max`` — key press to redrawn pane while the sink
  receives ``--rate`` messages a second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

import pymesh
from pymesh import Node, receive, self, send

from ._devcluster import DevCluster, short_host

#: key -> text that appears once that tab is drawn
KEYS = [("2", b"filter names"), ("3", b"filter traffic"), ("4", b"filter processes"), ("1", b"msgs out")]


# --- the sink node that runs its own pane (the "local" runs) -------------------------------------


async def _pane_node(name: str) -> None:
    from . import observer

    await pymesh.start(name, epmd_port=int(os.environ["PYMESH_EPMD_PORT"]))
    pymesh.spawn(_sink_proc)
    await observer()
    await pymesh.stop()


async def _sink_proc() -> None:
    from ._demo import sink

    await sink("sink")


# --- the measuring side ----------------------------------------------------------------------------


class Pty:
    """A child on a pseudo-terminal, read in the background."""

    def __init__(self, cmd: list[str], env: dict[str, str], size: tuple[int, int] = (120, 36)) -> None:
        import fcntl
        import struct
        import termios

        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave,
                                     env={**env, "TERM": "xterm-256color"}, start_new_session=True)
        os.close(slave)

    def read_until(self, marker: bytes, timeout: float) -> float | None:
        """Seconds until ``marker`` appears in the output, or None."""
        t0 = time.perf_counter()
        buf = b""
        while time.perf_counter() - t0 < timeout:
            r, _, _ = select.select([self.master], [], [], 0.01)
            if r:
                try:
                    buf += os.read(self.master, 1 << 16)
                except OSError:
                    return None
                if marker in buf:
                    return time.perf_counter() - t0
                buf = buf[-200:]
        return None

    def drain(self) -> None:
        while select.select([self.master], [], [], 0)[0]:
            try:
                os.read(self.master, 1 << 16)
            except OSError:
                return

    def press(self, key: bytes, marker: bytes, timeout: float = 5.0) -> float | None:
        self.drain()
        os.write(self.master, key)
        return self.read_until(marker, timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.write(self.master, b"q")
            deadline = time.monotonic() + 5
            while self.proc.poll() is None and time.monotonic() < deadline:
                self.drain()  # a full terminal would block the pane's last writes
                time.sleep(0.02)
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        os.close(self.master)


async def _count(sink: tuple[str, str]) -> int:
    send(sink, ("count", self()))
    msg = await receive(("count", int), timeout=30)
    return int(msg[1])


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _flood(load: str, sink: tuple[str, str], rate: float, seconds: float, sink_pid: int) -> tuple[float, float]:
    """Flood the sink from the load node: ``(messages a second it received,
    CPU microseconds the sink node spent per message)``."""
    send(sink, ("reset",))
    await _count(sink)
    cpu0 = _cpu(sink_pid)
    t0 = time.perf_counter()
    await Node.spawn(load, "pymesh.tui._demo:flood", sink, rate, seconds, self())
    sent = (await receive(("flooded", int), timeout=seconds + 60))[1]
    while (n := await _count(sink)) < sent:
        await asyncio.sleep(0.01)
    return n / (time.perf_counter() - t0), (_cpu(sink_pid) - cpu0) / n * 1e6


async def _keys(pty: Pty, load: str, sink: tuple[str, str], rate: float, n: int) -> list[float]:
    """Key latencies (ms) while the sink receives ``rate`` msgs/s."""
    await Node.spawn(load, "pymesh.tui._demo:flood", sink, rate, 3600.0, None)
    loop = asyncio.get_running_loop()
    await asyncio.sleep(1.0)
    out = []
    for i in range(n):
        key, marker = KEYS[i % len(KEYS)]
        dt = await loop.run_in_executor(None, pty.press, key.encode(), marker)
        if dt is not None:
            out.append(dt * 1000)
        await asyncio.sleep(0.15)
    return out


async def _measure(cluster: DevCluster, args: argparse.Namespace, mode: str) -> dict[str, float | list[float]]:
    host = short_host()
    sink_node = f"sink@{host}"
    load_node = f"load@{host}"
    sink = ("sink", sink_node)
    await pymesh.start(f"tbench{os.getpid()}@{host}", cookie=cluster.cookie, hidden=True,
                       epmd_port=cluster.epmd_port, connect_all=False)
    result: dict[str, float | list[float]] = {}
    pty = None
    try:
        for node in (sink_node, load_node):
            if not await Node.connect(node, timeout=10):
                raise SystemExit(f"cannot reach {node}")
        if mode != "local":
            await Node.spawn(sink_node, "pymesh.tui._demo:sink", "sink")
        await asyncio.sleep(0.3)
        sink_pid = cluster_pane.proc.pid if mode == "local" else cluster.procs["sink"].pid
        if mode == "none":
            result["throughput"], result["cpu"] = await _flood(load_node, sink, 0, args.seconds, sink_pid)
            return result
        if mode == "remote":
            pty = Pty([sys.executable, "-m", "pymesh", "tui", sink_node], cluster.env)
        else:
            pty = cluster_pane  # started with the node
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(None, pty.read_until, b" processes ", 30) is None:
            raise SystemExit(f"the pane did not come up ({mode} run)")
        await asyncio.sleep(1.0)
        result["throughput"], result["cpu"] = await _flood(load_node, sink, 0, args.seconds, sink_pid)
        result["keys"] = await _keys(pty, load_node, sink, args.rate, args.keys)
        return result
    finally:
        if pty is not None and mode == "remote":
            pty.close()
        await pymesh.stop()


cluster_pane: Any = None


async def _epmd_names(port: int) -> list[tuple[str, int]]:
    from pymesh.epmd import names

    try:
        return list(await names("127.0.0.1", port))
    except Exception:
        return []


def _round(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    global cluster_pane
    with DevCluster() as cluster:
        if mode == "local":
            cluster_pane = Pty([sys.executable, "-m", "pymesh.tui.bench", "--pane-node", "sink"], cluster.env)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if any(n == "sink" for n, _ in asyncio.run(_epmd_names(cluster.epmd_port))):
                    break
                time.sleep(0.1)
        else:
            cluster.start("sink")
        cluster.start("load")
        try:
            return pymesh.run(_measure(cluster, args, mode))
        finally:
            if mode == "local" and cluster_pane is not None:
                cluster_pane.close()
                cluster_pane = None


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):,.1f} | {min(values):,.1f}–{max(values):,.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pymesh.tui.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=20_000, help="msgs/s to the sink while keys are pressed")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each flood")
    parser.add_argument("--keys", type=int, default=40, help="key presses per round")
    parser.add_argument("--modes", default="none,remote,local", help="which runs (default: none,remote,local)")
    parser.add_argument("--pane-node", help=argparse.SUPPRESS)  # internal: a sink node running its own pane
    args = parser.parse_args(argv)
    if args.pane_node:
        pymesh.run(_pane_node(args.pane_node))
        return 0
    modes = args.modes.split(",")
    table: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for mode in modes:
            r = _round(args, mode)
            table.setdefault(f"throughput_{mode} (msgs/s)", []).append(float(r["throughput"]))
            table.setdefault(f"sink_cpu_{mode} (µs/msg)", []).append(float(r["cpu"]))
            keys = r.get("keys")
            if isinstance(keys, list) and keys:
                table.setdefault(f"key_ms_p50_{mode}", []).append(statistics.median(keys))
                table.setdefault(f"key_ms_max_{mode}", []).append(max(keys))
                table.setdefault(f"keys_answered_{mode}", []).append(len(keys))
    print(f"pymesh tui bench ({pymesh.loop_name()}, {args.rounds} rounds, flood {args.seconds}s, "
          f"keys at {args.rate:,.0f} msgs/s)")
    print("| figure | median | min–max |\n|---|---:|---:|")
    for key, values in table.items():
        print(f"| {key} | {_fmt(values)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
