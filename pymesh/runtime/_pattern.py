"""One small pattern language for selective ``receive``, ``Registry.match`` and friends.

A *pattern* is a value that describes a set of values:

* :data:`ANY` matches anything;
* a ``type`` matches its instances: ``("pong", int)`` matches ``("pong", 7)``;
* a ``tuple`` matches a tuple of the same length whose elements match, element by
  element; a ``list`` likewise matches a list;
* a ``dict`` matches a dict that has every key of the pattern with a matching
  value (extra keys are fine, as in Elixir's map patterns);
* anything else matches an equal value.

A guard (any callable taking the value and returning a truth value) may narrow
a pattern further. :func:`compile_pattern` turns a pattern into a predicate once,
so matching a long mailbox or registry does not re-inspect the pattern.

A bare callable that is not a type is taken as a predicate itself, which is how
``receive(lambda m: ...)`` works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

__all__ = ["ANY", "compile_pattern", "matches"]


class _Any:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ANY"

    def __reduce__(self) -> str:
        return "ANY"


#: The wildcard: matches any value.
ANY: Final = _Any()

Predicate = Callable[[Any], bool]


def _always(_: Any) -> bool:
    return True


def compile_pattern(pattern: Any, guard: Predicate | None = None) -> Predicate:
    """Return a predicate for ``pattern`` (narrowed by ``guard`` when given).

    A non-type callable is returned as the predicate (with the guard, if any).
    """
    if callable(pattern) and not isinstance(pattern, type) and pattern is not ANY:
        pred: Predicate = pattern
    else:
        pred = _compile(pattern)
    if guard is None:
        return pred
    return lambda v: bool(pred(v)) and bool(guard(v))


def matches(pattern: Any, value: Any, guard: Predicate | None = None) -> bool:
    """True when ``value`` matches ``pattern`` (and ``guard``)."""
    return bool(compile_pattern(pattern, guard)(value))


def _compile(p: Any) -> Predicate:
    if p is ANY:
        return _always
    if isinstance(p, type):
        return lambda v: isinstance(v, p)
    if type(p) is tuple:
        return _compile_seq(tuple, [_compile(x) for x in p])
    if type(p) is list:
        return _compile_seq(list, [_compile(x) for x in p])
    if type(p) is dict:
        items = [(k, _compile(v)) for k, v in p.items()]

        def match_dict(v: Any) -> bool:
            if type(v) is not dict:
                return False
            for k, sub in items:
                if k not in v or not sub(v[k]):
                    return False
            return True

        return match_dict
    return lambda v: v == p and type(v) is type(p) or (v == p and _numeric(v, p))


def _numeric(a: Any, b: Any) -> bool:
    # 1 == 1.0 matches, as == does; but True must not match 1.
    return type(a) in (int, float) and type(b) in (int, float)


def _compile_seq(kind: Any, subs: list[Predicate]) -> Predicate:
    n = len(subs)

    def match_seq(v: Any) -> bool:
        if type(v) is not kind or len(v) != n:
            return False
        for sub, x in zip(subs, v, strict=True):
            if not sub(x):
                return False
        return True

    return match_seq
