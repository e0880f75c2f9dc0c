"""Shared test helpers. Kept minimal; extend as the suite grows."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

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


T = TypeVar("T")


def run(scenario: Callable[[], Coroutine[Any, Any, T]], timeout: float = 60.0) -> T:
    """Run ``scenario()`` on a fresh event loop; fail if it takes over ``timeout`` seconds."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await scenario()

    return asyncio.run(bounded())


async def eventually(check: Callable[[], Any], what: str, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Call ``check()`` (awaiting its result if need be) until it is truthy; return that value.

    Raises ``AssertionError`` naming ``what`` and the last value after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what} (last: {value!r})")
        await asyncio.sleep(interval)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
