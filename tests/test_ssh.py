"""Remote attach over SSH, driven with real clients: ``pymesh remsh`` and OpenSSH's ``ssh``.

A node started with ``--ssh-port`` (by ``pymesh run`` and by ``pymesh shell``)
serves its shell over SSH to the keys in ``authorized_keys``, and to nothing
else. The clients run in tmux panes, so what is checked is what a user sees.
"""

from __future__ import annotations

import asyncio
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from conftest import require_binary
from shell_helpers import ShellEnv, Tmux, eventually, node, stop_process

pytestmark = pytest.mark.timeout(120)


class SshWorld:
    def __init__(self, env: ShellEnv) -> None:
        self.env = env
        keys = env.root / "keys"
        keys.mkdir()
        self.key = keys / "id_good"
        self.wrong = keys / "id_wrong"
        for path in (self.key, self.wrong):
            k = asyncssh.generate_private_key("ssh-ed25519")
            k.write_private_key(str(path))
            k.write_public_key(str(path) + ".pub")
            path.chmod(0o600)
        env.pymesh_dir.mkdir(parents=True, exist_ok=True)
        (env.pymesh_dir / "authorized_keys").write_text(Path(str(self.key) + ".pub").read_text())
        self.proc, lines = env.start_node("--sname", "s", "--ssh-port", "0")
        m = re.search(r"ssh listening on 127\.0\.0\.1 port (\d+)", "\n".join(lines))
        assert m, lines
        self.port = int(m.group(1))

    def ssh_argv(self, *extra: str, key: Path | None = None, port: int | None = None) -> list[str]:
        return [
            require_binary("ssh"),
            "-p", str(port or self.port),
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR",
            "-o", "IdentitiesOnly=yes",
            "-i", str(key or self.key),
            *extra,
        ]

    def ssh(self, *args: str, key: Path | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.ssh_argv(key=key) + ["127.0.0.1", *args],
            env=self.env.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshWorld]:
    env = ShellEnv(tmp_path_factory.mktemp("ssh"))
    try:
        yield SshWorld(env)
    finally:
        env.close()


@pytest.fixture
def tmux(world: SshWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tmux]:
    require_binary("tmux")
    t = Tmux(tmp_path_factory.mktemp("tmux"), world.env.env)
    try:
        yield t
    finally:
        t.close()



def run(coro: Any, timeout: float = 30.0) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def ssh_exec(port: int, command: str, *, key: Path | None = None, password: str | None = None) -> tuple[int, str, Any]:
    """Log in with asyncssh (a key or a password, nothing else); run ``command``."""
    async with asyncssh.connect(
        "127.0.0.1",
        port,
        username="tester",
        known_hosts=None,
        agent_path=None,
        client_keys=[str(key)] if key else None,
        password=password,
        kbdint_auth=False,
        gss_host=None,
        connect_timeout=10,
    ) as conn:
        result = await conn.run(command, check=False)
        return int(result.exit_status or 0), str(result.stdout), conn.get_server_host_key()


def remsh(tmux: Tmux, world: SshWorld, target: str = "s", *extra: str) -> Any:
    pane = tmux.open([sys.executable, "-m", "pymesh", "remsh", node(target), "-i", str(world.key), *extra])
    pane.wait_prompt(1, timeout=20)
    return pane


def openssh(tmux: Tmux, world: SshWorld) -> Any:
    pane = tmux.open(world.ssh_argv("-tt", "127.0.0.1"))
    pane.wait_prompt(1, timeout=20)
    return pane


def test_sessions_are_processes_of_the_node(world: SshWorld, tmux: Tmux) -> None:
    r = remsh(tmux, world)
    o = openssh(tmux, world)
    assert f"pymesh({node('s')})1>" in r.screen() and f"pymesh({node('s')})1>" in o.screen()
    assert "attached to" in r.screen()

    one = r.run('register("one", self()); self()')
    two = o.run("self()")
    assert one.startswith(f"#PID<{node('s')}.") and two.startswith(f"#PID<{node('s')}.") and one != two

    # messages between the two sessions' processes
    assert o.run('send("one", "from two") and None') == ""
    assert r.run("flush()") == "'from two'"

    # print() goes to the session that runs it, and to the session of a process it spawned
    assert o.run('print("only here")') == "only here"
    assert "only here" not in r.screen()
    o.run_block("async def later():\n    await asyncio.sleep(0.3)\n    print('late hello')\n")
    assert o.run("spawn(later) and None") == ""
    o.wait_for("late hello")
    assert "late hello" not in r.screen()

    # closing one session leaves the node and the other session alone
    o.type("exit()")
    o.keys("Enter")
    o.wait_exit()
    assert r.run("1 + 1") == "2"
    assert world.env.rpc(node("s"), 'whereis("one") is not None') == "True"
    r.keys("C-d")
    assert r.wait_exit() == 0
    eventually(lambda: world.env.rpc(node("s"), 'whereis("one")') == "None", "the session's process ends")

    # the host key was made once, private; remsh remembered it
    host_key = world.env.data / "pymesh" / "ssh_host_ed25519_key"
    assert stat.S_IMODE(host_key.stat().st_mode) == 0o600
    assert f"[127.0.0.1]:{world.port} ssh-ed25519 " in (world.env.data / "pymesh" / "known_hosts").read_text()


