"""Driving ``pymesh shell`` as a user does: real terminals (tmux panes), real processes.

* :class:`ShellEnv` — a private world for one test module: HOME and the XDG dirs in
  a temporary directory (history, keys, cookie never touch the real home), a
  private port mapper on a free port (``PYMESH_EPMD_PORT``), one cookie.
* :class:`Tmux` — a private tmux server; :meth:`Tmux.open` runs a command in a new
  pane. :class:`Pane` types into it and reads its screen (``capture-pane``, so what
  is asserted is what a user would see).

Every process is stopped by its pid, every wait is bounded, only loopback is used.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HOST = socket.gethostname().split(".")[0]
COOKIE = "shell-test-cookie"

PROMPT = re.compile(r"^pymesh\((?:(?P<node>[^()\s]+@[^()\s]+)\)(?P<n>\d+)|(?P<m>\d+)\))> ?", re.MULTILINE)
_CONTINUATION = re.compile(r"^\s+\.\.\. ?")


def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(0.1)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node(name: str) -> str:
    return f"{name}@{HOST}"


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; by pid, always reaped."""
    if proc.poll() is None:
        kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            kill(proc.pid)
            proc.wait(5)


class ShellEnv:
    """Temporary home, XDG dirs and port mapper (see the module doc)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.config = root / "config"
        self.data = root / "data"
        self.state = root / "state"
        self.cache = root / "cache"
        for d in (self.home, self.config, self.data, self.state, self.cache):
            d.mkdir(parents=True, exist_ok=True)
        self.epmd_port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PYMESH_", "XDG_", "ERL_")) or k == "PYMESH_LOOP"},
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.config),
            "XDG_DATA_HOME": str(self.data),
            "XDG_STATE_HOME": str(self.state),
            "XDG_CACHE_HOME": str(self.cache),
            "PYMESH_EPMD_PORT": str(self.epmd_port),
            "PYMESH_COOKIE": COOKIE,
            "PYTHONUNBUFFERED": "1",
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.epmd = self.spawn([sys.executable, "-m", "pymesh", "epmd", "--port", str(self.epmd_port)])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.epmd_port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @property
    def pymesh_dir(self) -> Path:
        return self.config / "pymesh"

    def spawn(self, argv: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(list(argv), env=self.env, stdin=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def start_node(self, *args: str, timeout: float = 20.0) -> tuple[subprocess.Popen[bytes], list[str]]:
        """``pymesh run ARGS``; returns the process and its lines up to ``node ... ready``."""
        proc = self.spawn(
            [sys.executable, "-m", "pymesh", "run", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        os.set_blocking(proc.stdout.fileno(), False)
        buf = b""
        while time.monotonic() < deadline:
            chunk = proc.stdout.read()
            if chunk:
                buf += chunk
                *done, buf = buf.split(b"\n")
                lines += [x.decode() for x in done]
                if any(x.startswith("node ") and " ready on port " in x for x in lines):
                    return proc, lines
            elif proc.poll() is not None:
                break
            time.sleep(0.05)
        stop_process(proc)
        raise AssertionError(f"pymesh run {' '.join(args)} did not get ready: {lines + [buf.decode()]}")

    def pymesh(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``pymesh ARGS`` to completion (bounded)."""
        return subprocess.run(
            [sys.executable, "-m", "pymesh", *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def rpc(self, target: str, expr: str, timeout: float = 10.0) -> str:
        """``pymesh rpc``; the printed value. Fails the test on a non-zero exit."""
        done = self.pymesh("rpc", target, expr, "--timeout", str(timeout), timeout=timeout + 15)
        assert done.returncode == 0, f"pymesh rpc {target} {expr!r}: {done.returncode} {done.stderr}"
        return done.stdout.strip()

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)


# The pane runs this wrapper, which runs the command and writes its pid and exit
# status to files: tmux's own record of the status is not reliable everywhere
# (under gVisor its server sometimes never reaps the pane's process).
_RUNNER = """\
import os, signal, subprocess, sys
status, pidfile, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
signal.signal(signal.SIGINT, lambda *_: None)  # the terminal's Ctrl-C is the command's
signal.signal(signal.SIGHUP, lambda *_: None)
child = subprocess.Popen(argv)
with open(pidfile + ".tmp", "w") as f:
    f.write(str(child.pid))
os.replace(pidfile + ".tmp", pidfile)
code = child.wait()
with open(status + ".tmp", "w") as f:
    f.write(str(code))
os.replace(status + ".tmp", status)
"""


class Pane:
    """One tmux pane running one command; ``pid`` is the command's."""

    def __init__(self, tmux: Tmux, target: str, wrapper_pid: int) -> None:
        self.tmux = tmux
        self.target = target
        self.wrapper_pid = wrapper_pid
        self.status_file = tmux.root / f"{target}.status"
        pid_file = tmux.root / f"{target}.pid"
        deadline = time.monotonic() + 15
        while not pid_file.exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"{target}: the command did not start:\n{self.screen()}")
            time.sleep(0.02)
        self.pid = int(pid_file.read_text())

    # --- input ----------------------------------------------------------------------------

    def keys(self, *keys: str) -> None:
        """tmux key names: ``Enter``, ``C-c``, ``C-d``, ``Up``, ``Tab``."""
        self.tmux.cmd("send-keys", "-t", self.target, *keys)

    def type(self, text: str) -> None:
        self.tmux.cmd("send-keys", "-t", self.target, "-l", text)

    def paste(self, text: str) -> None:
        """Paste ``text`` as a terminal does (bracketed paste)."""
        path = self.tmux.root / f"paste-{self.target}.txt"
        path.write_text(text)
        self.tmux.cmd("load-buffer", "-b", "t", str(path))
        self.tmux.cmd("paste-buffer", "-p", "-d", "-b", "t", "-t", self.target)

    # --- output ---------------------------------------------------------------------------

    def screen(self) -> str:
        out = self.tmux.cmd("capture-pane", "-p", "-J", "-S", "-", "-t", self.target)
        return "\n".join(line.rstrip() for line in out.splitlines())

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 15.0) -> re.Match[str]:
        rx = re.compile(pattern, re.MULTILINE) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            m = rx.search(text)
            if m:
                return m
            if time.monotonic() > deadline:
                tail = "\n".join(text.splitlines()[-40:])
                raise AssertionError(f"no {rx.pattern!r} on the screen after {timeout}s; it ends with:\n{tail}")
            time.sleep(0.05)

    def prompts(self, text: str | None = None) -> list[re.Match[str]]:
        return list(PROMPT.finditer(self.screen() if text is None else text))

    def last_prompt(self) -> int:
        found = self.prompts()
        assert found, "no prompt on the screen"
        m = found[-1]
        return int(m.group("n") or m.group("m"))

    def wait_prompt(self, n: int, timeout: float = 15.0) -> str:
        """Wait for prompt number ``n``; return the screen."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if any(int(m.group("n") or m.group("m")) == n for m in PROMPT.finditer(text)):
                return text
            if time.monotonic() > deadline:
                tail = "\n".join(text.splitlines()[-40:])
                raise AssertionError(f"no prompt {n} after {timeout}s; the screen ends with:\n{tail}")
            time.sleep(0.05)

    def output_after(self, n: int, text: str) -> str:
        """What was printed after input ``n`` and before prompt ``n + 1``."""
        lines = text.split("\n")
        start = end = None
        for i, line in enumerate(lines):
            m = PROMPT.match(line)
            if m:
                k = int(m.group("n") or m.group("m"))
                if k == n:
                    start, end = i, None
                elif k == n + 1 and start is not None and end is None:
                    end = i
        assert start is not None, f"no prompt {n} on the screen"
        body = lines[start + 1 : end]
        while body and _CONTINUATION.match(body[0]):
            body.pop(0)
        return "\n".join(body).strip("\n")

    def run(self, source: str, timeout: float = 15.0) -> str:
        """Type ``source`` (one line) and Enter; return its output."""
        n = self.last_prompt()
        self.type(source)
        self.keys("Enter")
        return self.output_after(n, self.wait_prompt(n + 1, timeout))

    def run_block(self, source: str, timeout: float = 15.0) -> str:
        """Paste a multi-line ``source`` and Enter; return its output."""
        n = self.last_prompt()
        self.paste(source.rstrip("\n") + "\n")
        time.sleep(0.1)
        self.keys("Enter")
        return self.output_after(n, self.wait_prompt(n + 1, timeout))

    def interrupt_after(self, source: str, delay: float = 1.0, timeout: float = 15.0) -> str:
        """Run ``source``, press Ctrl-C after ``delay`` s; return what it printed."""
        n = self.last_prompt()
        self.type(source)
        self.keys("Enter")
        time.sleep(delay)
        self.keys("C-c")
        return self.output_after(n, self.wait_prompt(n + 1, timeout))

    # --- the process ------------------------------------------------------------------------

    def status(self) -> int | None:
        """The command's exit status once it ended (negative: killed by that signal), else None."""
        try:
            return int(self.status_file.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def wait_exit(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while (code := self.status()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.target} still running after {timeout}s:\n{self.screen()[-2000:]}")
            time.sleep(0.05)
        return code

    def resize(self, width: int, height: int) -> None:
        self.tmux.cmd("resize-window", "-t", self.target, "-x", str(width), "-y", str(height))


class Tmux:
    """A private tmux server whose panes keep their last screen after the command ends."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.socket = root / "tmux.sock"
        self.conf = root / "tmux.conf"
        self.conf.write_text("set -g remain-on-exit on\nset -g history-limit 200000\nset -g status off\n")
        self.runner = root / "runner.py"
        self.runner.write_text(_RUNNER)
        self.panes: list[Pane] = []
        self.server_pid: int | None = None
        self._count = 0

    def cmd(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), "-f", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def open(self, argv: Sequence[str], *, width: int = 160, height: int = 50, env: dict[str, str] | None = None) -> Pane:
        """Run ``argv`` (with the test environment) in a new pane."""
        self._count += 1
        name = f"p{self._count}"
        environment = {**self.env, "TERM": "screen-256color", **(env or {})}
        assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in environment.items())
        wrapped = [sys.executable, str(self.runner), str(self.root / f"{name}.status"), str(self.root / f"{name}.pid"), *argv]
        command = f"exec env -i {assignments} {shlex.join(wrapped)}"
        pid = int(
            self.cmd(
                "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), "-P", "-F", "#{pane_pid}", command
            ).strip()
        )
        if self.server_pid is None:
            self.server_pid = int(self.cmd("display", "-p", "-t", name, "#{pid}").strip())
        pane = Pane(self, name, pid)
        self.panes.append(pane)
        return pane

    def shell(self, *args: str, **kw: object) -> Pane:
        """``pymesh shell ARGS`` in a new pane, once its first prompt is up."""
        pane = self.open([sys.executable, "-m", "pymesh", "shell", *args], **kw)  # type: ignore[arg-type]
        pane.wait_prompt(1, timeout=20)
        return pane

    @staticmethod
    def _running(pane: Pane) -> bool:
        return pane.status() is None

    def close(self) -> None:
        """SIGTERM what still runs (shells leave gracefully), SIGKILL what lingers, then the server."""
        if self.server_pid is None:
            return
        for pane in self.panes:
            if self._running(pane):
                kill(pane.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for pane in self.panes:
            while self._running(pane) and time.monotonic() < deadline:
                time.sleep(0.05)
            kill(pane.pid)
            kill(pane.wrapper_pid)
        kill(self.server_pid)
