"""The fuzz corpus: small valid inputs per target, kept in ``tests/fuzz/corpus/``.

``corpus/<target>-<what>.bin`` are seeds — real handshakes (recorded with
:func:`~fuzz.targets.fixed_challenges`, so they replay to ``CONNECTED``),
frames of every control message, terms of every ext type, port mapper
requests and responses — made by :func:`seeds` and written by ``python -m
tests.fuzz --write-seeds``. ``corpus/crashers/<target>-<sha1>.bin`` are inputs
that once broke a target; every one is replayed by the test suite.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pymesh.wire import (
    FLAG_HIDDEN,
    STATUSES,
    DistProtocol,
    Pid,
    Ref,
    RemoteError,
    Role,
    encode,
)
from pymesh.wire import _epmd as epmd
from pymesh.wire._control import (
    DEMONITOR,
    DISCONNECT,
    DOWN,
    EXIT,
    EXIT2,
    LINK,
    MONITOR,
    NODES,
    REG_SEND,
    SEND,
    SERVICE,
    SPAWN_REPLY,
    SPAWN_REQUEST,
    UNLINK,
)
from pymesh.wire._frames import TICK_FRAME, frame
from pymesh.wire._terms import batch_header, encode_send

from .targets import A_NAME, COOKIE, I_NAME, MAX_FRAME, TARGETS, fixed_challenges

__all__ = ["CORPUS", "CRASHERS", "control_messages", "load", "save_crasher", "seeds", "write_seeds"]

CORPUS = Path(__file__).resolve().parent / "corpus"
CRASHERS = CORPUS / "crashers"

_P = Pid(A_NAME, 7, 5)
_Q = Pid(I_NAME, 9, 3)
_R = Ref(I_NAME, 11, 3)


def control_messages() -> list[list[object]]:
    """One well-formed control message of every op."""
    return [
        [SEND, _P, ("hello", [1, 2.5, b"x"], {"k": {1, 2}})],
        [REG_SEND, _Q, "echo", (_Q, "hi")],
        [LINK, _Q, _P],
        [UNLINK, _Q, _P],
        [EXIT, _Q, _P, "normal"],
        [EXIT2, _Q, _P, RemoteError("builtins.ValueError", "bad")],
        [MONITOR, _Q, _P, _R],
        [DEMONITOR, _Q, "kv", _R],
        [DOWN, _P, _Q, _R, "noproc"],
        [SPAWN_REQUEST, _R, _Q, "nodefns:echo", [1, "two"], {"link": True}],
        [SPAWN_REPLY, _R, _Q, True, _P],
        [NODES, ["c@host", "d@host"]],
        [DISCONNECT, "disconnect"],
        [SERVICE, "global", ["sync", [], True]],
    ]


#: Sends as the runtime writes them: tuples travel as SEND_TUPLE (one with a
#: payload large enough to be kept apart by encode_send), anything else as SEND.
SENDS: list[object] = [("msg", 1, {"key": "value"}), (), ("big", b"\xab" * 5000), [1, ("x",)], "plain"]


def _control_frames() -> bytes:
    """A batch frame (what pymesh writes), a frame of bare messages, a tick,
    one message per frame, and a batch of sends in their wire forms."""
    msgs = control_messages()
    batch = frame(batch_header(len(msgs)) + b"".join(encode(m) for m in msgs))
    bare = frame(b"".join(encode(m) for m in msgs))
    singles = b"".join(frame(encode(m)) for m in msgs[:4])
    sends = [encode_send(_P, m) for m in SENDS]
    send_batch = frame(batch_header(len(sends)) + b"".join(s if type(s) is bytes else b"".join(s) for s in sends))
    return batch + bare + TICK_FRAME + singles + send_batch


def _handshake(status: str = "ok", hidden: bool = False) -> tuple[bytes, bytes]:
    """(what the initiator sends, what the acceptor sends) in a real handshake, challenges fixed."""
    with fixed_challenges():
        i = DistProtocol(Role.INITIATOR, I_NAME, COOKIE, flags=FLAG_HIDDEN if hidden else 0, creation=3,
                         peer=A_NAME, max_frame=MAX_FRAME)
        a = DistProtocol(Role.ACCEPTOR, A_NAME, COOKIE, creation=5, max_frame=MAX_FRAME)
        from_i, from_a = [i.data_to_send()], []
        a.receive_data(from_i[-1])
        a.decide(status)
        for _ in range(4):
            from_a.append(a.data_to_send())
            i.receive_data(from_a[-1])
            from_i.append(i.data_to_send())
            a.receive_data(from_i[-1])
        return b"".join(from_i), b"".join(from_a)


def seeds() -> dict[str, bytes]:
    """``{"<target>-<what>": input}``: valid inputs that take each target down its main paths."""
    control = _control_frames()
    out: dict[str, bytes] = {}
    framed = b"\x00\xc8"  # knob bytes: decision/side 0, one frame at a time
    pieces = b"\x00\x03"  # 4-byte pieces
    for status in ("ok", "alive", "ok_simultaneous"):
        from_i, from_a = _handshake(status)
        code = bytes([STATUSES.index(status)])
        out[f"acceptor-{status}"] = code + b"\xc8" + from_i + control
        if status != "ok_simultaneous":
            out[f"initiator-{status}"] = framed + from_a + control
    out["acceptor-hidden"] = framed + _handshake(hidden=True)[0]
    out["acceptor-nok"] = b"\x02\xc8" + _handshake()[0][:80]
    out["initiator-pieces"] = b"\x00\x05" + _handshake()[1] + control
    out["connected-acceptor"] = framed + control
    out["connected-initiator"] = b"\x01\xff" + control
    out["connected-pieces"] = pieces + control
    terms: list[object] = [
        None, True, 2**70, -(2**65), 1.5, "text", b"bytes", [1, [2, [3]]], (1, (2, (3,))),
        {"a": 1, (1, 2): [3]}, {1, 2}, frozenset({"x"}), _P, _R, RemoteError("m.E", "msg"),
        control_messages(),
    ]
    for n, term in enumerate(terms):
        out[f"terms-{n:02d}"] = encode(term)
    out["terms-batch"] = b"".join(encode(t) for t in terms[:6])
    out["frames-batch"] = b"\x40\x02" + control
    out["frames-tick"] = b"\x01\x00" + TICK_FRAME * 3
    requests = [
        epmd.Alive2Req("node1", 40001, extra=b"ssh=2222"),
        epmd.PortPlease2Req("node1"),
        epmd.NamesReq(),
        epmd.DumpReq(),
        epmd.KillReq(),
        epmd.StopReq("node1"),
    ]
    out["epmd-requests"] = b"\xff" + b"".join(epmd.encode_request(r) for r in requests)
    responses = [
        epmd.Alive2XResp(0, 12345),
        epmd.Alive2Resp(0, 2),
        epmd.Port2Resp(0, epmd.NodeEntry("node1", 40001, extra=b"x")),
        epmd.Port2Resp(1),
        epmd.NamesResp(4369, (("node1", 40001), ("node2", 40002))),
        epmd.DumpResp(4369, "active name     <node1> at port 40001, fd = 7\n"),
        epmd.KillResp(True),
        epmd.StopResp(False),
    ]
    for n, resp in enumerate(responses):
        out[f"epmd-response-{n}"] = epmd.encode_response(resp)
    unknown = {name.split("-")[0] for name in out} - set(TARGETS)
    assert not unknown, unknown
    return out


def write_seeds() -> list[Path]:
    """Write :func:`seeds` into :data:`CORPUS` (replacing earlier seeds of the same names)."""
    CORPUS.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in sorted(seeds().items()):
        path = CORPUS / f"{name}.bin"
        path.write_bytes(data)
        paths.append(path)
    return paths


def load(target: str, crashers: bool = True) -> list[bytes]:
    """The seeds (and crashers) of ``target`` on disk, sorted by file name."""
    paths = sorted(CORPUS.glob(f"{target}-*.bin"))
    if crashers:
        paths += sorted(CRASHERS.glob(f"{target}-*.bin"))
    return [p.read_bytes() for p in paths]


def save_crasher(target: str, data: bytes) -> Path:
    CRASHERS.mkdir(parents=True, exist_ok=True)
    path = CRASHERS / f"{target}-{hashlib.sha1(data).hexdigest()[:16]}.bin"
    path.write_bytes(data)
    return path
