"""The command line and the shell (installed as ``pymesh.shell``).

* :mod:`pymesh.shell.cli` — the ``pymesh`` command;
* ``pymesh shell`` — an iex-like REPL on a live node, and ``pymesh remsh`` to
  attach to one over SSH;
* :func:`shell_namespace` — the namespace the shell (and ``pymesh rpc`` on a
  node started by ``pymesh run``/``pymesh shell``) evaluates in.
"""

from ._namespace import shell_namespace

__all__ = ["shell_namespace"]
