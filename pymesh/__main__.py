"""``python -m pymesh``: the same as the ``pymesh`` command (see :mod:`pymesh.shell.cli`)."""

from pymesh.shell.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
