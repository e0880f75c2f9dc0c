"""``pymesh remsh NODE@HOST``: attach this terminal to a node's shell over SSH.

Like ``iex --remsh``, but over SSH: the node must run with ``--ssh-port``. The
port is found by asking HOST's port mapper for NODE (a node with an SSH server
advertises ``ssh=<port>`` in its registration), unless ``--ssh-port`` says it.
The local terminal is passed through as it is: raw mode, its size, and its
resizes; Ctrl-C goes to the node (it cancels the running input there).

The node's host key is trusted on first use and remembered in
``<user data dir>/pymesh/known_hosts`` (keys in ``~/.ssh/known_hosts`` are
trusted too); a changed key is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import asyncssh
import platformdirs

import pymesh

from pymesh.epmd import port_please

from ._host import parse_ssh_advertisement

__all__ = ["known_hosts_path", "run_remsh"]


def known_hosts_path() -> Path:
    return Path(platformdirs.user_data_dir("pymesh")) / "known_hosts"


class _RemshError(Exception):
    pass


class _TrustOnFirstUse(asyncssh.SSHClient):
    """Host keys: remembered the first time, refused when they change."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.changed: str | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        entry = f"[{host}]:{port}"
        data = " ".join(key.export_public_key("openssh").decode().split()[:2])
        known: dict[str, str] = {}
        if self.store.exists():
            for line in self.store.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3:
                    known[parts[0]] = " ".join(parts[1:3])
        if entry in known:
            if known[entry] == data:
                return True
            self.changed = entry
            return False
        self.store.parent.mkdir(parents=True, exist_ok=True)
        with self.store.open("a") as f:
            f.write(f"{entry} {data}\n")
        os.chmod(self.store, 0o600)
        print(f"pymesh remsh: remembered the host key of {entry} ({key.get_fingerprint()}) in {self.store}", file=sys.stderr)
        return True


class _Terminal(asyncssh.SSHClientSession):  # type: ignore[type-arg]
    def data_received(self, data: bytes, datatype: Any) -> None:
        out = sys.stderr.buffer if datatype == asyncssh.EXTENDED_DATA_STDERR else sys.stdout.buffer
        out.write(data)
        out.flush()


def _address(host: str) -> str:
    local = {socket.gethostname(), socket.gethostname().split(".")[0], socket.getfqdn(), "localhost"}
    return "127.0.0.1" if host in local else host


async def _find_port(args: argparse.Namespace, short: str, addr: str) -> int:
    if args.ssh_port is not None:
        return int(args.ssh_port)
    entry = await port_please(short, host=addr, epmd_port=args.epmd_port)
    if entry is None:
        raise _RemshError(f"no node {short!r} is registered with the port mapper on {addr}")
    port = parse_ssh_advertisement(entry.extra)
    if port is None:
        raise _RemshError(f"{args.node} does not advertise an SSH port: start it with --ssh-port P, or pass --ssh-port")
    return port


def _terminal_size(fd: int) -> tuple[int, int]:
    """The terminal's own size (not $COLUMNS/$LINES, which do not follow resizes)."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        size = shutil.get_terminal_size()
    return size.columns, size.lines


async def _attach(conn: asyncssh.SSHClientConnection) -> int:
    fd = sys.stdin.fileno()
    tty_in = os.isatty(fd)
    cols, rows = _terminal_size(fd)
    chan, _ = await conn.create_session(
        _Terminal,
        term_type=os.environ.get("TERM", "xterm-256color") if tty_in else None,
        term_size=(cols, rows) if tty_in else None,
        encoding=None,
    )
    loop = asyncio.get_running_loop()

    def on_input() -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if data:
            chan.write(data)
        else:
            loop.remove_reader(fd)
            chan.write_eof()

    def on_resize() -> None:
        chan.change_terminal_size(*_terminal_size(fd))

    saved = None
    if tty_in:
        import termios
        import tty

        saved = termios.tcgetattr(fd)
        tty.setraw(fd)
    loop.add_reader(fd, on_input)
    loop.add_signal_handler(signal.SIGWINCH, on_resize)
    try:
        await chan.wait_closed()
    finally:
        loop.remove_signal_handler(signal.SIGWINCH)
        loop.remove_reader(fd)
        if saved is not None:
            import termios

            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    status = chan.get_exit_status()
    return 0 if status is None or status < 0 else int(status)


async def _remsh(args: argparse.Namespace) -> int:
    short, _, host = args.node.partition("@")
    host = host or socket.gethostname().split(".")[0]
    addr = _address(host)
    port = await _find_port(args, short, addr)
    client = _TrustOnFirstUse(known_hosts_path())
    options: dict[str, Any] = {
        "port": port,
        "username": args.user or getpass.getuser(),
        "client_factory": lambda: client,
        "connect_timeout": args.timeout,
        "password": None,
        "kbdint_auth": False,
        "gss_host": None,
    }
    if args.identity:
        options["client_keys"] = args.identity
    try:
        conn = await asyncssh.connect(addr, **options)
    except asyncssh.PermissionDenied:
        raise _RemshError(
            f"{args.node} (ssh {addr} port {port}) refused the key: is its public half in the node's authorized_keys?"
        ) from None
    except asyncssh.HostKeyNotVerifiable:
        raise _RemshError(
            f"the host key of {client.changed or f'[{addr}]:{port}'} changed; if that is expected, "
            f"remove its line from {known_hosts_path()}"
        ) from None
    except (OSError, asyncssh.Error) as e:
        raise _RemshError(f"cannot connect to {args.node} (ssh {addr} port {port}): {e}") from None
    async with conn:
        status = await _attach(conn)
    return status


def run_remsh(args: argparse.Namespace) -> int:
    try:
        return int(pymesh.run(_remsh(args)))
    except _RemshError as e:
        print(f"pymesh remsh: {e}", file=sys.stderr)
        return 1
