"""Running pymesh's event loop: uvloop when it is installed, asyncio's otherwise.

uvloop is a dependency because it roughly halves the per-message cost of the
socket path (see the README's performance section); ``PYMESH_LOOP=asyncio``
forces the standard loop, e.g. to compare or to debug.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run", "loop_name", "tune_gc"]

#: The cyclic GC's generation-0 threshold pymesh sets (Python's default is 700).
GC_THRESHOLD = 50_000
_tuned = False

T = TypeVar("T")


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
    value = os.environ.get("PYMESH_GC_THRESHOLD")
    threshold = GC_THRESHOLD if value is None else int(value)
    if threshold <= 0:
        return
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(threshold, gen1, gen2)
    gc.freeze()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh event loop (like ``asyncio.run``).

    Uses uvloop when installed and tunes the GC (see :func:`tune_gc`).
    """
    tune_gc()
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
