"""The long fuzz run, by command: ``python -m tests.fuzz --inputs 1000000 [--seed S] [--target T ...]``.

``--engine mutate`` (default): :mod:`fuzz.engine`'s seeded mutation fuzzer;
prints the rate, the slowest input, the largest memory peak and every
distinct crash, and saves crashers to ``tests/fuzz/corpus/crashers/``.
``--engine atheris``: coverage-guided (libFuzzer) over the same targets, the
first byte of each input choosing the target; needs ``pip install atheris``.
``--write-seeds`` rewrites the seed files of ``tests/fuzz/corpus/``.
Exits 1 when anything crashed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", action="append", default=None, help="a target (repeatable); default: all")
    parser.add_argument("--max-len", type=int, default=4096)
    parser.add_argument("--engine", choices=("mutate", "atheris"), default="mutate")
    parser.add_argument("--write-seeds", action="store_true", help="rewrite the corpus seed files and exit")
    args = parser.parse_args(argv)

    if args.engine == "atheris":
        return _atheris(args)
    from .corpus import save_crasher, write_seeds
    from .engine import fuzz
    from .targets import TARGETS

    if args.write_seeds:
        for path in write_seeds():
            print(path.relative_to(TESTS_DIR.parent))
        return 0
    targets = args.target or list(TARGETS)
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; choose from {sorted(TARGETS)}")

    def crashed(target: str, data: bytes, why: str) -> None:
        print(f"CRASH {target}: {why} -> {save_crasher(target, data).relative_to(TESTS_DIR.parent)}", flush=True)

    print(f"fuzzing {', '.join(targets)}: {args.inputs} inputs, seed {args.seed}", flush=True)
    stats = fuzz(args.inputs, seed=args.seed, targets=targets, max_len=args.max_len, on_crash=crashed,
                 progress=lambda s: print(f"  {s.inputs} inputs, {s.rate:,.0f}/s, {len(s.crashes)} crashes", flush=True))
    print(stats.summary())
    return 1 if stats.crashes else 0


def _atheris(args: argparse.Namespace) -> int:
    try:
        import atheris
    except ImportError:
        print("atheris is not installed: pip install atheris (a manylinux wheel exists for CPython 3.11)")
        return 2
    with atheris.instrument_imports(include=["pymesh"]):
        from .corpus import seeds
        from .targets import TARGETS
    names = args.target or list(TARGETS)
    fns = [TARGETS[n] for n in names]

    def one_input(data: bytes) -> None:
        if not data:
            return
        fns[data[0] % len(fns)](data[1:])

    corpus_dir = Path(tempfile.mkdtemp(prefix="pymesh-atheris-"))
    for name, data in seeds().items():
        target = name.split("-")[0]
        if target in names:
            (corpus_dir / f"{name}.bin").write_bytes(bytes([names.index(target)]) + data)
    argv = [sys.argv[0], str(corpus_dir), f"-runs={args.inputs}", f"-max_len={args.max_len}", f"-seed={args.seed or 1}",
            "-print_final_stats=1"]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
