"""Static memory plan: every activation tensor gets a fixed offset in one arena.

1. Views: Reshape/Flatten/Squeeze outputs share their input's buffer (no copy).
2. In place: an element-wise op (requantize/ReLU, LUT, Add, Mul) writes over an input
   that dies at that op and has the output's size.
3. Graph inputs stay in the caller's input buffers and the ops producing graph outputs
   write straight into the caller's output buffers; or, with ``io_in_arena``, they are
   arena buffers like the others (their space is reused once they die), which the caller
   fills/reads through pointers (`edgec_model_input` / `edgec_model_output`).
4. Offsets: buffers taken in one of several orders (largest first, as TFLM's greedy
   planner; largest size x lifetime; earliest; longest-lived), each placed at the lowest
   4-byte aligned offset that does not overlap a placed buffer whose lifetime intersects
   its own; the smallest arena wins.
   Row in place: a Conv/DepthwiseConv/Pool whose input dies there shares the input's
   buffer and runs row by row through a small ring of output rows (`rows.py`); the
   plan keeps such a union only where it lowers the arena. Rings (of these and of the
   fused ops, ops/resblock.py) are arena buffers live during their op only.
5. Op order: besides the source order, a memory-aware topological order (run next the
   ready op that leaves the least live memory) is planned; the smaller arena wins.
6. Guard layout: the same buffers placed again with `GUARD_BYTES` after each one, for
   the debug build (``-DEDGEC_ARENA_CANARY``) that checks canary bytes there after every
   op: ASan cannot see a kernel writing past its tensor inside the one static arena.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgec.targets.mcu.ops import INPLACE_KINDS
from edgec.targets.mcu.qgraph import QGraph, QOp
from edgec.targets.mcu.rows import RowSchedule, schedule

ALIGN = 4
GUARD_BYTES = 16


@dataclass
class Buffer:
    id: int
    size: int
    first: int
    last: int
    kind: str = "arena"  # arena | input | output | const
    index: int = -1  # graph input/output index
    io: str = ""  # "input"/"output": a graph I/O tensor kept in the arena (io_in_arena)
    offset: int = 0
    tensors: list[str] = field(default_factory=list)


@dataclass
class Plan:
    order: list[QOp]
    buffers: dict[int, Buffer]
    tensor_buffer: dict[str, int]
    arena_bytes: int
    copies: set[str] = field(default_factory=set)
    naive_bytes: int = 0
    guard_offsets: dict[int, int] = field(default_factory=dict)  # buffer id -> offset in the guard layout
    guard_arena_bytes: int = 0
    rows: dict[str, RowSchedule] = field(default_factory=dict)  # output tensor -> row-in-place schedule
    rings: dict[str, int] = field(default_factory=dict)  # output tensor -> its op's row ring buffer

    @property
    def ring_bytes(self) -> int:
        """The largest row ring (each is an arena buffer live during its op only)."""
        return max((self.buffers[b].size for b in self.rings.values()), default=0)

    def where(self, name: str) -> Buffer:
        return self.buffers[self.tensor_buffer[name]]


class _UF:
    def __init__(self):
        self.p: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.p.setdefault(a, a)
        while self.p[a] != a:
            self.p[a] = self.p[self.p[a]]
            a = self.p[a]
        return a

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.p[rb] = ra


class _Groups(_UF):
    """A union-find that keeps each group's members and raw lifetime (first op writing a
    member, last op reading one, whether a member is a graph input/output) as groups merge:
    the planner asks for them after every union."""

    def __init__(self, names, order: list[QOp], in_set: set[str], out_set: set[str]):
        super().__init__()
        self.n = len(order)
        made: dict[str, int] = {}
        read: dict[str, int] = {}
        for i, op in enumerate(order):
            for t in op.outputs:
                made.setdefault(t, i)
            for t in op.inputs:
                read[t] = i
        self.groups = {t: [t] for t in names}
        self.raw = {t: [made.get(t, self.n), read.get(t, -1), t in in_set, t in out_set] for t in names}
        for t in names:
            self.find(t)

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        self.p[rb] = ra
        self.groups[ra].extend(self.groups.pop(rb))
        x, y = self.raw[ra], self.raw.pop(rb)
        self.raw[ra] = [min(x[0], y[0]), max(x[1], y[1]), x[2] or y[2], x[3] or y[3]]

    def __getitem__(self, root: str) -> list[int]:
        """The group's lifetime [first op, last op] (graph inputs from -1, outputs to the end)."""
        first, last, is_in, is_out = self.raw[root]
        first = -1 if is_in else first
        last = self.n if is_out else last
        return [first, max(last, first)]


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _plan_order(g: QGraph, order: list[QOp], inplace: bool = True, guard: int = 0,
                io_in_arena: bool = False, row_ops: frozenset[str] | None = None) -> Plan:
    """Plan ``order``; ``row_ops``: output tensors of the ops allowed to run row in place
    (None: every op that can)."""
    T = g.tensors
    copies: set[str] = set()
    in_set, out_set = set(g.inputs), set(g.outputs)
    uf = _Groups(T, order, in_set, out_set)

    def klass(root_members: list[str]) -> tuple[bool, bool, bool]:
        return (any(m in in_set for m in root_members), any(m in out_set for m in root_members),
                any(T[m].is_const for m in root_members))

    def members() -> dict[str, list[str]]:
        return uf.groups

    # 1. views
    for op in order:
        if op.kind == "reshape":
            x, y = op.inputs[0], op.outputs[0]
            gx = members()[uf.find(x)]
            gy = members()[uf.find(y)]
            cx, cy = klass(gx), klass(gy)
            io_clash = (cx[0] or cx[2]) and cy[1] or (cx[1] and cy[1])
            if io_clash:
                copies.add(op.outputs[0])
            else:
                uf.union(x, y)
    pos = {id(op): i for i, op in enumerate(order)}

    def lifetimes() -> _Groups:
        return uf

    # 2. in place
    rows: dict[str, RowSchedule] = {}
    if inplace:
        for op in order:
            if op.kind not in INPLACE_KINDS:
                if row_ops is None or op.outputs[0] in row_ops or op.attrs.get("inplace"):
                    _row_union(g, op, pos[id(op)], uf, members, klass, lifetimes, io_in_arena, rows)
                continue
            y = op.outputs[0]
            groups = members()
            cy = klass(groups[uf.find(y)])
            if any(cy):
                continue
            life = lifetimes()
            i = pos[id(op)]
            for x in op.inputs:
                if T[x].is_const or T[x].nbytes != T[y].nbytes or op.inputs.count(x) > 1:
                    continue
                cx = klass(groups[uf.find(x)])
                if any(cx) or life[uf.find(x)][1] != i:
                    continue
                uf.union(x, y)
                break

    # 3. buffers
    life = lifetimes()
    buffers: dict[int, Buffer] = {}
    tensor_buffer: dict[str, int] = {}
    rank = {name: i for i, name in enumerate(T)}
    for bid, (root, ms) in enumerate(sorted(members().items())):
        ms = sorted(ms, key=rank.__getitem__)  # in the graph's tensor order, whatever the merges
        size = max(T[m].nbytes for m in ms)
        b = Buffer(bid, size, life[root][0], life[root][1], tensors=ms)
        cin, cout, cconst = klass(ms)
        if cconst:
            b.kind = "const"
        elif cin:
            b.kind, b.index = "input", g.inputs.index(next(m for m in ms if m in in_set))
        elif cout:
            b.kind, b.index = "output", g.outputs.index(next(m for m in ms if m in out_set))
        if io_in_arena and b.kind in ("input", "output"):
            b.io, b.kind = b.kind, "arena"
        buffers[bid] = b
        for m in ms:
            tensor_buffer[m] = bid
    # The row rings of row-in-place and fused ops: arena buffers live during their op.
    rings: dict[str, int] = {}
    for i, op in enumerate(order):
        y = op.outputs[0]
        size = rows[y].ring_bytes if y in rows else op.attrs.get("ring_bytes", 0)
        if size:
            rings[y] = len(buffers)
            buffers[len(buffers)] = Buffer(len(buffers), size, i, i)

    # 4. offsets
    used = [b for b in buffers.values() if b.kind == "arena" and b.last >= 0 and b.first < len(order)]
    arena = min((_place(used, guard, key) for key in _PLACE_ORDERS), key=lambda r: r[0])
    for b in used:
        b.offset = arena[1][b.id]
    arena = arena[0]
    naive = sum(_align(b.size) for b in used)
    return Plan(list(order), buffers, tensor_buffer, _align(arena), copies, naive, rows=rows, rings=rings)


