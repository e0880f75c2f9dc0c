"""Cluster discovery figures: how fast ``gossip`` meshes, how fast ``static`` reconnects.

    python bench/discovery.py [--rounds 3] [--nodes 16] [--heartbeats 1,5] [--polling 1,5] [--restarts 3]

* **gossip full mesh** — ``--nodes`` nodes (``python -m pymesh run --topology``,
  separate OS processes, all launched at once) on the ``gossip`` strategy, sealed
  with a fresh ``secret``, ``broadcast_only`` to the loopback broadcast address
  127.255.255.255 on a fresh free UDP port each round (never 45892, never a
  multicast, private or public address). The figure is the time from the *last*
  node's ``ready`` line until every node lists all the others: starting 16
  Python processes on a small machine takes seconds, which is not discovery's
  doing. Measured once per heartbeat interval of ``--heartbeats`` (5 s is the
  default of the strategy).
* **static reconnect** — node A runs ``static`` listing B; B (no discovery) is
  killed with SIGKILL and started again; the figure is the time from B's
  ``ready`` line until A lists B again, for each ``polling_interval`` of
  ``--polling`` (5 s is the default). ``--restarts`` kill/restart cycles per round.

Nothing is timed by polling: each node keeps the wall-clock moment each of its
connections came up (``Node.statistics()``: ``since``), and the nodes share
this machine's clock. The bench asks for those moments from a *hidden*,
non-transitive driver node (``hidden=True, connect_all=False``), which appears
in nobody's ``Node.list()`` and makes nobody connect to anybody.

Everything runs on a private port mapper (a free port, never 4369), with a
unique cookie and a temporary ``XDG_CONFIG_HOME`` (so no user
``topologies.toml`` is picked up); every subprocess is killed by its pid at
the end, on error too. Each figure is sampled ``--rounds`` times; the table
shows the median and min–max.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymesh
from pymesh import rpc_eval

LOOPBACK_BROADCAST = "127.255.255.255"
READY_TIMEOUT = 90.0
MESH_TIMEOUT = 60.0
POLL = 0.25

#: Evaluated on a node: its visible, established connections and the wall-clock moment each came up.
PROBE = "[(s.node, s.since) for s in Node.statistics() if s.state == 'up' and not s.hidden]"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the node processes ------------------------------------------------------------------


@dataclass
class Env:
    """What every node of a bench run shares: port mapper, cookie, config dir, host name."""

    epmd_port: int
    cookie: str
    tmp: Path
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    verbose: bool = False
    procs: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PYMESH_EPMD_PORT=str(self.epmd_port),
            PYMESH_COOKIE=self.cookie,
            XDG_CONFIG_HOME=str(self.tmp / "config"),
        )
        return env

    def full(self, sname: str) -> str:
        return f"{sname}@{self.host}"


@dataclass
class Started:
    name: str
    proc: asyncio.subprocess.Process
    ready: float  # wall clock, when its "ready" line was read


async def start_node(env: Env, sname: str, topology: Path | None = None) -> Started:
    """``pymesh run --sname SNAME [--topology FILE]``; returns when it printed ``ready``."""
    argv = [sys.executable, "-m", "pymesh", "run", "--sname", sname, "--cookie", env.cookie,
            "--epmd-port", str(env.epmd_port)]
    if topology is not None:
        argv += ["--topology", str(topology)]
    if env.verbose:
        argv.append("-v")
    log = env.tmp / f"{sname}.log"
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=env.environ()
        )
    env.procs[proc.pid] = proc
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            while line := await proc.stdout.readline():
                if b" ready on port " in line:
                    return Started(env.full(sname), proc, time.time())
    except TimeoutError:
        pass
    await kill(env, proc)
    tail = log.read_text(errors="replace").strip().splitlines()[-5:]
    raise RuntimeError(f"node {sname} did not start (exit {proc.returncode}): " + " | ".join(tail))


async def kill(env: Env, proc: asyncio.subprocess.Process) -> None:
    """SIGKILL ``proc`` by its pid (if still running) and reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(proc.wait(), 10)
    env.procs.pop(proc.pid, None)


async def kill_all(env: Env) -> None:
    for proc in list(env.procs.values()):
        await kill(env, proc)


async def connections(node: str) -> dict[str, float]:
    """``{peer: since}`` of ``node``'s visible, established connections."""
    value, _ = await rpc_eval(node, PROBE, timeout=10.0)
    return {str(peer): float(since) for peer, since in value}


