"""Chaos tests: real nodes, real faults (kill -9, SIGSTOP, partitions, latency), invariants checked.

``harness.py`` runs a cluster through a seeded fault schedule and checks the
guarantees pymesh states (docs: GUARANTEES); ``network.py`` is the
fault-injecting loopback network; ``workload.py`` runs inside every node.
``test_chaos.py`` is the short run of the test suite; the long run is
``python -m tests.chaos --nodes 5 --minutes 10 --seed S``.
"""
