"""``pymesh bench`` runs end to end with tiny counts and prints its table.

A smoke test: it checks that the workloads run on real nodes (OS processes on
a private port mapper), that the table and the Markdown file come out, and
that no node outlives the run. It asserts no timing: figures belong to the
benchmark, not to a test that a busy machine would make flaky.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)


def _bench_pids() -> set[int]:
    """Pids of bench nodes and port mappers alive now (from /proc)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"pymesh.shell._bench._node" in cmd or b"bench/beam/node.exs" in cmd:
            pids.add(int(entry))
    return pids


def test_bench_runs_and_prints_its_table(tmp_path: Path) -> None:
    before = _bench_pids()
    proc = subprocess.run(
        [sys.executable, "-m", "pymesh", "bench", "--only", "throughput,rtt,call,registry,global,pg,spawn",
         "--rounds", "1", "--scale", "0.002", "--no-plot", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for label in ("send, small map", "ping-pong RTT p50", "GenServer call", "Registry register",
                  "Global register", "pg join", "spawn"):
        assert label in out, out
    assert (tmp_path / "latest.md").read_text().count("\n| ") >= 7
    assert not (_bench_pids() - before), "a bench node outlived the run"


def test_bench_refuses_an_unknown_workload() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pymesh", "bench", "--only", "nosuch", "--no-beam"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown workload" in proc.stderr
