"""Length-prefixed framing: ``u32 big-endian length`` + payload.

A zero-length frame is a *tick* (a heartbeat that carries nothing), as on the
BEAM's distribution connections. After the handshake one frame carries a batch
of control messages, so a busy connection pays the framing cost once per flush,
not once per message.
"""

from __future__ import annotations

import struct

from .._errors import FrameTooLarge

__all__ = ["FrameReader", "frame", "TICK_FRAME", "HEADER", "DEFAULT_MAX_FRAME"]

HEADER = struct.Struct(">I")
TICK_FRAME = b"\x00\x00\x00\x00"
#: Default largest frame a peer may announce (64 MiB).
DEFAULT_MAX_FRAME = 64 * 1024 * 1024

_unpack_header = HEADER.unpack_from


def frame(payload: bytes) -> bytes:
    """One frame holding ``payload``."""
    return HEADER.pack(len(payload)) + payload


class FrameReader:
    """Buffers bytes and cuts them into frames.

    ``feed(data)`` buffers; ``pop()`` returns one complete frame and
    ``pop_all()`` every complete frame. A header announcing more than
    ``max_frame`` bytes raises :class:`FrameTooLarge` before that frame's body
    is waited for.
    """

    __slots__ = ("_buf", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        """Buffer received bytes."""
        self._buf += data

    def pop(self) -> bytes | None:
        """The next complete frame's payload, or None until more bytes arrive."""
        buf = self._buf
        if len(buf) < 4:
            return None
        (size,) = _unpack_header(buf, 0)
        if size > self.max_frame:
            raise FrameTooLarge(f"peer announced a {size}-byte frame; the limit is {self.max_frame}")
        if len(buf) < 4 + size:
            return None
        payload = bytes(buf[4 : 4 + size])
        del buf[: 4 + size]
        return payload

    def pop_all(self) -> list[bytes]:
        """Every complete frame's payload, in order (``b""`` for a tick)."""
        buf = self._buf
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        view = memoryview(buf)  # slices of a view are copied once; of the bytearray, twice
        try:
            while end - pos >= 4:
                (size,) = _unpack_header(buf, pos)
                if size > self.max_frame:
                    raise FrameTooLarge(f"peer announced a {size}-byte frame; the limit is {self.max_frame}")
                stop = pos + 4 + size
                if stop > end:
                    break
                frames.append(view[pos + 4 : stop].tobytes())
                pos = stop
        finally:
            view.release()  # before the bytearray is resized
        if pos:
            del buf[:pos]
        return frames
