"""Remote attach over SSH: the shell's REPL in each SSH session, like ``iex --remsh``.

A node started with ``--ssh-port P`` runs an asyncssh server on a thread of its
own, with its own event loop: key strokes, screen updates and Ctrl-C of every
session are handled there, so a session stays responsive even while the node's
loop is busy — which is what lets Ctrl-C stop an input that never yields. Each
session evaluates on the node's loop, in a pymesh process of its own (its own
``self()`` and mailbox); closing a session never stops the node.

Who may log in is :class:`AuthPolicy`, kept apart from the mechanism:

* public keys only — those in ``authorized_keys`` (``<user config dir>/pymesh/
  authorized_keys``, or ``--authorized-keys FILE``), re-read at each login so an
  edit applies at once; no password, no keyboard-interactive, no host-based, no
  GSS, no anonymous access;
* a peer address whose logins failed :attr:`AuthPolicy.max_failures` times within
  :attr:`AuthPolicy.window` seconds is offered no authentication method at all
  until the window has passed.

The host key is generated once (Ed25519) and kept in the user data dir.

``ssh -p P host 'EXPR'`` evaluates ``EXPR`` once and prints its value, exiting
0, or the error, exiting 1 — like ``pymesh rpc``. ``ssh -t -p P host observer``
opens the live pane (``pymesh.tui``) instead, as ``observer()`` does in a session.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import concurrent.futures
import contextvars
import itertools
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import asyncssh
import platformdirs
from prompt_toolkit.application.current import create_app_session
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output.vt100 import Vt100_Output

import pymesh
from pymesh import Node

from ._eval import Evaluator, Outcome
from ._namespace import session_namespace
from ._output import Sink
from ._repl import Repl, ThreadBackend

__all__ = ["AuthPolicy", "SshServer", "default_authorized_keys", "default_host_key"]

log = logging.getLogger("pymesh.shell.ssh")


def default_authorized_keys() -> Path:
    """``<user config dir>/pymesh/authorized_keys``."""
    return Path(platformdirs.user_config_dir("pymesh")) / "authorized_keys"


def default_host_key() -> Path:
    """``<user data dir>/pymesh/ssh_host_ed25519_key``."""
    return Path(platformdirs.user_data_dir("pymesh")) / "ssh_host_ed25519_key"


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """The host key at ``path``, generated (mode 0600) the first time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        key = asyncssh.generate_private_key("ssh-ed25519", comment="pymesh host key")
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
        log.info("generated the SSH host key %s", path)
        return key
    for _ in range(50):  # another node may be writing it right now
        try:
            return asyncssh.read_private_key(str(path))
        except (asyncssh.KeyImportError, OSError, ValueError):
            time.sleep(0.05)
    return asyncssh.read_private_key(str(path))


class AuthPolicy:
    """Who may open a session (see the module doc). Thread-safe enough for one SSH loop."""

    max_failures = 10
    window = 60.0
    #: Addresses with recent failures remembered at most (the oldest go first).
    max_addresses = 4096

    def __init__(self, authorized_keys: Path) -> None:
        self.path = authorized_keys
        self._failures: dict[str, collections.deque[float]] = {}

    def authorized_keys(self) -> asyncssh.SSHAuthorizedKeys | None:
        """The keys allowed now, or None (nobody may log in)."""
        try:
            return asyncssh.read_authorized_keys(str(self.path))
        except FileNotFoundError:
            log.warning("SSH login refused: no %s (add a public key there to allow it)", self.path)
        except (OSError, ValueError, asyncssh.KeyImportError) as e:
            log.warning("SSH login refused: cannot read %s: %s", self.path, e)
        return None

    def _recent(self, addr: str) -> collections.deque[float]:
        """``addr``'s failures within the window (an address with none is forgotten)."""
        q = self._failures.get(addr)
        if q is None:
            return collections.deque()
        cutoff = time.monotonic() - self.window
        while q and q[0] < cutoff:
            q.popleft()
        if not q:
            del self._failures[addr]
        return q

    def blocked(self, addr: str) -> bool:
        return len(self._recent(addr)) >= self.max_failures

    def failed(self, addr: str) -> None:
        q = self._recent(addr)
        if addr not in self._failures:
            if len(self._failures) >= self.max_addresses:
                cutoff = time.monotonic() - self.window
                for old in [a for a, fq in self._failures.items() if not fq or fq[-1] < cutoff]:
                    del self._failures[old]
                while len(self._failures) >= self.max_addresses:
                    del self._failures[next(iter(self._failures))]  # the longest-known goes
            self._failures[addr] = q
        q.append(time.monotonic())
        if len(q) == self.max_failures:
            log.warning("SSH: %d failed logins from %s; refusing it for %gs", len(q), addr, self.window)


