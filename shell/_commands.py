"""The CLI entries of ``pymesh shell`` and ``pymesh remsh``.

Their arguments are declared here; the commands themselves (prompt_toolkit,
asyncssh) are imported only when run, so that ``pymesh run`` and the other
commands start without loading them.
"""

from __future__ import annotations

import argparse

from ._node_commands import add_node_flags

__all__ = ["configure_remsh", "configure_shell", "run_remsh", "run_shell"]


def configure_shell(parser: argparse.ArgumentParser) -> None:
    add_node_flags(parser, name_required=False)


def run_shell(args: argparse.Namespace) -> int:
    from ._shell_command import run_shell as run

    return run(args)


def configure_remsh(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("node", metavar="NODE@HOST", help="the node to attach to (HOST defaults to this host)")
    parser.add_argument("--ssh-port", type=int, default=None, help="the node's SSH port (default: what it advertises)")
    parser.add_argument("-i", "--identity", action="append", default=[], metavar="KEY", help="private key file (repeatable; default: ~/.ssh keys and the agent)")
    parser.add_argument("-l", "--user", default=None, help="user name to log in as (default: yours)")
    parser.add_argument("--epmd-port", type=int, default=None, help="port mapper port on HOST")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the connection (default 10)")


def run_remsh(args: argparse.Namespace) -> int:
    from ._remsh import run_remsh as run

    return run(args)
