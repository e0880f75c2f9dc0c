"""pymesh — the BEAM's distributed-node experience, in Python on asyncio.

Start a named node, spawn lightweight processes, send them messages, link and
monitor them, and connect to other nodes — with the names Erlang and Elixir
users know::

    import asyncio, pymesh
    from pymesh import Node, spawn, send, receive, self

    async def echo():
        while True:
            frm, msg = await receive()
            send(frm, msg)

    async def main():
        await pymesh.start("node1", cookie="secret")
        pid = spawn(echo)
        send(pid, (self(), "hello"))
        print(await receive())            # 'hello'
        print(await Node.connect("node2@vm"), Node.list())

    asyncio.run(main())

Layers (an import only ever points down): :mod:`pymesh.wire` (the sans-IO
distribution protocol and term codec), :mod:`pymesh.runtime` (processes, nodes,
port mapper, GenServer, Supervisor), :mod:`pymesh.services` (registries,
discovery), and the faces ``pymesh.shell`` and ``pymesh.tui``. Everything a
user needs is exported here; the modules behind it are private.
"""

from ._errors import (
    AlreadyRegistered,
    BadKey,
    DiscoveryError,
    EtcdError,
    LockAborted,
    RegistryError,
    AuthenticationError,
    BadName,
    CallExit,
    CallTimeout,
    ConfigError,
    DecodeError,
    EncodeError,
    EpmdError,
    FrameTooLarge,
    HandshakeError,
    LocalProtocolError,
    NameTaken,
    NoProcess,
    NodeError,
    NotAlive,
    NotAProcess,
    ProcessError,
    ProtocolError,
    PymeshError,
    ReceiveTimeout,
    RemoteProtocolError,
    SpawnError,
    UnknownRegistry,
    WouldBlock,
)
from .runtime._connection import ConnectionStats
from .runtime._genserver import NOREPLY, GenServer, call, cast, reply
from .runtime._loop import loop_name, run
from .runtime._node import Node, start, stop
from .runtime._pattern import ANY, matches
from .runtime._process import (
    Exit,
    add_exit_hook,
    remove_exit_hook,
    ProcessInfo,
    demonitor,
    exit,
    flush_mailbox,
    is_alive,
    link,
    make_ref,
    monitor,
    process_flag,
    process_info,
    processes,
    receive,
    register,
    registered,
    self,
    send,
    send_nowait,
    send_wait,
    spawn,
    spawn_link,
    spawn_monitor,
    spawn_opt,
    trap_exit,
    unlink,
    unregister,
    whereis,
)
from .runtime._rpc import RpcError, evaluate, rpc_call, rpc_eval, set_eval_namespace
from .runtime._supervisor import ChildSpec, Supervisor
from .runtime._tls import TLSConfig
from .services import (
    PG,
    DistributedChildSpec,
    DistributedRegistry,
    DistributedSupervisor,
    DistributionStrategy,
    EtcdRegistry,
    Global,
    NoQuorum,
    Registry,
    UniformDistribution,
    UniformQuorumDistribution,
)
from .wire._terms import DecodeLimits
from .wire._types import Pid, Ref, RemoteError

__version__ = "0.1.0"

__all__ = [
    # nodes
    "run",
    "loop_name",
    "start",
    "stop",
    "Node",
    "ConnectionStats",
    "TLSConfig",
    "DecodeLimits",
    # processes
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "spawn_opt",
    "self",
    "send",
    "send_wait",
    "send_nowait",
    "receive",
    "flush_mailbox",
    "register",
    "unregister",
    "whereis",
    "registered",
    "link",
    "unlink",
    "monitor",
    "demonitor",
    "exit",
    "Exit",
    "trap_exit",
    "process_flag",
    "is_alive",
    "process_info",
    "ProcessInfo",
    "add_exit_hook",
    "remove_exit_hook",
    "processes",
    "make_ref",
    "Pid",
    "Ref",
    "RemoteError",
    "ANY",
    "matches",
    # OTP behaviours
    "GenServer",
    "call",
    "cast",
    "reply",
    "NOREPLY",
    "Supervisor",
    "ChildSpec",
    # registries
    "Registry",
    "Global",
    "PG",
    "DistributedRegistry",
    "DistributedSupervisor",
    "DistributedChildSpec",
    "DistributionStrategy",
    "UniformDistribution",
    "UniformQuorumDistribution",
    "NoQuorum",
    "EtcdRegistry",
    # rpc
    "rpc_call",
    "rpc_eval",
    "RpcError",
    "evaluate",
    "set_eval_namespace",
    # errors
    "PymeshError",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "FrameTooLarge",
    "HandshakeError",
    "AuthenticationError",
    "EncodeError",
    "DecodeError",
    "NodeError",
    "NotAlive",
    "NameTaken",
    "EpmdError",
    "WouldBlock",
    "ConfigError",
    "ProcessError",
    "NotAProcess",
    "NoProcess",
    "BadName",
    "ReceiveTimeout",
    "CallTimeout",
    "CallExit",
    "SpawnError",
    "AlreadyRegistered",
    "UnknownRegistry",
    "RegistryError",
    "BadKey",
    "LockAborted",
    "EtcdError",
    "DiscoveryError",
]
