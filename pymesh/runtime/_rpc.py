"""Remote procedure calls: Erlang's ``rpc:call`` and the shell's remote eval.

Every started node answers the ``rpc`` service (a :data:`SERVICE` control
message, see :mod:`pymesh.wire._control`):

* ``await rpc_call(node, "module:function", *args)`` runs an importable
  function on ``node`` in a fresh process and returns its result;
* ``await rpc_eval(node, "Node.list()")`` evaluates Python source in the
  node's *eval namespace* (the shell's, when a shell or ``pymesh run`` set it
  with :func:`set_eval_namespace`; pymesh's public API otherwise). Awaitables
  are awaited, statements are allowed.

Only authenticated nodes — those that proved they know the cookie — can reach
this service: holding the cookie means full control of the node, exactly as on
the BEAM. Nothing a peer sends is evaluated any other way.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from typing import Any

from .._errors import EncodeError, PymeshError, ReceiveTimeout
from ..wire._types import Pid, Ref, RemoteError
from . import _process as P

__all__ = ["rpc_call", "rpc_eval", "evaluate", "set_eval_namespace", "RpcError", "install"]

_SERVICE = "rpc"
_namespace_factory: Callable[[], dict[str, Any]] | None = None


class RpcError(PymeshError):
    """The remote call failed; ``reason`` says why (``noconnection``, ``timeout``,
    or the remote exception as a :class:`~pymesh.RemoteError`)."""

    def __init__(self, node: str, reason: Any) -> None:
        super().__init__(f"rpc to {node} failed: {reason}")
        self.node = node
        self.reason = reason


def set_eval_namespace(factory: Callable[[], dict[str, Any]] | None) -> None:
    """Choose the namespace remote ``rpc_eval`` runs in (a factory, called per eval)."""
    global _namespace_factory
    _namespace_factory = factory


def _default_namespace() -> dict[str, Any]:
    import pymesh

    return {name: getattr(pymesh, name) for name in pymesh.__all__}


async def evaluate(source: str, namespace: dict[str, Any]) -> Any:
    """Evaluate Python ``source`` in ``namespace`` with top-level ``await``.

    An expression returns its value (an awaitable result is awaited);
    statements run and return None. Raises ``SyntaxError`` and whatever the
    code raises.
    """
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    try:
        code = compile(source, "<eval>", "eval", flags=flags)
        mode = "eval"
    except SyntaxError:
        code = compile(source, "<eval>", "exec", flags=flags)
        mode = "exec"
    result = eval(code, namespace)  # noqa: S307 - this is the feature
    if inspect.iscoroutine(result) and code.co_flags & inspect.CO_COROUTINE:
        result = await result
    if mode == "exec":
        return None
    if inspect.isawaitable(result):
        result = await result
    return result


def install(services: dict[str, Callable[[str, Any], None]]) -> None:
    """Register the rpc service handler on a started node."""
    services[_SERVICE] = _on_request


def _on_request(node: str, payload: Any) -> None:
    kind, ref, frm, body = payload
    if type(ref) is not Ref or type(frm) is not Pid:
        raise ValueError("malformed rpc request")
    P.spawn(_serve, kind, ref, frm, body)


async def _serve(kind: str, ref: Ref, frm: Pid, body: Any) -> None:
    try:
        if kind == "call":
            target, args = body
            from ._node import resolve_function

            result = resolve_function(target)(*args)
            if inspect.isawaitable(result):
                result = await result
        elif kind == "eval":
            ns = (_namespace_factory or _default_namespace)()
            result = await evaluate(body, ns)
        else:
            raise ValueError(f"unknown rpc kind {kind!r}")
        reply: tuple[Any, ...] = ("$rpc_reply", ref, True, result, _repr(result))
    except BaseException as e:
        if isinstance(e, (P.Exit,)) or not isinstance(e, Exception):
            raise
        reply = ("$rpc_reply", ref, False, e, f"{type(e).__name__}: {e}")
    try:
        P.send(frm, reply)
    except EncodeError:
        P.send(frm, ("$rpc_reply", ref, reply[2], None, reply[4]))


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as e:  # a broken __repr__ must not lose the reply
        return f"<unrepresentable {type(value).__name__}: {e}>"


async def _request(node: str, kind: str, body: Any, timeout: float) -> tuple[bool, Any, str]:
    from ._node import Node, current_distribution

    dist = current_distribution()
    if not await dist.connect(node):
        raise RpcError(node, "noconnection")
    ref = P.make_ref()
    me = P.current()
    Node.monitor(node)
    try:
        dist.send_service(node, _SERVICE, (kind, ref, me.pid, body))
        msg = await P.receive(
            lambda m: type(m) is tuple
            and ((len(m) == 5 and m[0] == "$rpc_reply" and m[1] == ref) or m == ("nodedown", node)),
            timeout=timeout,
        )
    except ReceiveTimeout:
        raise RpcError(node, "timeout") from None
    finally:
        Node.monitor(node, False)
    if msg[0] == "nodedown":
        raise RpcError(node, "noconnection")
    return msg[2], msg[3], msg[4]


async def rpc_call(node: str, target: str, *args: Any, timeout: float = 15.0) -> Any:
    """Run ``target`` (``"module:function"``) on ``node``; return its result.

    Raises :class:`RpcError` on failure; ``e.reason`` is the remote exception
    (a :class:`RemoteError`), ``"noconnection"`` or ``"timeout"``.
    """
    ok, value, text = await _request(node, "call", (target, list(args)), timeout)
    if not ok:
        raise RpcError(node, value if isinstance(value, RemoteError) else text)
    return value


async def rpc_eval(node: str, source: str, *, timeout: float = 15.0) -> tuple[Any, str]:
    """Evaluate ``source`` on ``node``; return ``(value, repr_text)``.

    ``value`` is None when the result cannot travel (it is not a term); the
    ``repr`` made on the remote node always can. Raises :class:`RpcError`.
    """
    ok, value, text = await _request(node, "eval", source, timeout)
    if not ok:
        raise RpcError(node, value if isinstance(value, RemoteError) else text)
    return value, text