# Orders in which buffers are placed (TFLM's GreedyMemoryPlanner uses the first; the
# smallest arena over all of them is kept).
_PLACE_ORDERS = (
    lambda b: (-b.size, b.first, b.id),
    lambda b: (-b.size * (b.last - b.first + 1), b.first, b.id),
    lambda b: (b.first, -b.size, b.id),
    lambda b: (-(b.last - b.first), -b.size, b.id),
)


def _place(used: list[Buffer], guard: int, key) -> tuple[int, dict[int, int]]:
    """Each buffer at the lowest aligned offset clear of the placed buffers live with it."""
    placed: list[tuple[int, int, int, int]] = []  # offset, size, first, last
    offsets: dict[int, int] = {}
    arena = 0
    for b in sorted(used, key=key):
        conflicts = sorted(p for p in placed if not (p[3] < b.first or b.last < p[2]))
        off = 0
        for p_off, p_size, _, _ in conflicts:
            if off + b.size + guard <= p_off:
                break
            off = max(off, _align(p_off + p_size + guard))
        offsets[b.id] = off
        placed.append((off, b.size, b.first, b.last))
        arena = max(arena, off + b.size + guard)
    return arena, offsets


def _row_union(g, op, i, uf, members, klass, lifetimes, io_in_arena, rows) -> None:
    """Share op's input and output buffer when it can run row in place (`rows.py`)."""
    fused = op.attrs.get("inplace", False)  # a fused op that checked its own row order
    sched = None if fused else schedule(g, op)
    if not fused and sched is None:
        return
    x, y = op.inputs[0], op.outputs[0]
    groups = members()
    cx, cy = klass(groups[uf.find(x)]), klass(groups[uf.find(y)])
    # A graph input may be overwritten only when it lives in the arena; outputs never.
    if any(cy) or cx[1] or cx[2] or (cx[0] and not io_in_arena) or op.inputs.count(x) > 1:
        return
    if lifetimes()[uf.find(x)][1] != i:
        return
    uf.union(x, y)
    if sched is not None:
        rows[y] = sched


