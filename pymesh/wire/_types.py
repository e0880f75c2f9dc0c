"""The identity terms of the cluster: :class:`Pid`, :class:`Ref` and :class:`RemoteError`.

A :class:`Pid` names one process on one incarnation of one node. Like the BEAM's
pids it carries the node name, a per-node serial number and the node's *creation*
(a number the port mapper hands out on every start), so a pid of a restarted node
never aliases a process of its earlier life. Pids and refs compare and hash by
value, print readably (``#PID<node1@vm.42.3>``) and can be parsed back from that
form with :func:`Pid.parse` — the shell's ``pid("...")`` does exactly that.

These classes live in the wire layer because the term codec must know them; the
runtime creates them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Pid", "Ref", "RemoteError", "NO_NODE"]

#: The node name of a runtime that has not been started as a distributed node.
NO_NODE = "nonode@nohost"


def _parse_triple(kind: str, text: str) -> tuple[str, int, int]:
    prefix = f"#{kind}<"
    if not (text.startswith(prefix) and text.endswith(">")):
        raise ValueError(f"not a printed {kind}: {text!r} (expected {prefix}node@host.N.C>)")
    body = text[len(prefix) : -1]
    try:
        node, ident, creation = body.rsplit(".", 2)
        return node, int(ident), int(creation)
    except ValueError:
        raise ValueError(f"not a printed {kind}: {text!r} (expected {prefix}node@host.N.C>)") from None


class Pid:
    """A process identifier: ``(node, id, creation)``.

    Immutable, hashable, ordered (by node, creation, id — a total order every
    node computes the same way, which deterministic conflict resolution relies on).
    """

    __slots__ = ("node", "id", "creation", "_hash", "_wire")

    node: str
    id: int
    creation: int
    _hash: int
    _wire: bytes | None  # the encoded form, cached by the codec

    def __init__(self, node: str, id: int, creation: int = 0) -> None:
        object.__setattr__(self, "node", node)
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "creation", creation)
        object.__setattr__(self, "_hash", hash((node, id, creation)))
        object.__setattr__(self, "_wire", None)

    @classmethod
    def parse(cls, text: str) -> Pid:
        """Build a pid from its printed form ``#PID<node@host.ID.CREATION>``.

        Raises ``ValueError`` naming the text when it is not such a form.
        """
        return cls(*_parse_triple("PID", text.strip()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Pid is immutable")

    def __repr__(self) -> str:
        return f"#PID<{self.node}.{self.id}.{self.creation}>"

    __str__ = __repr__

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Pid:
            return NotImplemented
        return (
            self.id == other.id  # type: ignore[attr-defined]
            and self.node == other.node  # type: ignore[attr-defined]
            and self.creation == other.creation  # type: ignore[attr-defined]
        )

    def _key(self) -> tuple[str, int, int]:
        return (self.node, self.creation, self.id)

    def __lt__(self, other: Pid) -> bool:
        return self._key() < other._key()

    def __le__(self, other: Pid) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: Pid) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: Pid) -> bool:
        return self._key() >= other._key()

    def __reduce__(self) -> tuple[Any, ...]:
        return (Pid, (self.node, self.id, self.creation))


class Ref:
    """A unique reference (``make_ref()``), used to tag monitors and call replies.

    Printed as ``#Ref<node@host.ID.CREATION>``; compares and hashes by value.
    """

    __slots__ = ("node", "id", "creation", "_hash")

    node: str
    id: int
    creation: int
    _hash: int

    def __init__(self, node: str, id: int, creation: int = 0) -> None:
        object.__setattr__(self, "node", node)
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "creation", creation)
        object.__setattr__(self, "_hash", hash(("ref", node, id, creation)))

    @classmethod
    def parse(cls, text: str) -> Ref:
        """Build a ref from its printed form; ``ValueError`` when it is not one."""
        return cls(*_parse_triple("Ref", text.strip()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Ref is immutable")

    def __repr__(self) -> str:
        return f"#Ref<{self.node}.{self.id}.{self.creation}>"

    __str__ = __repr__

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Ref:
            return NotImplemented
        return (
            self.id == other.id  # type: ignore[attr-defined]
            and self.node == other.node  # type: ignore[attr-defined]
            and self.creation == other.creation  # type: ignore[attr-defined]
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (Ref, (self.node, self.id, self.creation))


class RemoteError(Exception):
    """An exception that crossed the wire: its type's qualified name and message.

    Exceptions are exit reasons on the BEAM's model, so they must travel. The
    receiving node cannot (and must not) rebuild arbitrary classes from a peer's
    bytes, so an exception arrives as a ``RemoteError`` that names the original
    type: ``RemoteError('builtins.ZeroDivisionError', 'division by zero')``.
    """

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(type_name, message)
        self.type_name = type_name
        self.message = message

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"

    def __repr__(self) -> str:
        return f"RemoteError({self.type_name!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RemoteError):
            return NotImplemented
        return (self.type_name, self.message) == (other.type_name, other.message)

    def __hash__(self) -> int:
        return hash((self.type_name, self.message))
