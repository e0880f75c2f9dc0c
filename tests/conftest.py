"""Shared test helpers. Kept minimal; extend as the suite grows."""

from __future__ import annotations

import os
import shutil

import pytest


def require_binary(name: str) -> str:
    """Return the path of executable ``name``.

    A missing binary skips the test locally but fails it when ``CI=true``, so CI
    cannot go green by silently skipping the interop tests.
    """
    path = shutil.which(name)
    if path is None:
        message = f"{name!r} is not installed (not found on PATH)"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{message}; it is required when CI=true")
        pytest.skip(message)
    return path
