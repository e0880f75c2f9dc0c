"""pymesh's wire layer: the distribution protocol with no I/O in it.

Everything here is pure computation — bytes in, events out; commands in, bytes
out — so it is tested with two in-memory peers wired back to back, and the
runtime's asyncio adapter only pumps bytes. See :mod:`pymesh.wire._protocol`
for the handshake and framing, :mod:`pymesh.wire._terms` for the type mapping,
and :mod:`pymesh.wire._control` for the control-message vocabulary.
"""

from ._control import OP_NAMES
from ._frames import DEFAULT_MAX_FRAME, FrameReader
from ._protocol import (
    FLAG_HIDDEN,
    PROTOCOL_VERSION,
    STATUSES,
    TRANSITIONS,
    Connected,
    DistProtocol,
    PeerNamed,
    Refused,
    Role,
    State,
)
from ._terms import decode, decode_all, encode
from ._types import NO_NODE, Pid, Ref, RemoteError

__all__ = [
    "DistProtocol",
    "Role",
    "State",
    "PeerNamed",
    "Refused",
    "Connected",
    "TRANSITIONS",
    "STATUSES",
    "PROTOCOL_VERSION",
    "FLAG_HIDDEN",
    "FrameReader",
    "DEFAULT_MAX_FRAME",
    "OP_NAMES",
    "encode",
    "decode",
    "decode_all",
    "Pid",
    "Ref",
    "RemoteError",
    "NO_NODE",
]
