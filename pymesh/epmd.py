"""The port mapper, public: Erlang's EPMD protocol, client and server.

A node registers its name and distribution port with the port mapper of its
host (:func:`register`, done by :func:`pymesh.start`); a node that wants to
connect asks that host's port mapper for the port (:func:`port_please`);
:func:`names` lists what is registered, like ``epmd -names``. pymesh's own
server (:class:`EpmdServer`, ``pymesh epmd``) and Erlang's ``epmd`` are
interchangeable. The port is :func:`default_epmd_port`: an explicit value, else
``$PYMESH_EPMD_PORT``, else ``$ERL_EPMD_PORT``, else 4369.
"""

from .runtime._epmd import (
    EpmdServer,
    Registration,
    default_epmd_port,
    ensure_running,
    names,
    port_please,
    register,
    serve_forever,
)
from .wire._epmd import NodeEntry

__all__ = [
    "EpmdServer",
    "Registration",
    "NodeEntry",
    "default_epmd_port",
    "ensure_running",
    "names",
    "port_please",
    "register",
    "serve_forever",
]