def write_toml(path: Path, strategy: str, config: dict[str, Any]) -> Path:
    def fmt(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(value, list):
            return "[" + ", ".join(fmt(v) for v in value) + "]"
        return repr(value)

    lines = [f'[topologies.bench]\nstrategy = "{strategy}"\n[topologies.bench.config]']
    lines += [f"{key} = {fmt(value)}" for key, value in config.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- gossip: full mesh -------------------------------------------------------------------


@dataclass
class MeshRound:
    mesh: float  # seconds from the last ready line to the full mesh
    spread: float  # seconds from the first ready line to the last
    last_first_link: float  # seconds from the last ready line to the last node's first connection
    last_full: float  # ... to the last node's full list


def gossip_topology(env: Env, tag: str, heartbeat: float | None) -> Path:
    from pymesh.services.discovery import load_config
    from pymesh.services.discovery._gossip import socket_plan

    config: dict[str, Any] = {
        "port": free_port(socket.SOCK_DGRAM),
        "if_addr": LOOPBACK_BROADCAST,
        "multicast_addr": LOOPBACK_BROADCAST,
        "broadcast_only": True,
        "secret": secrets.token_urlsafe(24),
    }
    if heartbeat is not None:
        config["heartbeat_interval"] = heartbeat
    path = write_toml(env.tmp / f"gossip-{tag}.toml", "gossip", config)
    # Never anything but loopback: check the plan the nodes will compute from this very file.
    (spec,) = load_config(path).topologies
    plan = socket_plan(spec.config)
    assert ipaddress.ip_address(plan.destination[0]).is_loopback, plan
    assert plan.destination[1] != 45892
    assert not any(opt[:2] == (socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP) for opt in plan.options)
    return path


async def gossip_round(env: Env, tag: str, nodes: int, heartbeat: float | None) -> MeshRound:
    topology = gossip_topology(env, tag, heartbeat)
    names = [f"g{tag}n{i}" for i in range(nodes)]
    try:
        async with asyncio.TaskGroup() as group:  # one failing start cancels the others
            tasks = [group.create_task(start_node(env, n, topology)) for n in names]
        started = [t.result() for t in tasks]
        full = {s.name for s in started}
        last = max(started, key=lambda s: s.ready)
        links: dict[str, dict[str, float]] = {}
        deadline = time.monotonic() + MESH_TIMEOUT
        while len(links) < nodes:
            pending = sorted(full - links.keys())
            for node, conns in zip(pending, await asyncio.gather(*(connections(n) for n in pending))):
                if set(conns) >= full - {node}:
                    links[node] = {peer: conns[peer] for peer in full - {node}}
            if len(links) < nodes:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no full mesh after {MESH_TIMEOUT:g}s: {sorted(full - links.keys())} incomplete")
                await asyncio.sleep(POLL)
        meshed = max(max(c.values()) for c in links.values())
        return MeshRound(
            mesh=meshed - last.ready,
            spread=last.ready - min(s.ready for s in started),
            last_first_link=min(links[last.name].values()) - last.ready,
            last_full=max(links[last.name].values()) - last.ready,
        )
    finally:
        await kill_all(env)


# --- static: reconnect after a restart ------------------------------------------------------


async def wait_link(a: str, b: str, present: bool) -> float | None:
    """Wait until ``a`` lists ``b`` (or no longer does); return the link's ``since``."""
    deadline = time.monotonic() + MESH_TIMEOUT
    while True:
        conns = await connections(a)
        if (b in conns) == present:
            return conns.get(b)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{a} {'never listed' if present else 'still lists'} {b} after {MESH_TIMEOUT:g}s")
        await asyncio.sleep(0.05)


async def static_round(env: Env, tag: str, interval: float | None, restarts: int) -> list[float]:
    b_sname = f"s{tag}b"
    config: dict[str, Any] = {"hosts": [env.full(b_sname)]}
    if interval is not None:
        config["polling_interval"] = interval
    topology = write_toml(env.tmp / f"static-{tag}.toml", "static", config)
    out: list[float] = []
    try:
        b = await start_node(env, b_sname)
        a = await start_node(env, f"s{tag}a", topology)
        await wait_link(a.name, b.name, present=True)
        for _ in range(restarts):
            # A random phase against A's polls: otherwise each cycle would start just
            # after the poll that reconnected B, and always land at the same phase.
            await asyncio.sleep(random.uniform(0, interval or 5.0))
            await kill(env, b.proc)
            await wait_link(a.name, b.name, present=False)
            for attempt in range(20):  # the port mapper may not have seen the old B go yet
                try:
                    b = await start_node(env, b_sname)
                    break
                except RuntimeError:
                    if attempt == 19:
                        raise
                    await asyncio.sleep(0.2)
            since = await wait_link(a.name, b.name, present=True)
            assert since is not None
            out.append(since - b.ready)
    finally:
        await kill_all(env)
    return out


# --- driver --------------------------------------------------------------------------------


@dataclass
class Results:
    gossip: dict[float, list[MeshRound]] = field(default_factory=dict)  # by heartbeat_interval
    static: dict[float, list[float]] = field(default_factory=dict)  # by polling_interval


async def bench(env: Env, args: argparse.Namespace) -> Results:
    await pymesh.start(f"dbench{os.getpid()}", cookie=env.cookie, hidden=True, connect_all=False,
                       epmd_port=env.epmd_port, listen_host="127.0.0.1")
    results = Results()
    seq = iter(range(1_000_000))
    try:
        for hb in args.heartbeats:
            key = None if hb == 5.0 else hb
            for r in range(args.rounds):
                tag = f"{next(seq)}x{os.getpid()}"
                one = await gossip_round(env, tag, args.nodes, key)
                results.gossip.setdefault(hb, []).append(one)
                if args.verbose:
                    print(f"  gossip hb={hb:g} round {r}: {one}", file=sys.stderr, flush=True)
        for iv in args.polling:
            key = None if iv == 5.0 else iv
            for r in range(args.rounds):
                tag = f"{next(seq)}x{os.getpid()}"
                samples = await static_round(env, tag, key, args.restarts)
                results.static.setdefault(iv, []).extend(samples)
                if args.verbose:
                    print(f"  static interval={iv:g} round {r}: {samples}", file=sys.stderr, flush=True)
    finally:
        await kill_all(env)
        await pymesh.stop()
    return results


def _floats(text: str) -> list[float]:
    if text.strip().lower() in ("", "none"):
        return []  # skip this part
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of seconds: {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"need positive seconds: {text!r}")
    return values


def _row(name: str, samples: Sequence[float], target: str | None = None) -> str:
    def f(v: float) -> str:
        return f"{v:.2f}"

    row = f"| {name} | {f(statistics.median(samples))} | {f(min(samples))}–{f(max(samples))} |"
    return row if target is None else f"{row} {target} |"


def report(results: Results, args: argparse.Namespace) -> str:
    lines = [
        (
            f"discovery bench ({pymesh.loop_name()} loop, {os.cpu_count()} cores, {args.rounds} rounds, "
            f"{args.nodes} gossip nodes, {args.restarts} static restarts per round)"
        ),
        "| figure (seconds) | median | min–max | target |",
        "|---|---:|---:|---:|",
    ]
    for hb, rounds in results.gossip.items():
        label = f"heartbeat {hb:g} s" + (" (default)" if hb == 5.0 else "")
        lines.append(_row(f"gossip: full mesh of {args.nodes} after the last start, {label}",
                          [r.mesh for r in rounds], "≤ 3"))
    for iv, samples in results.static.items():
        label = f"polling {iv:g} s" + (" (default)" if iv == 5.0 else "")
        lines.append(_row(f"static: restarted node reconnected, {label} (n={len(samples)})", samples, f"≤ {iv:g}"))
    lines.append("")
    lines.append("| context (seconds) | median | min–max |")
    lines.append("|---|---:|---:|")
    for hb, rounds in results.gossip.items():
        lines.append(_row(f"gossip hb {hb:g} s: first → last node ready", [r.spread for r in rounds]))
        lines.append(_row(f"gossip hb {hb:g} s: last ready → its first link", [r.last_first_link for r in rounds]))
        lines.append(_row(f"gossip hb {hb:g} s: last ready → its {args.nodes - 1} links", [r.last_full for r in rounds]))
    for iv, samples in results.static.items():
        lines.append(_row(f"static polling {iv:g} s: reconnect / interval", [s / iv for s in samples]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="samples of each figure (default 3)")
    parser.add_argument("--nodes", type=int, default=16, help="gossip nodes (default 16)")
    parser.add_argument("--heartbeats", type=_floats, default=[1.0, 5.0], metavar="S,S",
                        help="gossip heartbeat_interval values to measure (default 1,5; 5 is the strategy's default)")
    parser.add_argument("--polling", type=_floats, default=[1.0, 5.0], metavar="S,S",
                        help="static polling_interval values to measure (default 1,5; 5 is the default)")
    parser.add_argument("--restarts", type=int, default=3, help="static kill/restart cycles per round (default 3)")
    parser.add_argument("--keep-logs", action="store_true", help="run the nodes with -v and keep their logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each round on stderr")
    args = parser.parse_args(argv)
    if args.nodes < 2 or args.rounds < 1 or args.restarts < 1:
        parser.error("--nodes must be ≥ 2, --rounds and --restarts ≥ 1")

    tmp = Path(tempfile.mkdtemp(prefix="pymesh-discovery-bench-"))
    (tmp / "config").mkdir()
    env = Env(epmd_port=free_port(), cookie="dbench" + secrets.token_hex(8), tmp=tmp, verbose=args.keep_logs)
    epmd = subprocess.Popen(
        [sys.executable, "-m", "pymesh", "epmd", "--port", str(env.epmd_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(env.epmd_port)
        results = pymesh.run(bench(env, args))
    finally:
        for pid in list(env.procs):  # normally none left: each round kills its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if epmd.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(epmd.pid, signal.SIGKILL)
        epmd.wait(10)
        if args.keep_logs:
            print(f"node logs kept in {tmp}", file=sys.stderr)
        else:
            _rmtree(tmp)
    print(report(results, args))
    return 0


def _wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the port mapper did not listen on port {port}") from None
            time.sleep(0.05)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
