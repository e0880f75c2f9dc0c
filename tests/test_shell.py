"""``pymesh shell`` driven as a user drives it: in real terminals (tmux panes).

Each test types into shells and reads their screens. The shells are real OS
processes with their own nodes, on a private port mapper, with HOME and the XDG
dirs in a temporary directory.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator

import pytest
from conftest import require_binary
from shell_helpers import ShellEnv, Tmux, eventually, node

pytestmark = pytest.mark.timeout(120)

ECHO = """\
async def echo():
    while True:
        frm, msg = await receive()
        send(frm, ("echo", msg))
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShellEnv]:
    world = ShellEnv(tmp_path_factory.mktemp("shell"))
    try:
        yield world
    finally:
        world.close()


@pytest.fixture
def tmux(env: ShellEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tmux]:
    require_binary("tmux")
    t = Tmux(tmp_path_factory.mktemp("tmux"), env.env)
    try:
        yield t
    finally:
        t.close()



def test_two_shells_connect_spawn_message_and_leave(env: ShellEnv, tmux: Tmux) -> None:
    a = tmux.shell("--sname", "a")
    b = tmux.shell("--sname", "b")
    assert f"pymesh({node('a')})1>" in a.screen()
    assert f"pymesh({node('b')})1>" in b.screen()

    assert a.run(f'Node.connect("{node("b")}")') == "True"
    assert b.run("Node.list()") == repr([node("a")])

    # a process typed into b, registered there, messaged from a
    assert b.run_block(ECHO) == ""
    assert b.run('register("echo", spawn(echo))') == ""
    assert a.run(f'send(("echo", "{node("b")}"), (self(), "hi")) and None') == ""
    assert a.run("await receive(timeout=5)") == "('echo', 'hi')"

    # a process spawned on b from a, inspected from a
    pid = a.run(f'pid = await Node.spawn("{node("b")}", "asyncio:sleep", 60); pid')
    assert re.fullmatch(rf"#PID<{re.escape(node('b'))}\.\d+\.\d+>", pid), pid
    info = a.run("i(pid)")
    assert f"Pid:             {pid}" in info and "sleep" in info, info

    # completion: node names in Node.connect(", registered names in whereis("
    a.type('Node.connect("b')
    a.keys("Tab")
    a.wait_for(re.escape(f'Node.connect("{node("b")}'))
    a.keys("C-c")  # drop the input
    b.type('whereis("ec')
    b.keys("Tab")
    b.wait_for(re.escape('whereis("echo'))
    n = b.last_prompt()
    b.type('")')
    b.keys("Enter")
    assert b.output_after(n, b.wait_prompt(n + 1)).startswith(f"#PID<{node('b')}.")

    # pymesh rpc evaluates in the shell's namespace on a shell node
    assert "Registered name: echo" in env.rpc(node("b"), 'i("echo")')

    # Ctrl-D leaves the cluster gracefully
    a.keys("C-d")
    assert a.wait_exit() == 0
    eventually(lambda: b.run("Node.list()") == "[]", "b sees a leave")
    b.type("exit()")
    b.keys("Enter")
    assert b.wait_exit() == 0


def test_undistributed_shell_starts_and_stops_its_node_and_peers(env: ShellEnv, tmux: Tmux) -> None:
    c = tmux.shell()
    assert "pymesh(1)>" in c.screen()
    assert c.run("Node.alive()") == "False"
    assert c.run('Node.start("c")') == repr(node("c"))
    assert f"pymesh({node('c')})3>" in c.screen()
    assert c.run("self()").startswith(f"#PID<{node('c')}.")

    assert c.run('peer("p1")', timeout=30) == repr(node("p1"))
    assert c.run("Node.list()") == repr([node("p1")])
    assert c.run('peer_stop("p1")') == "True"
    assert c.run("Node.list()") == "[]"
    assert c.run('peer("p2")', timeout=30) == repr(node("p2"))

    assert c.run("Node.stop()") == ""
    n = c.last_prompt()
    assert f"pymesh({n})>" in c.screen()
    assert c.run("self()").startswith("#PID<nonode@nohost.")

    c.type("exit()")
    c.keys("Enter")
    assert c.wait_exit() == 0
    # the peer stopped with the shell
    eventually(lambda: " p2 " not in env.pymesh("names").stdout, "peer p2 is gone from the port mapper")


