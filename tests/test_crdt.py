"""Property tests of the add-wins map behind the distributed registry (pymesh.services._crdt).

As Elixir's delta_crdt does: random operation sequences checked against a
plain ``dict`` model, and the join laws (commutative, associative,
idempotent) over states built by random histories of concurrent replicas.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pymesh.services._crdt import AWLWWMap, CausalContext, join
from pymesh.wire import _terms

KEYS = st.sampled_from(["a", "b", "c", ("t", 1), 7])
VALUES = st.integers(0, 5)
REPLICAS = ["r0", "r1", "r2"]

# one step of a history: ("add", replica, key, value) | ("remove", replica, key) | ("sync", src, dst)
STEP = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 2), KEYS, VALUES),
    st.tuples(st.just("remove"), st.integers(0, 2), KEYS),
    st.tuples(st.just("sync"), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("delta"), st.integers(0, 2), st.integers(0, 2)),
)


def replicas() -> list[AWLWWMap]:
    return [AWLWWMap(r) for r in REPLICAS]


def play(history: list[tuple], maps: list[AWLWWMap]) -> list[list[AWLWWMap]]:
    """Run a history over ``maps``; return each replica's deltas (for delta delivery checks)."""
    deltas: list[list[AWLWWMap]] = [[] for _ in maps]
    for step in history:
        kind = step[0]
        if kind == "add":
            _, r, key, value = step
            deltas[r].append(maps[r].add(key, value))
        elif kind == "remove":
            _, r, key = step
            deltas[r].append(maps[r].remove(key))
        elif kind == "sync":  # a full-state sync, src -> dst
            _, src, dst = step
            maps[dst].merge(maps[src].copy())
        else:  # ship src's latest delta to dst (deltas may be lost or repeated)
            _, src, dst = step
            if deltas[src]:
                maps[dst].merge(deltas[src][-1])
    return deltas


# --- against a dict model -----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("add"), KEYS, VALUES), st.tuples(st.just("remove"), KEYS)), max_size=40))
def test_one_replica_behaves_like_a_dict(ops: list[tuple]) -> None:
    m = AWLWWMap("r0")
    model: dict = {}
    for op in ops:
        if op[0] == "add":
            m.add(op[1], op[2])
            model[op[1]] = op[2]
        else:
            m.remove(op[1])
            model.pop(op[1], None)
        assert m.to_dict() == model
    assert len(m) == len(model)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.tuples(st.just("add"), st.integers(0, 2), KEYS, VALUES), st.tuples(st.just("remove"), st.integers(0, 2), KEYS)),
        max_size=30,
    )
)
def test_causally_ordered_ops_on_many_replicas_behave_like_a_dict(ops: list[tuple]) -> None:
    """Each op on a random replica, its delta delivered everywhere before the next op."""
    maps = replicas()
    model: dict = {}
    for op in ops:
        r = op[1]
        if op[0] == "add":
            delta = maps[r].add(op[2], op[3])
            model[op[2]] = op[3]
        else:
            delta = maps[r].remove(op[2])
            model.pop(op[2], None)
        for i, m in enumerate(maps):
            if i != r:
                # through the wire form, as the registry ships it
                m.merge(AWLWWMap.from_term(_terms.decode(_terms.encode(delta.to_term()))))
        for m in maps:
            assert m.to_dict() == model


# --- the join laws ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=40))
def test_join_is_commutative_associative_idempotent(history: list[tuple]) -> None:
    a, b, c = maps = replicas()
    play(history, maps)
    assert join(a, b) == join(b, a)
    assert join(join(a, b), c) == join(a, join(b, c))
    assert join(a, a) == a
    assert join(join(a, b), b) == join(a, b)


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=40), st.randoms(use_true_random=False))
def test_replicas_converge_whatever_the_delivery_order(history: list[tuple], rnd: random.Random) -> None:
    """Every delta delivered in a random order, some twice, gives the full-state join."""
    maps = replicas()
    deltas = play(history, maps)
    everything = join(join(maps[0], maps[1]), maps[2])
    for i in range(3):
        target = maps[i].copy()
        pending = [d for ds in deltas for d in ds]
        pending += rnd.sample(pending, k=len(pending) // 3)  # duplicates
        rnd.shuffle(pending)
        for d in pending:
            target.merge(d)
        assert target.to_dict() == everything.to_dict()
        assert {k: target.dots(k) for k in target} == {k: everything.dots(k) for k in everything}


@settings(max_examples=200, deadline=None)
@given(st.lists(STEP, max_size=30))
def test_delta_groups_equal_their_deltas(history: list[tuple]) -> None:
    """Merging deltas into one buffer (batching) ships the same information."""
    maps = replicas()
    deltas = play(history, maps)
    for ds in deltas:
        group = AWLWWMap(compacting=False)
        one_by_one = AWLWWMap("x")
        for d in ds:
            group.merge(d)
            one_by_one.merge(d)
        batched = AWLWWMap("x")
        batched.merge(group)
        assert batched == one_by_one


# --- examples worth naming ----------------------------------------------------------------------


def test_add_wins_over_a_concurrent_remove() -> None:
    a, b = AWLWWMap("a"), AWLWWMap("b")
    b.merge(a.add("k", 1))
    d_remove = b.remove("k")
    d_add = a.add("k", 2)  # concurrent with b's remove
    a.merge(d_remove)
    b.merge(d_add)
    assert a.to_dict() == b.to_dict() == {"k": 2}


def test_concurrent_adds_keep_both_dots_and_pick_one_winner_everywhere() -> None:
    a, b = AWLWWMap("a", rank=lambda v: v), AWLWWMap("b", rank=lambda v: v)
    da, db = a.add("k", 5), b.add("k", 3)
    a.merge(db)
    b.merge(da)
    assert len(a.dots("k")) == len(b.dots("k")) == 2
    assert a.get("k") == b.get("k") == 3


def test_replace_supersedes_only_the_given_dots() -> None:
    a, b = AWLWWMap("a"), AWLWWMap("b")
    b.merge(a.add("k", "a's"))
    own = b.add("k", "b's", replace=())  # b does not erase a's entry
    a.merge(own)
    assert sorted(a.dots("k").values()) == sorted(b.dots("k").values()) == ["a's", "b's"]


def test_context_compacts_out_of_order_dots() -> None:
    c = CausalContext()
    for dot in [("r", 3), ("r", 1), ("r", 2), ("r", 5)]:
        c.add(dot)
    c.compact()
    assert c.vv == {"r": 3} and c.cloud == {("r", 5)}
    assert ("r", 2) in c and ("r", 4) not in c


def test_malformed_terms_are_value_errors() -> None:
    for bad in [None, (1, 2), ([(["unhashable"], [])], [], []), ([], [("r", "x")], [])]:
        with pytest.raises(ValueError):
            AWLWWMap.from_term(bad)
