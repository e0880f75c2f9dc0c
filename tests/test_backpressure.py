"""Backpressure: a slow receiver cannot make a fast sender's node grow without bound.

The flood runs between real OS processes (``pymesh run`` nodes): a receiver
whose node reads slowly (its only process blocks its loop for a while per
message), and a sender with a small ``--dist-buf-busy-limit``. The test
samples the sender's resident memory from ``/proc`` while it floods:

* with ``send_wait`` it sends many times its limit, and its memory stays flat;
* with plain ``send`` (which cannot wait) everything queues, memory grows by
  about what was sent, the connection reports ``busy`` and counts the sends,
  and ``send_nowait`` raises ``WouldBlock``.

Mailbox limits (``process_flag("max_mailbox", n)``) are tested locally and
across nodes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from support.cluster import epmd, eventually, run, unique  # noqa: F401 - the fixture
from support.reliability import RunNode, rss

import pymesh
from pymesh import (
    ANY,
    Node,
    WouldBlock,
    monitor,
    process_flag,
    receive,
    rpc_call,
    self,
    send,
    send_nowait,
    send_wait,
    spawn_link,
    trap_exit,
)

pytestmark = pytest.mark.timeout(90)

COOKIE = "bp-" + secrets.token_hex(6)
MiB = 1 << 20
LIMIT = 1 * MiB


@pytest.fixture
def nodes(epmd: int) -> Iterator[tuple[RunNode, RunNode]]:
    receiver = RunNode([], cookie=COOKIE, epmd_port=epmd)
    sender = RunNode(["--dist-buf-busy-limit", "1M"], cookie=COOKIE, epmd_port=epmd)
    try:
        yield receiver.wait_ready(), sender.wait_ready()
    finally:
        receiver.close()
        sender.close()


class Sampler:
    """The peak resident memory of a process, sampled on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def test_flood_memory_stays_bounded_with_send_wait_and_grows_with_plain_send(
    epmd: int, nodes: tuple[RunNode, RunNode]
) -> None:
    receiver, sender = nodes

    async def scenario() -> None:
        await pymesh.start(unique("d"), cookie=COOKIE, epmd_port=epmd, listen_host="127.0.0.1")
        try:
            await rpc_call(receiver.name, "support.flood:start_slow_sink", 0.0002)
            # warm up: connect, and let the sender reach its steady state once
            await rpc_call(sender.name, "support.flood:flood_wait", receiver.name, 0.5, 1024)
            base = rss(sender.pid)
            sampler = Sampler(sender.pid)
            out = await rpc_call(sender.name, "support.flood:flood_wait", receiver.name, 3.0, 1024, timeout=30)
            growth = sampler.stop() - base
            sent = out["sent"] * 1024
            assert out["busy_seen"], out  # it did have to wait
            assert sent >= 4 * LIMIT, out  # many times the limit went through...
            assert growth <= LIMIT + 6 * MiB, (growth, out)  # ...and the sender did not grow
            print(f"send_wait: {sent / MiB:.1f} MiB sent, sender RSS +{growth / MiB:.1f} MiB (limit 1 MiB)")

            # plain send cannot wait: 40 MiB queue up in the sender
            base = rss(sender.pid)
            out = await rpc_call(sender.name, "support.flood:flood_plain", receiver.name, 40_000, 1024, timeout=30)
            growth = rss(sender.pid) - base
            assert out["busy"] and out["busy_sends"] > 30_000, out
            assert out["backlog"] >= 30 * MiB, out
            assert growth >= 20 * MiB, growth
            print(f"send: 39 MiB sent, sender RSS +{growth / MiB:.1f} MiB, {out['busy_sends']} sends while busy")
            assert out["would_block"] is not None and out["would_block"]["node"] == receiver.name
            assert out["would_block"]["queued"] >= 30 * MiB
            sender.wait_log(r"connection busy \(\d+ bytes queued, limit 1048576\): send\(\) queues on regardless")
        finally:
            await pymesh.stop()

    run(scenario, timeout=80)


def test_send_wait_and_send_nowait_on_a_connection_still_being_set_up(epmd: int) -> None:
    # The peer is stopped (SIGSTOP): the kernel accepts the TCP connection, but
    # the handshake never completes, so messages queue for it.
    peer = RunNode([], cookie=COOKIE, epmd_port=epmd).wait_ready()
    os.kill(peer.pid, signal.SIGSTOP)
    try:

        async def scenario() -> None:
            await pymesh.start(
                unique("q"), cookie=COOKIE, epmd_port=epmd, listen_host="127.0.0.1",
                dist_buf_busy_limit=64 * 1024, handshake_timeout=1.5,
            )
            try:
                target = ("nobody", peer.name)
                payload = b"y" * 1024
                sent = 0
                with pytest.raises(WouldBlock) as info:
                    for _ in range(1000):
                        send_nowait(target, payload)
                        sent += 1
                assert 60 <= sent <= 70 and info.value.node == peer.name
                stats = Node.statistics(peer.name)
                assert stats.state == "connecting" and stats.busy and stats.queued_bytes >= 64 * 1024
                assert send(target, payload) == payload  # plain send queues on, counted
                assert Node.statistics(peer.name).busy_sends == 1
                t0 = time.monotonic()
                assert await send_wait(target, payload) == payload  # returns when the dial fails
                assert 0.5 < time.monotonic() - t0 < 10
                fresh = Node.statistics(peer.name)  # the send dialed again, as a send to a node does
                assert fresh.state == "connecting" and not fresh.busy and fresh.busy_sends == 0
                assert await send_wait(self(), "local") == "local"  # local: never waits
                assert await receive(timeout=1) == "local"
            finally:
                await pymesh.stop()

        run(scenario, timeout=30)
    finally:
        os.kill(peer.pid, signal.SIGCONT)
        peer.close()


