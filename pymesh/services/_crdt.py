"""A delta-state add-wins map (AWLWWMap): the replicated data behind the distributed registry and supervisor.

Pure data structure: no asyncio, no sockets, no clocks. The replication layer
(:mod:`pymesh.services._replicator`) moves its deltas between nodes.

How it works, in the vocabulary of the delta-CRDT papers (Almeida, Shoker,
Baquero) and of Elixir's ``delta_crdt``:

* Every write made on a replica gets a fresh **dot** ``(replica, counter)``.
  A key maps to the set of dots that currently hold a value for it.
* The **causal context** records every dot a replica has seen: a version
  vector (each replica's contiguous prefix ``1..n``) plus a *dot cloud* for the
  dots seen out of order.
* ``add(key, value)`` makes a new dot and *supersedes* the dots it observed
  for ``key``; ``remove(key)`` supersedes them with nothing. Each returns a
  **delta**: a tiny map holding just the new dot and the superseded dots in
  its context.
* ``merge(other)`` (the *join*) keeps a dot when both sides hold it, or when
  one side holds it and the other has never seen it. A dot one side has seen
  and dropped stays dropped: that is a remove. An add concurrent with a remove
  survives (add wins), because the remove never saw its dot.

Join is commutative, associative and idempotent, so replicas that have
received the same deltas (or full states), in any order, any number of times,
hold the same map. Deltas joined together form a *delta group*: batching
deltas is just merging them into one buffer map.

Concurrent adds of one key leave several dots: :meth:`AWLWWMap.get` returns
the value whose ``(rank(value), dot)`` is smallest — a rule every replica
computes identically — and :meth:`AWLWWMap.dots` shows them all, so a user can
resolve the conflict (the registry keeps the oldest registration).

``add(..., replace=dots)`` supersedes only the given dots rather than every
observed one. The registry uses it so that a node never erases, by accident,
an entry it merely cannot see (one owned by a node on the far side of a
partition): such entries meet again on heal, as a conflict with a
deterministic winner.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any

__all__ = ["Dot", "CausalContext", "AWLWWMap", "join"]

#: ``(replica id, counter)``: the identity of one write.
Dot = tuple[Any, int]


class CausalContext:
    """The set of dots a replica has seen: a version vector plus a dot cloud."""

    __slots__ = ("vv", "cloud")

    def __init__(self, vv: dict[Any, int] | None = None, cloud: Iterable[Dot] = ()) -> None:
        self.vv: dict[Any, int] = dict(vv) if vv else {}
        self.cloud: set[Dot] = set(cloud)

    def __contains__(self, dot: Dot) -> bool:
        return dot[1] <= self.vv.get(dot[0], 0) or dot in self.cloud

    def add(self, dot: Dot) -> None:
        """Record ``dot`` as seen (into the cloud; :meth:`compact` tidies up)."""
        if dot[1] > self.vv.get(dot[0], 0):
            self.cloud.add(dot)

    def next_dot(self, replica: Any) -> Dot:
        """A dot of ``replica`` this context has not seen."""
        n = self.vv.get(replica, 0) + 1
        while (replica, n) in self.cloud:
            n += 1
        return (replica, n)

    def update(self, other: CausalContext) -> None:
        """Add every dot of ``other`` (the causal-context join)."""
        vv = self.vv
        for r, n in other.vv.items():
            if n > vv.get(r, 0):
                vv[r] = n
        if self.cloud:
            self.cloud = {d for d in self.cloud if d[1] > vv.get(d[0], 0)}
        for d in other.cloud:
            if d[1] > vv.get(d[0], 0):
                self.cloud.add(d)

    def compact(self) -> None:
        """Fold the cloud's dots that continue a replica's prefix into the vector."""
        if not self.cloud:
            return
        by_replica: dict[Any, list[int]] = {}
        for r, n in self.cloud:
            by_replica.setdefault(r, []).append(n)
        cloud: set[Dot] = set()
        vv = self.vv
        for r, counters in by_replica.items():
            top = vv.get(r, 0)
            for n in sorted(counters):
                if n == top + 1:
                    top = n
                elif n > top:
                    cloud.add((r, n))
            if top:
                vv[r] = top
        self.cloud = cloud

    def copy(self) -> CausalContext:
        return CausalContext(self.vv, self.cloud)

    def normalized(self) -> tuple[dict[Any, int], frozenset[Dot]]:
        """A compacted, comparable form (for equality and tests)."""
        c = self.copy()
        c.compact()
        return ({r: n for r, n in c.vv.items() if n}, frozenset(c.cloud))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CausalContext) and self.normalized() == other.normalized()

    def __repr__(self) -> str:
        return f"CausalContext(vv={self.vv!r}, cloud={sorted(self.cloud, key=repr)!r})"


def _no_rank(value: Any) -> int:
    return 0


class AWLWWMap:
    """An add-wins map replicated by deltas; see the module docstring.

    ``replica`` names this replica in its dots (unique per incarnation: a
    restarted replica must not reuse one). ``rank(value)`` orders concurrent
    values of one key (smallest wins; dots break ties). ``compacting=False``
    makes a delta buffer: its context stays a plain dot set, which is what
    lets a merge touch only the keys a delta names.

    A map holds no empty keys. Values must not be mutated after they are added.
    """

    __slots__ = ("replica", "entries", "context", "rank", "compacting", "_dot_key")

    def __init__(
        self, replica: Any = None, *, rank: Callable[[Any], Any] | None = None, compacting: bool = True
    ) -> None:
        self.replica = replica
        self.entries: dict[Hashable, dict[Dot, Any]] = {}
        self.context = CausalContext()
        self.rank = rank or _no_rank
        self.compacting = compacting
        self._dot_key: dict[Dot, Hashable] = {}

    # --- mutators: each applies itself and returns its delta ----------------------

    def add(self, key: Hashable, value: Any, replace: Iterable[Dot] | None = None) -> AWLWWMap:
        """Set ``key`` to ``value`` with a new dot; return the delta.

        The new dot supersedes every dot observed for ``key`` — or, with
        ``replace``, only those of the given dots that ``key`` holds.
        Raises ``TypeError`` for an unhashable key and ``ValueError`` when
        this map has no replica id.
        """
        if self.replica is None:
            raise ValueError("this map has no replica id: only a replica can add")
        hash(key)
        old = self.entries.get(key, {})
        superseded = old.keys() if replace is None else [d for d in replace if d in old]
        dot = self.context.next_dot(self.replica)
        delta = AWLWWMap(compacting=False)
        delta.entries[key] = {dot: value}
        delta._dot_key[dot] = key
        delta.context.cloud.update(superseded)
        delta.context.cloud.add(dot)
        self.merge(delta)
        return delta

    def remove(self, key: Hashable, dots: Iterable[Dot] | None = None) -> AWLWWMap:
        """Drop ``key`` (only the given ``dots`` of it, if given); return the delta.

        Removing an absent key yields an empty delta.
        """
        old = self.entries.get(key, {})
        gone = list(old) if dots is None else [d for d in dots if d in old]
        delta = AWLWWMap(compacting=False)
        delta.context.cloud.update(gone)
        if gone:
            self.merge(delta)
        return delta

    # --- join ---------------------------------------------------------------------

    def merge(self, other: AWLWWMap) -> set[Hashable]:
        """Join ``other`` (a delta, a delta group or a full state) into this map.

        Returns the keys whose set of dots changed.
        """
        ctx, octx = self.context, other.context
        theirs_all = other.entries
        keys: set[Hashable] = set(theirs_all)
        if octx.vv:
            keys.update(self.entries)  # a full state: any key may have been removed there
        else:
            dot_key = self._dot_key
            for d in octx.cloud:
                k = dot_key.get(d)
                if k is not None:
                    keys.add(k)
        changed: set[Hashable] = set()
        entries = self.entries
        for key in keys:
            mine = entries.get(key)
            theirs = theirs_all.get(key)
            kept: dict[Dot, Any] = {}
            if mine:
                for d, v in mine.items():
                    if (theirs is not None and d in theirs) or d not in octx:
                        kept[d] = v
            if theirs:
                for d, v in theirs.items():
                    if d not in kept and d not in ctx:
                        kept[d] = v
            if mine is None:
                if kept:
                    entries[key] = kept
                    for d in kept:
                        self._dot_key[d] = key
                    changed.add(key)
            elif len(kept) != len(mine) or kept.keys() != mine.keys():
                for d in mine:
                    if d not in kept:
                        del self._dot_key[d]
                for d in kept:
                    self._dot_key[d] = key
                if kept:
                    entries[key] = kept
                else:
                    del entries[key]
                changed.add(key)
        ctx.update(octx)
        if self.compacting:
            ctx.compact()
        return changed

    # --- reading --------------------------------------------------------------------

    def dots(self, key: Hashable) -> dict[Dot, Any]:
        """Every live dot of ``key`` with its value (several after concurrent adds)."""
        return dict(self.entries.get(key, ()))

    def winner(self, key: Hashable) -> tuple[Dot, Any] | None:
        """``(dot, value)`` of the value that wins for ``key``, or None."""
        dots = self.entries.get(key)
        if not dots:
            return None
        if len(dots) == 1:
            return next(iter(dots.items()))
        rank = self.rank
        return min(dots.items(), key=lambda dv: (rank(dv[1]), dv[0]))

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The winning value of ``key``, or ``default``."""
        w = self.winner(key)
        return default if w is None else w[1]

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self.entries)

    def items(self) -> Iterator[tuple[Hashable, Any]]:
        """``(key, winning value)`` for every key."""
        for key in self.entries:
            yield key, self.get(key)

    def to_dict(self) -> dict[Hashable, Any]:
        return dict(self.items())

    def is_empty(self) -> bool:
        """True for a delta that carries nothing (no dots, empty context)."""
        return not self.entries and not self.context.vv and not self.context.cloud

    # --- copies and the wire ------------------------------------------------------------

    def copy(self) -> AWLWWMap:
        m = AWLWWMap(self.replica, rank=self.rank, compacting=self.compacting)
        m.entries = {k: dict(v) for k, v in self.entries.items()}
        m.context = self.context.copy()
        m._dot_key = dict(self._dot_key)
        return m

    def to_term(self) -> tuple[Any, ...]:
        """A term the codec can carry: ``(entries, vv, cloud)`` of lists."""
        entries = [(k, [(d[0], d[1], v) for d, v in dots.items()]) for k, dots in self.entries.items()]
        return (entries, list(self.context.vv.items()), list(self.context.cloud))

    @classmethod
    def from_term(cls, term: Any, *, rank: Callable[[Any], Any] | None = None) -> AWLWWMap:
        """Rebuild a map (a delta or a state) from :meth:`to_term`'s form.

        Raises ``ValueError`` for anything malformed (it came from a peer).
        """
        try:
            entries, vv, cloud = term
            m = cls(rank=rank, compacting=False)
            for r, n in vv:
                if type(n) is not int:
                    raise ValueError("counter is not an int")
                m.context.vv[r] = n
            for r, n in cloud:
                if type(n) is not int:
                    raise ValueError("counter is not an int")
                m.context.cloud.add((r, n))
            for key, dots in entries:
                hash(key)
                held: dict[Dot, Any] = {}
                for r, n, v in dots:
                    if type(n) is not int:
                        raise ValueError("counter is not an int")
                    held[(r, n)] = v
                    m._dot_key[(r, n)] = key
                if held:
                    m.entries[key] = held
        except (TypeError, ValueError) as e:
            raise ValueError(f"malformed map term: {e}") from None
        return m

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, AWLWWMap)
            and self.entries == other.entries
            and self.context.normalized() == other.context.normalized()
        )

    def __repr__(self) -> str:
        return f"AWLWWMap(replica={self.replica!r}, {len(self.entries)} keys, {self.context!r})"


def join(a: AWLWWMap, b: AWLWWMap) -> AWLWWMap:
    """The join of two maps, as a new map (neither argument changes)."""
    out = a.copy()
    out.compacting = True
    out.merge(b)
    return out
