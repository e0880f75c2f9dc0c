"""Control messages exchanged after the handshake.

Each control message is one msgpack array ``[op, *fields]``. The table below is
the whole vocabulary; a frame holds any number of them back to back.

=================  ==  =====================================================
op                 #   fields
=================  ==  =====================================================
SEND               1   to_pid, message
REG_SEND           2   from_pid, to_name, message
LINK               3   from_pid, to_pid
UNLINK             4   from_pid, to_pid
EXIT               5   from_pid, to_pid, reason     (a linked process died)
EXIT2              6   from_pid, to_pid, reason     (``exit(pid, reason)``)
MONITOR            7   from_pid, to (pid or name), ref
DEMONITOR          8   from_pid, to (pid or name), ref
DOWN               9   from (pid or name), to_pid, ref, reason
SPAWN_REQUEST      10  ref, from_pid, "module:function", args, options
SPAWN_REPLY        11  ref, to_pid, ok, pid-or-reason
NODES              12  [node names]                 (transitive connect)
DISCONNECT         13  reason                       (a graceful goodbye)
SERVICE            14  service name, payload        (for upper layers)
SEND_TUPLE         15  to_pid, *items               (a SEND of a tuple, see below)
=================  ==  =====================================================

``SEND_TUPLE`` is how a ``send`` of a tuple travels: its items inline, one
array instead of an array holding a tuple ext, so that the receiver decodes
the message without a Python call per tuple. It has no fixed arity (two
fields at least) and never reaches the runtime: the protocol hands it on as
``[SEND, to_pid, tuple(items)]``.

``SERVICE`` is how registries, discovery and tracing add messages of their own
without touching this table: the runtime routes a payload to the handler an
upper layer registered under the service name.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "SEND", "REG_SEND", "LINK", "UNLINK", "EXIT", "EXIT2", "MONITOR", "DEMONITOR",
    "DOWN", "SPAWN_REQUEST", "SPAWN_REPLY", "NODES", "DISCONNECT", "SERVICE",
    "SEND_TUPLE", "ARITY", "OP_NAMES",
]

SEND: Final = 1
REG_SEND: Final = 2
LINK: Final = 3
UNLINK: Final = 4
EXIT: Final = 5
EXIT2: Final = 6
MONITOR: Final = 7
DEMONITOR: Final = 8
DOWN: Final = 9
SPAWN_REQUEST: Final = 10
SPAWN_REPLY: Final = 11
NODES: Final = 12
DISCONNECT: Final = 13
SERVICE: Final = 14
SEND_TUPLE: Final = 15

#: op -> number of array elements, op included (SEND_TUPLE: any, 2 at least).
ARITY: Final[dict[int, int]] = {
    SEND: 3,
    REG_SEND: 4,
    LINK: 3,
    UNLINK: 3,
    EXIT: 4,
    EXIT2: 4,
    MONITOR: 4,
    DEMONITOR: 4,
    DOWN: 5,
    SPAWN_REQUEST: 6,
    SPAWN_REPLY: 5,
    NODES: 2,
    DISCONNECT: 2,
    SERVICE: 3,
}

#: op -> lowercase name, as traces and statistics show it.
OP_NAMES: Final[dict[int, str]] = {
    SEND: "send",
    REG_SEND: "reg_send",
    LINK: "link",
    UNLINK: "unlink",
    EXIT: "exit",
    EXIT2: "exit2",
    MONITOR: "monitor",
    DEMONITOR: "demonitor",
    DOWN: "down",
    SPAWN_REQUEST: "spawn_request",
    SPAWN_REPLY: "spawn_reply",
    NODES: "nodes",
    DISCONNECT: "disconnect",
    SERVICE: "service",
    SEND_TUPLE: "send",
}
