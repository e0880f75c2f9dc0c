"""``pymesh bench``: the same workloads on pymesh and on Erlang/OTP, side by side.

Workloads (``--only`` takes these names, comma-separated):

=================  ==========================================================================
``throughput``     one-way ``send`` to a process on another node: a small map, a 1 KiB
                   binary and a 64 KiB binary; the receiver counts every message
``rtt``            ping-pong round trips to that process: p50 and p99
``call``           ``GenServer.call`` to a server on another node: p50 and p99
``registry``       local ``Registry``: register, then look up, 200k unique keys
``global``         ``Global.register_name`` / ``:global.register_name`` on 3 nodes
``pg``             time from ``pg`` join on node A until node B's monitor sees it
``spawn``          spawn rate and memory per idle process
``dist_registry``  convergence of a name over 8 nodes: ``DistributedRegistry`` (the BEAM
                   has no built-in equivalent: it is compared with ``:global``)
``formation``      16 and 32 nodes (OS processes) connect to one seed; time until every
                   node sees all the others
``nodedown``       tick 1 s: a 50k msgs/s flow with no false nodedown, then SIGSTOP the
                   peer and time its nodedown
=================  ==========================================================================

The BEAM half runs when ``elixir`` and ``epmd`` are installed (Debian's
``erlang-base`` and ``elixir``) and ``bench/beam/node.exs`` is found. Each
round runs on pymesh and then on the BEAM; the table shows medians of
``--rounds`` rounds with min–max beside them, the ratio pymesh ÷ BEAM and the
targets. A Markdown table, the raw samples (JSON) and a plot (PNG, with the
optional ``matplotlib``) are written to ``--out`` (default ``bench/results``
in a checkout). Every node and port mapper runs on loopback, on private
ports, and is killed by its pid when the run ends, however it ends.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import pymesh

from . import _report
from ._driver import WORKLOADS, BeamSide, Counts, PymeshSide, Run, Side, beam_script, run_workloads
from ._procs import Reaper

__all__ = ["configure_bench", "run_bench"]


def configure_bench(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "workloads: " + ", ".join(WORKLOADS)
    parser.add_argument("--only", metavar="NAME[,NAME]", help="run only these workloads (default: all)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the work (about 2 minutes)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per workload and runtime (default 3)")
    parser.add_argument("--scale", type=float, default=None, help="multiply every count by this factor")
    parser.add_argument("--no-beam", action="store_true", help="measure pymesh only")
    parser.add_argument("--out", type=Path, default=None, help="where to write the table, JSON and plot"
                        " (default: bench/results of this checkout, else ./bench-results)")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the PNG")


def _out_dir(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "bench").is_dir() and (checkout / "pyproject.toml").exists():
        return checkout / "bench" / "results"
    return Path.cwd() / "bench-results"


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_bench(args: argparse.Namespace) -> int:
    names = list(WORKLOADS) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        print(f"pymesh bench: unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}",
              file=sys.stderr)
        return 2
    counts = Counts(rounds=args.rounds)
    if args.quick:
        counts = counts.scaled(0.1)
        counts.flow_s = 1.5
        counts.dreg_names = 50
        counts.formation = (16,)
    if args.scale is not None:
        counts = counts.scaled(args.scale)
        counts.flow_s = min(counts.flow_s, 1.5)
    out = _out_dir(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    with open(out / f"nodes-{stamp}.log", "wb") as node_log:
        reaper = Reaper(node_log)
        sides: list[Side] = [PymeshSide(reaper)]
        beam_note = "BEAM skipped (--no-beam)"
        if not args.no_beam:
            why = BeamSide.available()
            if why is None:
                script = beam_script()
                assert script is not None
                sides.append(BeamSide(reaper, script))
                beam_note = "Erlang/OTP " + _otp_release()
            else:
                beam_note = f"BEAM skipped: {why}"
                _log(f"pymesh bench: {beam_note}")
        load = _loadavg()
        t0 = time.monotonic()
        _log(f"pymesh bench: {', '.join(names)}; {counts.rounds} rounds; {beam_note}; load {load}")
        run = Run(counts, sides, log=_log)
        try:
            for side in sides:
                side.start_epmd()
            run_workloads(run, names)
        except KeyboardInterrupt:
            _log("pymesh bench: interrupted; the table shows what was measured")
        finally:
            reaper.kill_all()
    meta = {
        "when": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "load": load,
        "loop": pymesh.loop_name(),
        "beam": beam_note,
        "rounds": counts.rounds,
        "misses": run.misses,
        "seconds": round(time.monotonic() - t0, 1),
        "loads": run.loads,
    }
    print(f"\npymesh bench — {meta['loop']} vs {beam_note}; median of {counts.rounds} rounds,"
          f" ratio = pymesh ÷ BEAM ({meta['seconds']:.0f} s)")
    print(_report.table(run.results))
    for miss in run.misses:
        print(f"miss: {miss}")
    md = _report.markdown(run.results, meta)
    (out / f"bench-{stamp}.md").write_text(md)
    shutil.copyfile(out / f"bench-{stamp}.md", out / "latest.md")
    (out / f"bench-{stamp}.json").write_text(json.dumps({"meta": meta, "results": run.results}, indent=1))
    written = [out / f"bench-{stamp}.md", out / f"bench-{stamp}.json"]
    if not args.no_plot:
        png = out / f"bench-{stamp}.png"
        if _report.plot(run.results, png, f"pymesh vs {beam_note}, {meta['when']}"):
            shutil.copyfile(png, out / "latest.png")
            written.append(png)
        else:
            _log("pymesh bench: no plot (pip install 'pymesh[bench]' for matplotlib)")
    print("wrote " + ", ".join(str(p) for p in written))
    return 1 if run.misses else 0


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def _otp_release() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["erl", "-noshell", "-eval", "io:format(\"~s\", [erlang:system_info(otp_release)]), halt()."],
            capture_output=True, text=True, timeout=30,
        )
        return out.stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"
