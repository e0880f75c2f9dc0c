"""A plain mutation fuzzer over :data:`~fuzz.targets.TARGETS`, fast enough for a million inputs.

Each input is a corpus entry of the target (or of another target: splicing
across targets finds parser confusions) put through one to four random
mutations — bit flips, interesting bytes (msgpack type markers, 0x00/0xff),
inserted, deleted, duplicated or truncated ranges, a rewritten frame length,
a splice with another entry. The engine times every input (one over
``hang_after`` seconds is a failure: "never hang"), measures the traced
memory peak of every ``memory_every``-th input ("never unbounded memory"),
and keeps every crasher (an undocumented exception or a :class:`FuzzFailure`)
by target and signature. Seeded: the same seed, corpus and count replay the
same inputs.
"""

from __future__ import annotations

import random
import re
import struct
import time
import traceback
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .corpus import load, seeds
from .targets import TARGETS

__all__ = ["FuzzStats", "fuzz", "mutate"]

_INTERESTING = bytes([
    0x00, 0x01, 0x7F, 0x80, 0xFF, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC6, 0xC7, 0xC9, 0xCF, 0xD3, 0xD4, 0xD5,
    0xD6, 0xD7, 0xD8, 0xD9, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0x90, 0x9F, 0x80, 0x8F, 0xA0, 0xBF, 0xE0,
])
_BIG = [0, 1, 4, 0x7F, 0xFF, 0x1000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF]


def mutate(rng: random.Random, data: bytes, pool: Sequence[bytes], max_len: int = 4096) -> bytes:
    """``data`` after one to four random mutations (never longer than ``max_len``)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(10)
        n = len(buf)
        if op == 0 and n:
            buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[rng.randrange(n)] = rng.choice(_INTERESTING)
        elif op == 2:
            at = rng.randint(0, n)
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and n:
            a = rng.randrange(n)
            del buf[a : a + rng.randint(1, 16)]
        elif op == 4 and n:
            a = rng.randrange(n)
            b = min(n, a + rng.randint(1, 64))
            at = rng.randint(0, n)
            buf[at:at] = buf[a:b]
        elif op == 5 and n:
            del buf[rng.randrange(n) :]
        elif op == 6 and n >= 4:
            at = rng.randrange(n - 3)
            struct.pack_into(">I", buf, at, rng.choice(_BIG) + rng.randint(-2, 2) & 0xFFFFFFFF)
        elif op == 7 and pool:
            other = rng.choice(pool)
            if other:
                a = rng.randrange(len(other))
                at = rng.randint(0, n)
                buf[at:at] = other[a : a + rng.randint(1, 256)]
        elif op == 8 and n >= 2:
            buf[rng.randrange(2)] = rng.randrange(256)  # the knob bytes
        elif op == 9 and n:
            a = rng.randrange(n)
            buf[a : a + 2] = bytes(reversed(buf[a : a + 2]))
    return bytes(buf[:max_len])


@dataclass
class FuzzStats:
    inputs: int = 0
    seconds: float = 0.0
    per_target: dict[str, int] = field(default_factory=dict)
    crashes: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # signature -> (target, input)
    slowest: tuple[float, str, bytes] = (0.0, "", b"")
    memory_peak: tuple[int, str, int] = (0, "", 0)  # (traced bytes, target, input length)

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        lines = [
            f"{self.inputs} inputs in {self.seconds:.1f} s ({self.rate:,.0f}/s): "
            + ", ".join(f"{t} {n}" for t, n in sorted(self.per_target.items())),
            (f"slowest input: {self.slowest[0] * 1000:.1f} ms ({self.slowest[1]}, {len(self.slowest[2])} bytes); "
            f"largest traced memory peak: {self.memory_peak[0] / 1024:.0f} KiB ({self.memory_peak[1]}, "
            f"{self.memory_peak[2]}-byte input)"),
            f"crashes: {len(self.crashes)}",
        ]
        lines += [f"  {target}: {sig}" for sig, (target, _) in self.crashes.items()]
        return "\n".join(lines)


def fuzz(
    inputs: int,
    *,
    seed: int = 0,
    targets: Sequence[str] = tuple(TARGETS),
    max_len: int = 4096,
    hang_after: float = 1.0,
    memory_every: int = 1000,
    on_crash: Callable[[str, bytes, str], None] | None = None,
    progress: Callable[[FuzzStats], None] | None = None,
) -> FuzzStats:
    """Run ``inputs`` mutated inputs over ``targets`` (round robin); return the statistics."""
    rng = random.Random(seed)
    corpora = {t: load(t) or [s for n, s in seeds().items() if n.startswith(t + "-")] or [b""] for t in targets}
    pool = [entry for corpus in corpora.values() for entry in corpus]
    stats = FuzzStats(per_target={t: 0 for t in targets})
    started = time.perf_counter()
    for n in range(inputs):
        target = targets[n % len(targets)]
        base = rng.choice(corpora[target])
        data = mutate(rng, base, pool, max_len)
        fn = TARGETS[target]
        traced = memory_every and n % memory_every == 0
        if traced:
            tracemalloc.start()
        t0 = time.perf_counter()
        try:
            fn(data)
            failure = None
        except Exception as e:  # noqa: BLE001 - every escape is a finding
            failure = _signature(e)
        elapsed = time.perf_counter() - t0
        if traced:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            if peak > stats.memory_peak[0]:
                stats.memory_peak = (peak, target, len(data))
        if elapsed > stats.slowest[0]:
            stats.slowest = (elapsed, target, data)
        if failure is None and elapsed > hang_after:
            failure = f"slow: {elapsed:.2f}s"
        if failure is not None and failure not in stats.crashes:
            stats.crashes[failure] = (target, data)
            if on_crash is not None:
                on_crash(target, data, failure)
        stats.per_target[target] += 1
        stats.inputs += 1
        if progress is not None and n and n % 100_000 == 0:
            stats.seconds = time.perf_counter() - started
            progress(stats)
    stats.seconds = time.perf_counter() - started
    return stats


def _signature(e: BaseException) -> str:
    """Type, message head and the innermost frame in pymesh: one line per distinct bug."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "pymesh" in f.filename and "tests" not in f.filename]
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    head = re.sub(r"\d+", "N", str(e))[:60]
    return f"{type(e).__name__}: {head}{where}"