def test_a_command_without_terminal_evaluates_once(world: SshWorld) -> None:
    done = world.ssh("Node.self()")
    assert (done.returncode, done.stdout.strip()) == (0, repr(node("s"))), done
    done = world.ssh("1/0")
    assert done.returncode == 1 and "ZeroDivisionError" in done.stdout, done
    # pymesh run installed the shell's namespace for rpc too
    assert "processes on" in world.env.rpc(node("s"), "i()")


def test_only_authorized_keys_get_in(world: SshWorld, tmux: Tmux) -> None:
    done = world.ssh("Node.self()", key=world.wrong)
    assert done.returncode == 255 and "Permission denied (publickey)" in done.stderr, done
    done = subprocess.run(
        [
            require_binary("ssh"), "-p", str(world.port), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no",
            "-o", "PreferredAuthentications=password,keyboard-interactive", "127.0.0.1", "Node.self()",
        ],
        env=world.env.env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20, check=False,
    )
    assert done.returncode == 255 and "Permission denied (publickey)" in done.stderr, done
    with pytest.raises(asyncssh.PermissionDenied):
        run(ssh_exec(world.port, "Node.self()", password="hunter2"))
    with pytest.raises(asyncssh.PermissionDenied):
        run(ssh_exec(world.port, "Node.self()", key=world.wrong))
    done = world.env.pymesh("remsh", node("s"), "-i", str(world.wrong))
    assert done.returncode == 1 and "refused the key" in done.stderr, done
    # the right key still gets in
    assert run(ssh_exec(world.port, "1 + 1", key=world.key))[:2] == (0, "2\n")


def test_ctrl_c_and_disconnects_mid_evaluation(world: SshWorld, tmux: Tmux) -> None:
    o = openssh(tmux, world)
    assert "interrupted" in o.interrupt_after("await asyncio.sleep(100)")
    assert "interrupted" in o.interrupt_after("while True: pass")
    assert o.run("Node.alive()") == "True"

    before = world.env.rpc(node("s"), "len(processes())")
    # a client that goes away mid-input, while the input waits and while it spins
    for source in ("await asyncio.sleep(100)", "while True: pass"):
        gone = openssh(tmux, world)
        gone.type(source)
        gone.keys("Enter")
        time.sleep(0.5)
        from shell_helpers import kill

        kill(gone.pid)
        eventually(lambda: world.env.rpc(node("s"), "1 + 1") == "2", "the node answers again", timeout=20)
    eventually(lambda: world.env.rpc(node("s"), "len(processes())") == before, "the sessions' processes end")
    assert o.run("Node.self()") == repr(node("s"))


def test_terminal_resize(world: SshWorld, tmux: Tmux) -> None:
    r = remsh(tmux, world)
    assert r.run("x = 20") == ""
    for width, height in ((60, 15), (200, 60)):
        r.resize(width, height)
        time.sleep(0.3)
        assert r.run("x + 1") == "21"


def test_rate_limit_custom_keys_and_one_host_key(world: SshWorld, tmux: Tmux) -> None:
    keys = world.env.root / "other_keys"
    keys.write_text(Path(str(world.key) + ".pub").read_text())
    proc, lines = world.env.start_node("--sname", "s2", "--ssh-port", "0", "--authorized-keys", str(keys))
    try:
        port = int(re.search(r"port (\d+)", lines[0]).group(1))  # type: ignore[union-attr]
        status, out, host_key = run(ssh_exec(port, "Node.self()", key=world.key))
        assert (status, out.strip()) == (0, repr(node("s2")))
        _, _, first_host_key = run(ssh_exec(world.port, "1", key=world.key))
        assert host_key.get_fingerprint() == first_host_key.get_fingerprint()  # one key per user

        async def attempts() -> None:
            for _ in range(10):
                with pytest.raises(asyncssh.PermissionDenied):
                    await ssh_exec(port, "1", key=world.wrong)

        run(attempts())
        with pytest.raises((asyncssh.PermissionDenied, asyncssh.DisconnectError)):
            run(ssh_exec(port, "1", key=world.key))
    finally:
        world.env.procs.remove(proc)
        stop_process(proc)


def test_shell_with_ssh_port_and_remsh_by_advertised_port(world: SshWorld, tmux: Tmux) -> None:
    local = tmux.shell("--sname", "sh", "--ssh-port", "0")
    assert re.search(r"ssh listening on 127\.0\.0\.1 port \d+", local.screen())
    me = local.run("self()")
    r = remsh(tmux, world, "sh")
    assert r.run("Node.self()") == repr(node("sh"))
    assert r.run("self()") != me
    assert r.run('register("remote", self()) and None') == ""
    assert local.run('whereis("remote") is not None') == "True"
    r.keys("C-d")
    assert r.wait_exit() == 0
    assert local.run("1 + 2") == "3"


def test_the_failure_table_forgets_quiet_addresses_and_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymesh.shell._ssh import AuthPolicy

    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    policy = AuthPolicy(tmp_path / "authorized_keys")
    for _ in range(policy.max_failures):
        policy.failed("10.0.0.1")
    assert policy.blocked("10.0.0.1") and not policy.blocked("10.0.0.2")
    assert list(policy._failures) == ["10.0.0.1"]  # asking about an address stores nothing
    now[0] += policy.window + 1
    assert not policy.blocked("10.0.0.1") and policy._failures == {}  # its window passed: forgotten
    policy.max_addresses = 3
    for i in range(10):  # a scan from many addresses keeps at most max_addresses of them
        policy.failed(f"10.0.1.{i}")
        now[0] += 0.01
    assert list(policy._failures) == ["10.0.1.7", "10.0.1.8", "10.0.1.9"]