def test_shell_is_a_process_with_values_and_errors(env: ShellEnv, tmux: Tmux) -> None:
    s = tmux.shell("--sname", "s3")
    me = s.run("self()")
    assert s.run("self()") == me
    assert s.run('send(self(), ("x", 1)) and None') == ""
    assert s.run("flush()") == "('x', 1)"

    out = s.run("await receive(timeout=0.2)")
    assert "ReceiveTimeout" in out and 'File "<shell:' in out, out
    assert "_eval.py" not in out and "asyncio" not in out, out

    n = s.last_prompt()
    assert s.run("40 + 2") == "42"
    assert s.run(f"v({n})") == "42"
    assert s.run("v()") == "42"

    assert "SyntaxError" in s.run("1 +* 2")
    assert "KeyError: 'missing'" in s.run('{}["missing"]')

    n = s.last_prompt()
    out = s.run('"x" * 100_000')
    assert f"output cut: 100,002 characters, 1 lines in all; the whole value is v({n})" in out
    assert len(out) < 11_000
    out = s.run('print("\\n".join(["y" * 50] * 30_000))', timeout=60)
    assert "printed output cut" in out

    # the shell process dies with a linked crash, and a new one takes over
    s.run_block("async def crash():\n    raise RuntimeError('boom')\n")
    out = s.run("spawn_link(crash); await asyncio.sleep(1)")
    assert f"** (EXIT from {me}) shell process exited with reason: RuntimeError: boom" in out, out
    assert "new shell process" in out
    assert s.run("self()") != me
    assert s.run("1 + 1") == "2"


def test_ctrl_c_interrupts_and_the_node_stays_up(env: ShellEnv, tmux: Tmux) -> None:
    s = tmux.shell("--sname", "s4")
    assert "interrupted" in s.interrupt_after("await asyncio.sleep(100)")
    assert "interrupted" in s.interrupt_after("while True: pass")
    assert "interrupted" in s.interrupt_after("import time; time.sleep(100)")
    # a spinning process typed into the shell is stopped too
    s.run_block("async def spin():\n    while True:\n        pass\n")
    assert "interrupted" in s.interrupt_after("spawn(spin); await asyncio.sleep(100)")
    assert s.run("Node.alive()") == "True"
    # the node serves while the prompt waits
    assert env.rpc(node("s4"), "Node.self()") == repr(node("s4"))
    # Ctrl-C at the prompt drops what was typed
    n = s.last_prompt()
    s.type("this is never run")
    s.keys("C-c")
    time.sleep(0.3)
    assert s.last_prompt() == n
    assert s.run("1 + 1") == "2"


def test_resize_and_history_across_runs(env: ShellEnv, tmux: Tmux) -> None:
    s = tmux.shell("--sname", "s5")
    assert s.run("history_marker = 12345") == ""
    s.resize(70, 20)
    time.sleep(0.3)  # let the shell redraw for the new size
    out = s.run("history_marker + 1")
    assert out == "12346", s.screen()[-2000:]
    s.resize(160, 50)
    s.keys("C-d")
    assert s.wait_exit() == 0
    history = env.state / "pymesh" / "shell_history"
    assert "history_marker = 12345" in history.read_text()

    t = tmux.shell("--sname", "s5")
    t.keys("Up", "Up")
    t.wait_for(re.escape(f"pymesh({node('s5')})1> history_marker = 12345"))
    t.keys("Enter")
    t.wait_prompt(2)
    assert t.run("history_marker") == "12345"


