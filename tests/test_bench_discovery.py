"""Smoke test of ``bench/discovery.py``: tiny sizes, it completes and prints its table.

No timing is asserted here: the figures live in the bench's output, not in tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "discovery.py"

pytestmark = pytest.mark.timeout(150)


def test_discovery_bench_runs_and_prints_its_table(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}  # the bench makes its own; belt and braces
    env.pop("PYMESH_EPMD_PORT", None)
    result = subprocess.run(
        [sys.executable, str(BENCH), "--nodes", "3", "--rounds", "1", "--restarts", "1",
         "--heartbeats", "0.5", "--polling", "0.5"],
        check=False,
        capture_output=True,
        text=True,
        timeout=140,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "| figure (seconds) | median | min–max | target |" in out
    assert "| gossip: full mesh of 3 after the last start, heartbeat 0.5 s |" in out
    assert "| static: restarted node reconnected, polling 0.5 s (n=1) |" in out
    assert "| gossip hb 0.5 s: first → last node ready |" in out
