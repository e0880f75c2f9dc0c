"""The process-level tuning ``pymesh.run``/``start`` apply: the GC and glibc's malloc."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = (
    "import gc, pymesh.runtime._loop as L; L.tune_gc(); "
    "print(L.tune_malloc(), gc.get_threshold()[0])"
)


def _probe(**env: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout.split()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_malloc_is_tuned_on_glibc_and_can_be_left_alone() -> None:
    assert _probe() == ["True", "50000"]
    assert _probe(PYMESH_MALLOC_TUNE="0") == ["False", "50000"]


def test_gc_threshold_can_be_set_or_left_alone() -> None:
    assert _probe(PYMESH_GC_THRESHOLD="1234")[1] == "1234"
    assert _probe(PYMESH_GC_THRESHOLD="0")[1] == "700"