class _Server(asyncssh.SSHServer):
    """One SSH connection's policy: public keys from the policy, nothing else."""

    def __init__(self, owner: SshServer) -> None:
        self.owner = owner
        self.conn: asyncssh.SSHServerConnection | None = None
        self.addr = "?"
        self.username = ""
        self.authenticated = False
        self.blocked = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername")
        self.addr = str(peer[0]) if peer else "?"
        self.owner.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.owner.connections.discard(self.conn)
        if not self.authenticated:
            self.owner.policy.failed(self.addr)

    def begin_auth(self, username: str) -> bool:
        self.username = username
        self.blocked = self.owner.policy.blocked(self.addr)
        if not self.blocked:
            keys = self.owner.policy.authorized_keys()
            if keys is not None and self.conn is not None:
                self.conn.set_authorized_keys(keys)
        return True  # authentication is always required

    def auth_completed(self) -> None:
        self.authenticated = True
        log.info("SSH: %s logged in from %s", self.username, self.addr)

    def public_key_auth_supported(self) -> bool:
        return not self.blocked

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return False  # only keys in authorized_keys (checked by asyncssh) get in

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def session_requested(self) -> _Session:
        return _Session(self.owner, self.username, self.addr)


class _ChannelStdout:
    """A file-like object writing to the SSH channel, for prompt_toolkit's output."""

    def __init__(self, session: _Session) -> None:
        self.session = session

    def write(self, data: str) -> int:
        chan = self.session.chan
        if chan is not None and not self.session.closed:
            try:
                chan.write(data.replace("\n", "\r\n") if self.session.pty else data)
            except (BrokenPipeError, OSError, asyncssh.Error):
                pass
        return len(data)

    def isatty(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    @property
    def encoding(self) -> str:
        return "utf-8"


class _Session(asyncssh.SSHServerSession):  # type: ignore[type-arg]
    """One SSH session: a REPL (with a terminal) or a single evaluation (without)."""

    def __init__(self, owner: SshServer, username: str, addr: str) -> None:
        self.owner = owner
        self.username = username
        self.addr = addr
        self.chan: Any = None
        self.pty = False
        self.closed = False
        self.command: str | None = None
        self.stdout = _ChannelStdout(self)
        self.backend: ThreadBackend | None = None
        self.input: PipeInput | None = None
        self.app_session: Any = None
        self.task: asyncio.Task[None] | None = None
        self.takeover: Any = None  # while the pane runs, the keys are its

    def connection_made(self, chan: Any) -> None:
        self.chan = chan

    def pty_requested(self, term_type: str, term_size: Any, term_modes: Any) -> bool:
        self.pty = True
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self.command = command
        return True

    def session_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self.command is not None and self.command.strip() in ("observer", "tui"):
            self.task = loop.create_task(self._pane_command())
        elif self.command is not None:
            self.task = loop.create_task(self._run_command(self.command))
        else:
            self.task = loop.create_task(self._interact())
        self.owner.sessions.add(self.task)
        self.task.add_done_callback(self.owner.sessions.discard)

    def _size(self) -> Size:
        if self.chan is None:
            return Size(rows=24, columns=80)
        width, height, _, _ = self.chan.get_terminal_size()
        return Size(rows=height or 24, columns=width or 80)

    async def _interact(self) -> None:
        term = self.chan.get_terminal_type() or "xterm"
        output = Vt100_Output(self.stdout, self._size, term=term, enable_cpr=False)  # type: ignore[arg-type]
        try:
            with create_pipe_input() as inp:
                self.input = inp
                with create_app_session(input=inp, output=output) as app_session:
                    self.app_session = app_session
                    await self.owner.run_repl(self)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("SSH session of %s from %s failed", self.username, self.addr)
        finally:
            self.input = None
            self._close()

    async def _run_command(self, command: str) -> None:
        status = 1
        try:
            outcome = await self.owner.run_once(self, command)
            for note in outcome.notes:
                self.stdout.write(note + "\n")
            if outcome.kind == "value" or outcome.text:
                self.stdout.write(outcome.text + "\n")
            status = 0 if outcome.kind in ("value", "none", "exit") else 1
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("SSH command of %s from %s failed", self.username, self.addr)
        finally:
            if self.chan is not None and not self.closed:
                self.chan.exit(status)
            self.closed = True

    async def run_pane(self, node: str | None = None) -> int:
        """The live pane on this session's terminal, until the user quits it."""
        if not self.pty:
            raise RuntimeError("the observer needs a terminal: connect with ssh -t")
        from pymesh.tui import serve_pty

        keys: asyncio.Queue[bytes] = asyncio.Queue()
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        chan = self.chan

        def draw(data: bytes) -> None:
            if not self.closed:
                chan.write(decoder.decode(data))

        self.takeover = lambda text: keys.put_nowait(text.encode())
        try:
            term = chan.get_terminal_type() or "xterm-256color"
            size = self._size()
            # TODO(tui): serve_pty takes no resizes; the pane keeps the size it started with.
            return int(await serve_pty(keys.get, draw, node=node, size=(size.columns, size.rows), term=term))
        finally:
            self.takeover = None
            app = self.app_session.app if self.app_session is not None else None
            if app is not None:
                app.renderer.reset()

    async def _pane_command(self) -> None:
        status = 1
        try:
            status = await self.run_pane()
        except asyncio.CancelledError:
            pass
        except Exception as e:  # noqa: BLE001
            self.stdout.write(f"{type(e).__name__}: {e}\n")
        finally:
            if self.chan is not None and not self.closed:
                self.chan.exit(status)
            self.closed = True

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.chan is not None:
                self.chan.close()

    def data_received(self, data: str, datatype: Any) -> None:
        if self.takeover is not None:
            self.takeover(data)
            return
        backend = self.backend
        if backend is not None and backend.evaluating and "\x03" in data:
            backend.interrupt()
            data = data.replace("\x03", "")
        if data and self.input is not None:
            self.input.send_text(data)

    def break_received(self, msec: int) -> bool:
        if self.backend is not None:
            self.backend.interrupt()
        return True

    def signal_received(self, signal: str) -> None:
        if signal == "INT" and self.backend is not None:
            self.backend.interrupt()

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        app = self.app_session.app if self.app_session is not None else None
        if app is not None:
            app._on_resize()  # prompt_toolkit redraws for the new size

    def eof_received(self) -> bool:
        if self.input is not None:
            self.input.send_text("\x04")  # like Ctrl-D at the prompt
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.task is not None and not self.task.done():
            self.task.cancel()


class SshServer:
    """The SSH server of this node, on its own thread (see the module doc).

    ``node_loop`` is the node's event loop (where inputs are evaluated);
    ``epmd_port`` is for completing node names.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        authorized_keys: Path | None = None,
        host_key: Path | None = None,
        epmd_port: int | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.port = 0
        self.policy = AuthPolicy(authorized_keys or default_authorized_keys())
        self.host_key_path = host_key or default_host_key()
        self.epmd_port = epmd_port
        self.node_loop: asyncio.AbstractEventLoop | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connections: set[Any] = set()
        self.sessions: set[asyncio.Task[None]] = set()
        self._numbers = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._stop: asyncio.Event | None = None

    async def start(self) -> int:
        """Listen; return the port. Raises ``OSError`` when the port cannot be had."""
        self.node_loop = asyncio.get_running_loop()
        key = await self.node_loop.run_in_executor(None, load_or_create_host_key, self.host_key_path)
        if not self.policy.path.exists():
            log.warning("SSH: no %s yet; nobody can log in until a public key is added there", self.policy.path)
        self._thread = threading.Thread(target=self._main, args=(key,), name="pymesh-ssh", daemon=True)
        self._thread.start()
        self.port = await asyncio.wrap_future(self._ready)
        return self.port

    async def stop(self) -> None:
        """Close every session and stop listening (bounded: a few seconds at most)."""
        if self._thread is None:
            return
        loop, stop = self.loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass
        try:
            await asyncio.wait_for(asyncio.wrap_future(self._done), 10.0)
        except (TimeoutError, Exception):  # noqa: BLE001
            log.warning("SSH server did not stop in time")
        self._thread.join(timeout=1.0)
        self._thread = None

    # --- the SSH thread ---------------------------------------------------------------

    def _main(self, key: asyncssh.SSHKey) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(key))
        except BaseException as e:  # noqa: BLE001
            if not self._ready.done():
                self._ready.set_exception(e)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                if not self._done.done():
                    self._done.set_result(None)

    async def _serve(self, key: asyncssh.SSHKey) -> None:
        self._stop = asyncio.Event()
        server = await asyncssh.create_server(
            lambda: _Server(self),
            self.host,
            self.requested_port,
            server_host_keys=[key],
            encoding="utf-8",
            line_editor=False,
            gss_host=None,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            login_timeout=30,
            keepalive_interval=30,
            keepalive_count_max=4,
            server_version="pymesh",
            reuse_address=True,
        )
        self._ready.set_result(server.sockets[0].getsockname()[1])
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(self.sessions):
                task.cancel()
            if self.sessions:
                await asyncio.wait(list(self.sessions), timeout=5.0)
            for conn in list(self.connections):
                conn.close()
            try:
                await asyncio.wait_for(server.wait_closed(), 2.0)
            except TimeoutError:
                pass

    async def _on_node(self, coro: Any, timeout: float | None = None) -> Any:
        assert self.node_loop is not None
        fut = asyncio.run_coroutine_threadsafe(coro, self.node_loop)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), timeout)
        except BaseException:
            fut.cancel()
            raise

    async def _open_evaluator(self, session: _Session, sink: Sink) -> Evaluator:
        """On the node's loop: the session's evaluator and shell process."""
        n = next(self._numbers)
        ns: dict[str, Any] = {}
        ev = Evaluator(ns, name=f"ssh{n}", sink=sink, label=f"shell (ssh {session.username}@{session.addr})")
        ssh_loop = self.loop
        assert ssh_loop is not None

        async def observer(node: str | None = None) -> None:
            """Open the live pane (``pymesh.tui``) on this session's terminal; quit it with ``q``."""
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(session.run_pane(node), ssh_loop))

        ns.update(session_namespace(ev.value, remote=True, observer=observer))
        await ev.open()
        return ev

    async def run_repl(self, session: _Session) -> None:
        """The REPL of one interactive session (on the SSH thread)."""
        loop = asyncio.get_running_loop()
        sink = Sink(loop, session.stdout.write, context=contextvars.copy_context())
        evaluator = await self._on_node(self._open_evaluator(session, sink), 10.0)
        backend = ThreadBackend(evaluator, self.node_loop)  # type: ignore[arg-type]
        session.backend = backend
        banner = (
            f"pymesh {pymesh.__version__} — attached to {Node.self()} over SSH "
            f"(Ctrl-D or exit() detaches; the node keeps running; h() for help)"
        )
        try:
            await Repl(backend, sink, banner=banner, epmd_port=self.epmd_port).run()
        finally:
            sink.closed = True
            session.backend = None
            try:
                await asyncio.shield(self._on_node(evaluator.close(), 10.0))
            except BaseException as e:  # noqa: BLE001 - the node cleans up what is left
                log.debug("closing the session's evaluator: %r", e)

    async def run_once(self, session: _Session, command: str) -> Outcome:
        """``ssh host EXPR``: evaluate once, in a shell process of its own."""
        loop = asyncio.get_running_loop()
        sink = Sink(loop, session.stdout.write)
        evaluator = await self._on_node(self._open_evaluator(session, sink), 10.0)
        backend = ThreadBackend(evaluator, self.node_loop)  # type: ignore[arg-type]
        session.backend = backend
        try:
            outcome: Outcome = await backend.evaluate(command.strip() + "\n", 1)
            return outcome
        finally:
            sink.closed = True
            try:
                await asyncio.shield(self._on_node(evaluator.close(), 10.0))
            except BaseException as e:  # noqa: BLE001
                log.debug("closing the command's evaluator: %r", e)