def test_topology_flag(env: ShellEnv, tmux: Tmux) -> None:
    bad = tmux.open([sys.executable, "-m", "pymesh", "shell", "--sname", "t0", "--topology", str(env.root / "missing.toml")])
    assert bad.wait_exit() == 1
    assert "pymesh shell: " in bad.screen() and "missing.toml" in bad.screen()

    topology = env.root / "local.toml"
    topology.write_text('[topologies.here]\nstrategy = "local"\n[topologies.here.config]\npolling_interval = 0.3\n')
    proc, _ = env.start_node("--sname", "t1")
    try:
        s = tmux.shell("--sname", "t2", "--topology", str(topology))
        eventually(lambda: node("t1") in s.run("Node.list()"), "discovery connects t1")
    finally:
        env.procs.remove(proc)
        from shell_helpers import stop_process

        stop_process(proc)


# --- the pure parts: no terminal, no node -------------------------------------------------------


@pytest.mark.parametrize(
    "text, complete",
    [
        ("1 + 1", True),
        ("x = (1,", False),
        ("def f():", False),
        ("def f():\n    return 1", False),  # a block ends with an empty line
        ("def f():\n    return 1\n", True),
        ("for i in range(3): print(i)", True),
        ("while True: pass", True),
        ("await asyncio.sleep(1)", True),
        ("async with x:\n    await y", False),
        ("1 +* 2", True),  # a syntax error runs, to show the error
        ("", True),
    ],
)
def test_enter_runs_complete_input(text: str, complete: bool) -> None:
    from pymesh.shell._eval import is_complete

    assert is_complete(text) is complete


def test_long_values_are_cut_with_a_note() -> None:
    from pymesh.shell._eval import cut_output

    assert cut_output("short") == "short"
    cut = cut_output("\n".join(map(str, range(1000))), 7)
    assert cut.count("\n") == 200 and cut.endswith("(output cut: 3,889 characters, 1,000 lines in all; the whole value is v(7))")
    assert len(cut_output("x" * 50_000)) < 10_100


def test_ssh_port_advertisement() -> None:
    from pymesh.shell._host import parse_ssh_advertisement, ssh_advertisement

    assert parse_ssh_advertisement(ssh_advertisement(2222)) == 2222
    assert parse_ssh_advertisement(b"other=1,ssh=22") == 22
    assert parse_ssh_advertisement(b"") is None and parse_ssh_advertisement(b"ssh=x") is None


def test_auth_policy_blocks_an_address_after_failures(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from pymesh.shell import _ssh

    now = [1000.0]
    monkeypatch.setattr(_ssh.time, "monotonic", lambda: now[0])
    policy = _ssh.AuthPolicy(tmp_path / "authorized_keys")
    assert policy.authorized_keys() is None  # no file: nobody gets in
    for _ in range(policy.max_failures):
        assert not policy.blocked("10.0.0.1")
        policy.failed("10.0.0.1")
    assert policy.blocked("10.0.0.1") and not policy.blocked("10.0.0.2")
    now[0] += policy.window + 1
    assert not policy.blocked("10.0.0.1")


@pytest.mark.parametrize("use_jedi", [True, False])
def test_python_completion(use_jedi: bool) -> None:
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document
    from pymesh.shell import shell_namespace
    from pymesh.shell._complete import ShellCompleter

    ns = shell_namespace()
    completer = ShellCompleter(lambda: ns, None)
    if not use_jedi:
        completer._jedi = False
    elif not completer._jedi:
        pytest.skip("jedi is not installed")

    def texts(line: str) -> set[str]:
        doc = Document(line, len(line))
        return {doc.text[: len(line) + c.start_position] + c.text for c in completer.get_completions(doc, CompleteEvent())}

    assert "Node.connect" in texts("Node.con")
    assert {"spawn", "spawn_link", "spawn_monitor"} <= texts("spaw")