def test_a_remote_flood_kills_a_process_over_its_mailbox_limit(epmd: int, nodes: tuple[RunNode, RunNode]) -> None:
    receiver, _ = nodes

    async def scenario() -> None:
        await pymesh.start(unique("m"), cookie=COOKIE, epmd_port=epmd, listen_host="127.0.0.1")
        try:
            pid = await rpc_call(receiver.name, "support.flood:start_bounded", 100)
            await eventually(lambda: rpc_call(receiver.name, "pymesh:whereis", "bounded"), "bounded is registered")
            ref = monitor(pid)
            for i in range(150):
                send(("bounded", receiver.name), i)
            down = await receive(("DOWN", ref, ANY, ANY, ANY), timeout=10)
            assert down[4] == "mailbox_overflow"
            receiver.wait_log(r"killed: its mailbox passed max_mailbox \(100 messages\)")
            assert await rpc_call(receiver.name, "pymesh:whereis", "bounded") is None
        finally:
            await pymesh.stop()

    run(scenario)


# --- mailbox limits, locally ---------------------------------------------------------------------


async def _idle() -> None:
    process_flag("max_mailbox", 3)
    await asyncio.sleep(3600)


async def _self_sender() -> None:
    process_flag("max_mailbox", 2)
    for i in range(10):
        send(self(), i)


def test_max_mailbox_kills_with_mailbox_overflow_and_links_see_it() -> None:
    async def scenario() -> None:
        trap_exit(True)
        pid = spawn_link(_idle)
        await asyncio.sleep(0)  # let it set its flag
        ref = monitor(pid)
        for i in range(3):
            send(pid, i)
        assert pymesh.process_info(pid).message_queue_len == 3  # at the limit: alive
        send(pid, "one too many")  # never raises for the sender
        assert await receive(("DOWN", ref, "process", pid, ANY), timeout=2) == ("DOWN", ref, "process", pid, "mailbox_overflow")
        assert await receive(("EXIT", pid, ANY), timeout=2) == ("EXIT", pid, "mailbox_overflow")
        assert pymesh.process_info(pid) is None

        _, ref2 = pymesh.spawn_monitor(_self_sender)  # overflowing its own mailbox ends it too
        assert (await receive(("DOWN", ref2, ANY, ANY, ANY), timeout=2))[4] == "mailbox_overflow"

    run(scenario)


def test_process_flag_max_mailbox_values() -> None:
    async def scenario() -> None:
        assert process_flag("max_mailbox", 10) is None
        assert process_flag("max_mailbox", None) == 10
        assert process_flag("max_mailbox", 5) is None
        assert process_flag("max_mailbox", 0) == 5
        for bad in (-1, 1.5, "10", True):
            with pytest.raises(ValueError):
                process_flag("max_mailbox", bad)
        for i in range(1000):  # unbounded again
            send(self(), i)
        assert len(pymesh.flush_mailbox()) == 1000

    run(scenario)


async def _sleeper() -> None:
    await asyncio.sleep(3600)


def test_spawn_opt_sets_its_options_before_the_first_line() -> None:
    async def scenario() -> None:
        # the limit holds for messages sent before the process ever ran
        pid, ref = pymesh.spawn_opt(_sleeper, monitor=True, max_mailbox=2, label="bounded")
        assert pymesh.process_info(pid).label == "bounded"
        for i in range(3):
            send(pid, i)
        assert await receive(("DOWN", ref, "process", pid, ANY), timeout=2) == ("DOWN", ref, "process", pid, "mailbox_overflow")

        # link + trap_exit: the child traps its linked parent's exit from the start
        got: asyncio.Future[object] = asyncio.get_running_loop().create_future()

        async def trapper() -> None:
            got.set_result(await receive(("EXIT", ANY, ANY)))

        parent_done = asyncio.get_running_loop().create_future()

        async def parent() -> None:
            pymesh.spawn_opt(trapper, link=True, trap_exit=True)
            await parent_done
            raise pymesh.Exit("parent went")

        p = pymesh.spawn(parent)
        await asyncio.sleep(0)
        parent_done.set_result(None)
        assert await asyncio.wait_for(got, 2) == ("EXIT", p, "parent went")

        assert isinstance(pymesh.spawn_opt(_sleeper), pymesh.Pid)
        for bad in (-1, 1.5, "3"):
            with pytest.raises(ValueError, match="max_mailbox"):
                pymesh.spawn_opt(_sleeper, max_mailbox=bad)

    run(scenario)


def test_the_batch_written_at_once_is_at_most_a_quarter_of_the_busy_limit() -> None:
    from pymesh.runtime._connection import DEFAULT_BUSY_LIMIT, FLUSH_AT, flush_at, high_water

    assert flush_at(DEFAULT_BUSY_LIMIT) == FLUSH_AT == MiB
    assert flush_at(MiB) == MiB // 4 and high_water(MiB) == 3 * MiB // 4
    assert flush_at(64 * 1024) == 16 * 1024 and flush_at(1) == 1 and high_water(1) == 1
