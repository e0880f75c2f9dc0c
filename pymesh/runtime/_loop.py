"""Running pymesh's event loop: uvloop when it is installed, asyncio's otherwise.

uvloop is a dependency because it roughly halves the per-message cost of the
socket path (see the README's performance section); ``PYMESH_LOOP=asyncio``
forces the standard loop, e.g. to compare or to debug.

Busy waiting, as the BEAM's schedulers do (``+sbwt``): once a node has
received data from a peer, its event loop keeps *polling* its sockets, with a
zero timeout, for :data:`BUSY_WAIT` seconds instead of going to sleep in
``epoll_wait`` at once. A reply that comes back within that window is picked
up without the wake-up of a sleeping thread, which on a virtualised kernel
costs more than the whole rest of a round trip. The price is CPU time: up to
one window of spinning after the last message, nothing once the node is idle.
``PYMESH_BUSY_WAIT_US=N`` sets the window in microseconds; ``0`` turns it off.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run", "loop_name", "tune_gc", "tune_malloc", "kick", "BUSY_WAIT"]

#: The cyclic GC's generation-0 threshold pymesh sets (Python's default is 700).
GC_THRESHOLD = 50_000
_tuned = False

T = TypeVar("T")

#: Seconds the loop keeps polling after the last data from a peer (see the module doc).
BUSY_WAIT = int(os.environ.get("PYMESH_BUSY_WAIT_US", "200")) / 1e6


class _Spinner:
    """Keeps one callback re-queued while data came recently, so that the loop
    polls with a zero timeout instead of sleeping."""

    __slots__ = ("kicked", "loop", "until", "since")

    def __init__(self) -> None:
        self.kicked = False
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop it spins on, while it does
        self.until = 0.0
        self.since = 0.0

    def spin(self) -> None:
        now = time.monotonic()
        if self.kicked:
            self.kicked = False
            self.until = now + BUSY_WAIT
            self.since = now
        loop = self.loop
        if now < self.until and loop is not None:
            if now - self.since > _YIELD_AFTER:
                # Spinning this long, give the core away between polls: with more
                # spinning nodes than cores, the one whose data is ready must not
                # wait out another's time slice.
                _yield()
            loop.call_soon(self.spin)
        else:
            self.loop = None


_spinner = _Spinner()
_yield = getattr(os, "sched_yield", lambda: None)
_YIELD_AFTER = float(os.environ.get("PYMESH_BUSY_YIELD_US", "20")) / 1e6


def kick() -> None:
    """Data came in: keep polling for :data:`BUSY_WAIT` seconds (the network
    layer calls this for every chunk it receives; cheap when spinning)."""
    s = _spinner
    s.kicked = True
    loop = s.loop
    if loop is not None and not loop.is_closed():
        return
    if BUSY_WAIT > 0:
        s.loop = loop = asyncio.get_running_loop()
        loop.call_soon(s.spin)


def loop_name() -> str:
    """``"uvloop"`` or ``"asyncio"``: the loop :func:`run` will use."""
    if os.environ.get("PYMESH_LOOP", "").lower() == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def tune_gc() -> None:
    """Make the cyclic GC fit a node's allocation pattern (idempotent).

    A busy node allocates a few objects per message and a task per process;
    with CPython's default threshold (700) the collector runs thousands of
    times a second and each pass walks every live process, which more than
    halves the spawn rate once 100k processes exist. pymesh raises the
    generation-0 threshold to :data:`GC_THRESHOLD` and freezes the objects
    alive at start-up (modules, classes) out of future collections.
    ``PYMESH_GC_THRESHOLD=N`` sets another threshold; ``0`` leaves the GC alone.
    """
    global _tuned
    if _tuned:
        return
    _tuned = True
    tune_malloc()
    value = os.environ.get("PYMESH_GC_THRESHOLD")
    threshold = GC_THRESHOLD if value is None else int(value)
    if threshold <= 0:
        return
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(threshold, gen1, gen2)
    gc.freeze()


#: glibc malloc settings pymesh makes (see :func:`tune_malloc`): mallopt parameter -> value.
MALLOC_SETTINGS = {
    -3: 16 * 1024 * 1024,  # M_MMAP_THRESHOLD: blocks under 16 MiB come from the heap
    -1: 128 * 1024 * 1024,  # M_TRIM_THRESHOLD: give memory back past 128 MiB free at the top
    -2: 16 * 1024 * 1024,  # M_TOP_PAD: grow the heap 16 MiB at a time
}


def tune_malloc() -> bool:
    """Stop glibc's malloc from handing large blocks back to the kernel at once.

    By default glibc serves blocks over 128 KiB (a threshold it raises as it
    goes) with their own ``mmap`` and returns heap memory past a 128 KiB free
    top at every ``free``. A node receiving 64 KiB binaries allocates and frees
    a few per message, so each one then costs fresh pages — a page fault per
    4 KiB, which on a virtualised kernel made decoding a 64 KiB message 50 µs
    instead of 7. The settings in :data:`MALLOC_SETTINGS` keep such blocks on
    the heap and the heap's free memory for reuse (up to 128 MiB of it), as
    the BEAM's own allocators keep their carriers. Only on glibc; returns
    whether it applied them. ``PYMESH_MALLOC_TUNE=0`` leaves malloc alone.
    """
    if os.environ.get("PYMESH_MALLOC_TUNE", "1") == "0":
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # not glibc (macOS, musl's has no such knobs)
    return all(mallopt(param, value) == 1 for param, value in MALLOC_SETTINGS.items())


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh event loop (like ``asyncio.run``).

    Uses uvloop when installed and tunes the GC (see :func:`tune_gc`).
    """
    tune_gc()
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
