"""Length-prefixed framing: ``u32 big-endian length`` + payload.

A zero-length frame is a *tick* (a heartbeat that carries nothing), as on the
BEAM's distribution connections. After the handshake one frame carries a batch
of control messages, so a busy connection pays the framing cost once per flush,
not once per message.
"""

from __future__ import annotations

import struct

from .._errors import FrameTooLarge

__all__ = ["FrameReader", "FrameBuffer", "frame", "TICK_FRAME", "HEADER", "DEFAULT_MAX_FRAME"]

HEADER = struct.Struct(">I")
TICK_FRAME = b"\x00\x00\x00\x00"
#: Default largest frame a peer may announce (64 MiB).
DEFAULT_MAX_FRAME = 64 * 1024 * 1024

_unpack_header = HEADER.unpack_from


def frame(payload: bytes) -> bytes:
    """One frame holding ``payload``."""
    return HEADER.pack(len(payload)) + payload


class FrameBuffer:
    """A receive buffer the socket reads *into*, cut into frames in place.

    The zero-copy counterpart of :class:`FrameReader`, for a transport that
    asks where to put the bytes it reads (asyncio's ``BufferedProtocol``):
    :meth:`get_buffer` hands out the free tail of one long-lived ``bytearray``,
    :meth:`written` records how much of it a read filled, and :meth:`pop_all`
    returns each complete frame's payload as a ``memoryview`` into that same
    array — to be decoded before the next read, never kept. A payload is
    copied only by its decoder (into the objects it builds), so a 64 KiB
    binary crosses user space once; and the array is reused, so a busy
    connection allocates nothing per read.

    The array starts at ``initial`` bytes and doubles, up to ``largest``,
    while reads keep filling all the room offered (a busy connection then reads
    in bigger gulps: fewer syscalls); a frame larger than that grows it to
    fit, up to ``max_frame``. The array is never resized in place (views of it
    may still be alive): growing makes a new one.
    """

    __slots__ = ("_buf", "_start", "_end", "max_frame", "largest", "initial", "_offered", "_filled")

    def __init__(
        self, max_frame: int = DEFAULT_MAX_FRAME, initial: int = 64 * 1024, largest: int = 4 * 1024 * 1024
    ) -> None:
        self._buf = bytearray(initial)
        self.initial = initial
        self._start = 0  # first byte not yet cut into a frame
        self._end = 0  # end of the bytes received
        self.max_frame = max_frame
        self.largest = largest
        self._offered = 0  # room the last get_buffer offered
        self._filled = False  # and the read that followed filled all of it

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return self._end - self._start

    @property
    def capacity(self) -> int:
        """The array's current size."""
        return len(self._buf)

    def get_buffer(self, min_free: int = 4096) -> memoryview:
        """The room the next read may fill: at least ``min_free`` bytes, and
        at least what the frame in progress still misses."""
        buf, start, end = self._buf, self._start, self._end
        pending = end - start
        size = len(buf)
        need = max(min_free, self._frame_rest())
        grow = self._filled and size < self.largest
        if grow or pending + need > size:
            new = bytearray(max(min(size * 2, self.largest) if grow else size, pending + need))
            new[:pending] = buf[start:end]
            self._buf = buf = new
            self._start, self._end = 0, pending
        elif start and (start == end or size - end < need):
            buf[:pending] = buf[start:end]  # same size: a move, no resize
            self._start, self._end = 0, pending
        end = self._end
        self._offered = len(buf) - end
        return memoryview(buf)[end:]

    def shrink(self) -> bool:
        """Go back to ``initial`` bytes if the buffer grew and holds nothing now
        (an idle connection should not keep a burst's 4 MiB). True if it did."""
        if self._start != self._end or len(self._buf) <= self.initial:
            return False
        self._buf = bytearray(self.initial)
        self._start = self._end = 0
        self._filled = False
        return True

    def _frame_rest(self) -> int:
        """Bytes still missing from the frame in progress (0 when unknown)."""
        start, end = self._start, self._end
        if end - start < 4:
            return 0
        (size,) = _unpack_header(self._buf, start)
        if size > self.max_frame:
            return 0  # pop_all raises for it
        return max(0, 4 + size - (end - start))

    def head(self, n: int) -> bytes:
        """A copy of the first ``n`` buffered bytes (fewer if fewer are there)."""
        return bytes(self._buf[self._start : min(self._start + n, self._end)])

    def written(self, n: int) -> None:
        """The last read put ``n`` bytes into the room :meth:`get_buffer` gave."""
        self._end += n
        self._filled = n >= self._offered

    def feed(self, data: bytes) -> None:
        """Copy ``data`` in (for a transport that hands over bytes objects)."""
        n = len(data)
        view = self.get_buffer(n)
        view[:n] = data
        view.release()
        self._end += n  # not written(): a copy says nothing about read sizes

    def pop(self) -> bytes | None:
        """The next complete frame's payload (a copy), or None until more bytes arrive."""
        buf, start = self._buf, self._start
        if self._end - start < 4:
            return None
        (size,) = _unpack_header(buf, start)
        if size > self.max_frame:
            raise FrameTooLarge(f"peer announced a {size}-byte frame; the limit is {self.max_frame}")
        stop = start + 4 + size
        if stop > self._end:
            return None
        self._start = stop
        return bytes(buf[start + 4 : stop])

    def pop_all(self) -> list[memoryview | bytes]:
        """Every complete frame's payload, in order: a ``memoryview`` into the
        buffer, valid until the next :meth:`get_buffer` or :meth:`feed`
        (``b""`` for a tick). Raises :class:`FrameTooLarge` at a header
        announcing more than ``max_frame`` (the connection is beyond saving
        then: the frames before it are dropped too)."""
        buf, pos, end = self._buf, self._start, self._end
        frames: list[memoryview | bytes] = []
        view = None
        try:
            while end - pos >= 4:
                (size,) = _unpack_header(buf, pos)
                if size > self.max_frame:
                    raise FrameTooLarge(f"peer announced a {size}-byte frame; the limit is {self.max_frame}")
                stop = pos + 4 + size
                if stop > end:
                    break
                if size:
                    if view is None:
                        view = memoryview(buf)
                    frames.append(view[pos + 4 : stop])
                else:
                    frames.append(b"")
                pos = stop
        finally:
            self._start = pos
        return frames


class FrameReader(FrameBuffer):
    """A :class:`FrameBuffer` for callers that hold bytes: ``feed(data)``
    buffers a copy, ``pop()`` returns one complete frame and ``pop_all()``
    every complete frame, each as ``bytes`` of its own (kept as long as
    wanted). A header announcing more than ``max_frame`` bytes raises
    :class:`FrameTooLarge` before that frame's body is waited for.
    """

    __slots__ = ()

    def pop_all(self) -> list[bytes]:  # type: ignore[override]
        """Every complete frame's payload, in order (``b""`` for a tick)."""
        return [bytes(f) for f in super().pop_all()]
