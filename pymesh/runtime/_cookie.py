"""Where a node's cookie comes from: argument, environment, or the cookie file.

Like ``~/.erlang.cookie``: when neither the ``cookie`` argument nor
``PYMESH_COOKIE`` is given, the cookie is read from ``cookie`` in platformdirs'
user config dir (``~/.config/pymesh/cookie`` on Linux). If that file is absent it
is created with a random value and mode 0600, so every node a user starts on one
machine shares a cookie by default and nobody else can read it.
"""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path

import platformdirs

from .._errors import ConfigError

__all__ = ["resolve_cookie", "cookie_path"]

_ALPHABET = string.ascii_uppercase


def cookie_path() -> Path:
    """The default cookie file's path (it may not exist yet)."""
    return Path(platformdirs.user_config_dir("pymesh")) / "cookie"


def resolve_cookie(explicit: str | None = None) -> str:
    """The cookie to use: ``explicit``, else ``$PYMESH_COOKIE``, else the file.

    Raises :class:`ConfigError` when the cookie file is readable by others or
    empty, as ``erl`` refuses a world-readable ``.erlang.cookie``.
    """
    if explicit:
        return explicit
    env = os.environ.get("PYMESH_COOKIE")
    if env:
        return env
    path = cookie_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write("".join(secrets.choice(_ALPHABET) for _ in range(20)))
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"cookie file {path} must be accessible only by its owner (chmod 600 {path})")
    value = path.read_text().strip()
    if not value:
        raise ConfigError(f"cookie file {path} is empty")
    return value
