"""What the registries share: the check of their keys, and the running node.

The one check every registry applies to its keys, names, groups and lock ids:

A key must be hashable (it indexes a dict) and encodable (a global name, a
group or a lock id travels to other nodes; a local registry key may end up in
a via-name sent elsewhere or in an rpc answer). The common key types pass on a
single set lookup; anything else is hashed and encoded once, and a failure
raises :class:`~pymesh.BadKey` naming the key.
"""

from __future__ import annotations

from typing import Any, Final

from .._errors import BadKey, EncodeError, NotAlive
from ..runtime import _node
from ..wire import _terms
from ..wire._types import Pid, Ref

__all__ = ["PLAIN", "check_key", "unhashable", "distribution"]

#: Key types that are always hashable and encodable: checked with one set lookup.
PLAIN: Final = frozenset({str, int, float, bytes, bool, type(None), Pid, Ref})


def check_key(key: Any, what: str = "key") -> None:
    """Raise :class:`BadKey` unless ``key`` is hashable and encodable."""
    if type(key) in PLAIN:
        return
    try:
        hash(key)
    except TypeError:
        raise unhashable(key, what) from None
    try:
        _terms.encode(key)
    except EncodeError as e:
        raise BadKey(key, f"a {what} must be encodable to travel between nodes ({e})") from None


def unhashable(key: Any, what: str = "key") -> BadKey:
    """The error for an unhashable ``key`` (to raise from a failed dict lookup)."""
    return BadKey(key, f"a {what} must be hashable, and {type(key).__name__} is not")


def distribution() -> _node.Distribution | None:
    """The running node's :class:`Distribution`, or None when this runtime is not a node."""
    try:
        return _node.current_distribution()
    except NotAlive:
        return None
