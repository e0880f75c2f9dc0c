"""The long chaos run, by command: ``python -m tests.chaos --nodes 5 --minutes 10 --seed S``.

Prints the run's figures (faults injected, invariant checks, messages,
losses) and every violation; exits 1 when an invariant was broken. ``--json
FILE`` also writes the report as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))  # support.*, as under pytest

from .harness import ChaosConfig, run_chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=None, help="minutes of faults (default 10)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds of faults, instead of --minutes")
    parser.add_argument("--seed", type=int, default=None, help="the fault schedule's seed (default: random, printed)")
    parser.add_argument("--tick-time", type=float, default=2.0)
    parser.add_argument("--children", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every fault as it happens")
    args = parser.parse_args(argv)
    if args.nodes < 3:
        parser.error("--nodes must be at least 3")
    duration = args.seconds if args.seconds is not None else 60 * (args.minutes if args.minutes is not None else 10)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    print(f"chaos: {args.nodes} nodes, {duration:.0f} s of faults, seed {seed}", flush=True)
    config = ChaosConfig(nodes=args.nodes, duration=duration, seed=seed, tick_time=args.tick_time,
                         children=args.children, verbose=args.verbose)
    report = asyncio.run(run_chaos(config))
    print(report.summary(), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({
            "seed": report.seed, "nodes": args.nodes, "duration": duration, "elapsed": report.elapsed,
            "faults": dict(report.faults), "checks": report.checks, "figures": report.figures,
            "violations": report.violations, "warnings": report.warnings,
        }, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
