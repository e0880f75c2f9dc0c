"""The public face: what `pymesh` exports is what the README documents.

STYLE.md asks for a small, deliberate `__all__` over private modules, and a
test that keeps the documentation honest about it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pymesh

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_export_exists() -> None:
    for name in pymesh.__all__:
        assert hasattr(pymesh, name), name
    assert len(set(pymesh.__all__)) == len(pymesh.__all__)


def test_every_export_is_documented_in_the_readme() -> None:
    missing = [n for n in pymesh.__all__ if not re.search(rf"`[^`]*\b{re.escape(n)}\b[^`]*`", README)]
    assert missing == [], f"exported but not in README.md: {missing}"


def test_every_exported_callable_has_a_docstring() -> None:
    bare = [n for n in pymesh.__all__ if callable(getattr(pymesh, n)) and not (getattr(pymesh, n).__doc__ or "").strip()]
    assert bare == []


def test_every_error_is_a_pymesh_error() -> None:
    # Exit is control flow (``raise Exit(reason)`` ends a process) and RemoteError
    # a term (an exception that crossed the wire); everything else that can be
    # raised is in the one tree.
    exempt = {pymesh.Exit, pymesh.RemoteError}
    raisable = [
        obj
        for obj in (getattr(pymesh, n) for n in pymesh.__all__)
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj not in exempt
    ]
    assert len(raisable) > 20
    assert [e for e in raisable if not issubclass(e, pymesh.PymeshError)] == []


def test_private_modules_are_not_reached_by_the_faces() -> None:
    """shell/ and tui/ use the public API only (STYLE: the faces import nothing private)."""
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for face in ("shell", "tui"):
        for path in (root / face).rglob("*.py"):
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"from pymesh\.(wire|runtime|services)\._\w+ import|from pymesh\._\w+ import|pymesh\.runtime import _", line):
                    offenders.append(f"{path.relative_to(root)}:{lineno}: {line.strip()}")
    assert offenders == [], "\n".join(offenders)
