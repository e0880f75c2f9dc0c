"""Fuzzing the wire: the frame decoder, the term codec, the handshake and the port mapper codec.

The rule: any bytes from a peer parse, or raise a documented protocol error
(:class:`~pymesh.RemoteProtocolError` and its subclasses) — never anything
else, never a hang, never unbounded memory. ``targets.py`` states it per
parser; ``corpus/`` holds seeds and every crasher found; ``test_fuzz.py`` is
the test suite's share (Hypothesis: structured mutation, a handshake state
machine with an adversary, a few thousand engine inputs); ``python -m
tests.fuzz --inputs 1000000`` is the long run (``--engine atheris`` for
coverage-guided fuzzing when atheris is installed).
"""