def _memory_aware_order(g: QGraph) -> list[QOp]:
    T = g.tensors
    remaining = list(g.ops)
    produced = set(g.inputs) | {n for n, t in T.items() if t.is_const}
    uses: dict[str, int] = {}
    for op in g.ops:
        for n in op.inputs:
            uses[n] = uses.get(n, 0) + 1
    order: list[QOp] = []
    while remaining:
        ready = [op for op in remaining if all(n in produced or not n for n in op.inputs)]
        if not ready:
            return list(g.ops)

        def delta(op: QOp) -> int:
            alloc = sum(T[n].nbytes for n in op.outputs)
            freed = sum(T[n].nbytes for n in set(op.inputs) if not T[n].is_const and uses.get(n, 0) == op.inputs.count(n)
                        and n not in g.outputs and n not in g.inputs)
            return alloc - freed

        op = min(ready, key=lambda o: (delta(o), remaining.index(o)))
        remaining.remove(op)
        order.append(op)
        produced.update(op.outputs)
        for n in op.inputs:
            uses[n] = uses.get(n, 0) - 1
    return order


def _prune_rows(g: QGraph, order: list[QOp], io_in_arena: bool, rows: str) -> Plan:
    """Plan ``order`` with row-in-place ops, dropping each one that does not lower the arena
    (its ring included): each costs a copy of its output and a kernel call per row."""
    best = _plan_order(g, order, io_in_arena=io_in_arena, row_ops=frozenset() if rows == "off" else None)
    if rows != "auto":
        return best
    keep = set(best.rows)
    for y in sorted(best.rows, key=lambda t: best.rows[t].ring_bytes, reverse=True):
        trial = _plan_order(g, order, io_in_arena=io_in_arena, row_ops=frozenset(keep - {y}))
        if trial.arena_bytes <= best.arena_bytes:
            best, keep = trial, keep - {y}
    return best


ROW_MODES = ("auto", "all", "off")


def plan(g: QGraph, io_in_arena: bool = False, rows: str = "auto") -> Plan:
    """The smallest-RAM plan over the candidate op orders.

    Args:
        g: The graph.
        io_in_arena: Graph inputs/outputs are arena buffers (the pointer API).
        rows: Row-in-place ops (`rows.py`): "auto" where they lower the RAM, "all" every
            op that can (tests and the fuzzer), "off" none.
    """
    orders = [list(g.ops)]
    alt = _memory_aware_order(g)
    if [id(o) for o in alt] != [id(o) for o in g.ops]:
        orders.append(alt)
    candidates = [_prune_rows(g, order, io_in_arena, rows) for order in orders]
    best = min(candidates, key=lambda p: (p.arena_bytes, candidates.index(p)))
    guarded = _plan_order(g, best.order, guard=GUARD_BYTES, io_in_arena=io_in_arena,
                          row_ops=frozenset(best.rows))
    assert guarded.tensor_buffer == best.tensor_buffer, "the guard layout must place the same buffers"
    best.guard_offsets = {bid: b.offset for bid, b in guarded.buffers.items()}
    best.guard_arena_bytes = guarded.arena_bytes
    return best


def greedy_baseline(g: QGraph, io_in_arena: bool = False) -> int:
    """Arena of the plain plan (no views/in-place reuse, source order) for the report."""
    return _plan_order(g, list(g.ops), inplace=False, io_in_arena=io_in_arena).arena_bytes
