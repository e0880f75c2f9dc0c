"""The pane over SSH (or any byte stream): a ``pymesh tui`` child on a pseudo-terminal.

Textual's driver wants a terminal of its own — it puts stdin in raw mode,
reads keys from it and learns the size from it — so an SSH session cannot
share the server process's terminal. :func:`serve_pty` gives each session
one: it opens a pseudo-terminal of the session's size, starts ``python -m
pymesh tui NODE`` on it as the leader of a new session (the pty is its
controlling terminal, so resizes arrive as SIGWINCH), and copies bytes both
ways until the pane quits. The child attaches as a hidden node, exactly as
``pymesh tui`` from a shell does; its cookie travels in its environment, not
on its command line.

:func:`ssh_session` adapts that to an ``asyncssh.SSHServerProcess``: the SSH
server of a node calls ``await pymesh.tui.ssh_session(process)`` for a
``tui`` command (``ssh -t -p P host tui``) and the session ends with the
pane's exit status.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import Awaitable, Callable
from typing import Any

from pymesh import Node

__all__ = ["PtySession", "serve_pty", "ssh_session"]


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _controlling_tty() -> None:  # pragma: no cover - runs in the child
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtySession:
    """A ``pymesh tui NODE`` child on its own pseudo-terminal.

    ``write`` receives everything the pane draws; feed keys with
    :meth:`send`, sizes with :meth:`resize`; :meth:`wait` returns the exit
    status. :meth:`close` ends the child (by its pid) if it still runs.
    """

    def __init__(
        self,
        node: str,
        write: Callable[[bytes], Any],
        *,
        size: tuple[int, int] = (80, 24),
        term: str = "xterm-256color",
        cookie: str | None = None,
        epmd_port: int | None = None,
        interval: float = 0.5,
    ) -> None:
        self.node = node
        self._write = write
        master, slave = os.openpty()
        self.master = master
        _set_size(slave, *size)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env["TERM"] = term
        if cookie is not None:
            env["PYMESH_COOKIE"] = cookie
        cmd = [sys.executable, "-m", "pymesh", "tui", node, "--interval", str(interval)]
        if epmd_port is not None:
            cmd += ["--epmd-port", str(epmd_port)]
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
                start_new_session=True, preexec_fn=_controlling_tty,
            )
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        self._loop.add_reader(master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: the child closed the terminal
            data = b""
        if not data:
            self._loop.remove_reader(self.master)
            if not self._done.done():
                self._done.set_result(None)
            return
        self._write(data)

    def send(self, data: bytes) -> None:
        """Type ``data`` into the pane."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                continue
            except OSError:
                return
            view = view[n:]

    def resize(self, cols: int, rows: int) -> None:
        """Tell the pane its terminal is now ``cols`` × ``rows``."""
        with contextlib.suppress(OSError):
            _set_size(self.master, cols, rows)

    async def wait(self) -> int:
        """Wait until the pane quits; return its exit status."""
        await self._done
        while self.proc.poll() is None:
            await asyncio.sleep(0.02)
        return self.proc.returncode

    def close(self) -> None:
        """End the child if it still runs (SIGTERM, then SIGKILL), and the pty."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.master)
        with contextlib.suppress(OSError):
            os.close(self.master)


async def serve_pty(
    read: Callable[[], Awaitable[bytes | None]],
    write: Callable[[bytes], Any],
    *,
    node: str | None = None,
    size: tuple[int, int] = (80, 24),
    term: str = "xterm-256color",
    on_start: Callable[[PtySession], Any] | None = None,
) -> int:
    """Run the pane for ``node`` (default: this node) on a fresh pseudo-terminal.

    ``read()`` returns the next keys typed by the remote user (None or
    ``b""`` at end of input); ``write(data)`` sends the pane's output back.
    ``on_start(session)`` is called once the child runs: keep the
    :class:`PtySession` to pass terminal resizes on (``session.resize(cols,
    rows)``). Returns the pane's exit status. This node must be started; the
    child uses its cookie and port mapper. Cancelling ends the child.
    """
    me = node or Node.self()
    session = PtySession(me, write, size=size, term=term, cookie=Node.get_cookie(), epmd_port=Node.epmd_port())
    if on_start is not None:
        on_start(session)

    async def pump() -> None:
        while True:
            data = await read()
            if not data:
                return
            session.send(data)

    pumping = asyncio.ensure_future(pump())
    try:
        return await session.wait()
    finally:
        pumping.cancel()
        session.close()


async def ssh_session(process: Any, node: str | None = None) -> int:
    """Serve the pane on an ``asyncssh.SSHServerProcess``; return (and exit with) its status.

    The client must ask for a terminal (``ssh -t``); without one the session
    gets a one-line explanation and status 1. Terminal resizes are passed on.
    Works with the process's channel in text (any encoding) or binary mode.
    """
    import asyncssh

    term = process.get_terminal_type()
    if not term:
        process.stderr.write(_encode_for(process, "the observer needs a terminal: connect with ssh -t\r\n"))
        process.exit(1)
        return 1
    cols, rows = process.get_terminal_size()[:2]
    encoding, errors = _encoding(process)
    decoder = codecs.getincrementaldecoder(encoding)(errors or "strict") if encoding else None

    def write(data: bytes) -> None:
        process.stdout.write(decoder.decode(data) if decoder is not None else data)

    session = PtySession(node or Node.self(), write, size=(cols or 80, rows or 24), term=term,
                         cookie=Node.get_cookie(), epmd_port=Node.epmd_port())

    async def pump() -> None:
        while True:
            try:
                data = await process.stdin.read(65536)
            except asyncssh.TerminalSizeChanged as change:
                session.resize(change.width, change.height)
                continue
            except (asyncssh.BreakReceived, asyncssh.SignalReceived):
                continue
            if not data:
                return
            session.send(data.encode(encoding or "utf-8", errors or "strict") if isinstance(data, str) else data)

    pumping = asyncio.ensure_future(pump())
    try:
        status = await session.wait()
    finally:
        pumping.cancel()
        session.close()
    process.exit(status)
    return status


def _encoding(process: Any) -> tuple[str | None, str | None]:
    channel = getattr(process, "channel", None)
    get = getattr(channel, "get_encoding", None)
    if callable(get):
        enc, errors = get()
        return enc, errors
    return None, None


def _encode_for(process: Any, text: str) -> Any:
    enc, _ = _encoding(process)
    return text if enc else text.encode()
