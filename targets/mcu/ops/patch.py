"""Patch-based execution (MCUNetV2's idea) and Conv+Pool fusion: a stage of row-local ops
(Conv, DepthwiseConv, pools, Pad, Add/Mul, requantize, lookup tables, channel Concat) runs
band by band.

A *stage* is a run of ops whose intermediate tensors are used inside it only. Its output
rows are cut into bands (patches spanning the full width: every kernel already runs on a
window of rows, `rows.py`'s trick, so no kernel changes). For each band, the rows every
intermediate tensor must hold are found backwards through the receptive field (the halo),
each op computes exactly those rows of its output from the bands of its inputs, and the
last op writes its rows into the stage's full output tensor. Only one band of each early
high-resolution activation is live at a time; the halo rows are computed once per band
that needs them (the recompute overhead, reported as extra MACs). Every output byte is
computed by the unchanged kernel from the same input bytes, and int8 requantization is
per pixel, so the result is bit-exact with the unpatched model.

Two uses, both kept only where the planner's arena shows a gain:
- ``--patch-inference``: the first stage from the graph input, split point and band count
  chosen by the planned arena (`choose_patch_stage`);
- Conv+Pool fusion (default): a Conv (and its element-wise followers) feeding a pool whose
  windows do not overlap runs one pool row at a time, so the conv's full output never
  exists and no MAC is repeated (`fuse_conv_pools`).

The stage becomes one ``patch`` QOp: its emitter (`emit_patch`) emits each op's kernel call
once and loops over the bands with a table of per-band row geometry and buffer offsets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from edgec.targets.mcu.ops.record import OpRecord
from edgec.targets.mcu.qgraph import QGraph, QOp
from edgec.targets.mcu.rows import input_rows, row_window

WINDOWED = ("conv", "dwconv", "maxpool", "avgpool", "pad", "conv_s16", "dwconv_s16", "maxpool_s16", "pad_s16")
ELEMENTWISE = ("add", "mul", "requant", "lut", "hardswish_s16", "add_s16", "requant_s8_s16", "requant_s16_s8")
# A Concat along the channels (NHWC axis 3) joins its inputs row by row (SqueezeNet's fire modules).
ROW_JOIN = ("concat",)
BAND_COUNTS = (2, 3, 4, 6, 8, 12, 16)
# Ops before the first row-local one that the first stage may start after.
PREFIX = 4
# Stages planned for real per search (the rest are ranked by their estimated peak only).
PLANNED = 6


def _window(g: QGraph, op: QOp) -> tuple[int, int, int]:
    """(stride, top pad, rows one output row reads) along H of the op's first input."""
    geo = row_window(g, op)  # conv, dwconv, pools: the row-in-place schedule's own geometry
    if geo is not None:
        return geo
    if op.kind in ("pad", "pad_s16"):
        return 1, op.attrs["pads"][1][0], 1
    return 1, 0, 1


def _acts(g: QGraph, op: QOp) -> list[str]:
    """The op's activation inputs, in argument order (duplicates kept)."""
    return [n for n in (op.inputs[:1] if op.kind in WINDOWED else op.inputs) if n and not g.t(n).is_const]


def _row_local(g: QGraph, op: QOp) -> bool:
    if op.kind not in WINDOWED + ELEMENTWISE + ROW_JOIN or len(op.outputs) != 1:
        return False
    y = g.t(op.outputs[0])
    tensors = [y] + [g.t(n) for n in _acts(g, op)]
    if any(len(t.shape) != 4 or t.shape[0] != 1 or t.dtype not in ("int8", "int16") for t in tensors):
        return False
    if op.kind in ("dwconv", "dwconv_s16") and op.attrs.get("depth_mult", 1) != 1:
        return False
    if op.kind in ("pad", "pad_s16") and (len(op.attrs["pads"]) != 4 or tuple(op.attrs["pads"][0]) != (0, 0)):
        return False
    if op.kind in ROW_JOIN:  # channels joined: every input has the output's rows and columns
        # (int8 only: the band table's join offsets count bytes)
        return y.dtype == "int8" and op.attrs.get("axis") == 3 and len(tensors) == len(op.inputs) + 1 and \
            all(t.shape[:3] == y.shape[:3] for t in tensors)
    # Element-wise ops without broadcasting: a band is a contiguous run of whole rows.
    return op.kind in WINDOWED or all(t.shape == y.shape for t in tensors)


@dataclass(frozen=True)
class Stage:
    """A planned stage: ``ops`` in run order; per band and op, the op's table row."""

    ops: tuple[QOp, ...]
    bands: int
    table: tuple[tuple[int, ...], ...]  # one row per band: every op's fields, concatenated
    offsets: dict  # intermediate tensor -> its band buffer's offset in the stage's scratch
    scratch_bytes: int
    macs: int  # executed (with the halo rows computed again)
    nominal_macs: int

    @property
    def output(self) -> str:
        return self.ops[-1].outputs[0]


def _row_bytes(g: QGraph, name: str) -> int:
    t = g.t(name)
    return t.nbytes // t.shape[1]


def _macs_per_row(g: QGraph, op: QOp) -> int:
    from edgec.targets.mcu.codegen import op_macs

    return op_macs(g, op) // g.t(op.outputs[0]).shape[1]


def plan_stage(g: QGraph, ops: list[QOp], bands: int) -> Stage | None:
    """The bands of ``ops`` (a closed run of row-local ops), or None when a band would hold
    no real input rows of a windowed op (rows of padding only: leave those to the plain plan)."""
    from edgec.targets.mcu.planner import _PLACE_ORDERS, Buffer, _place

    out = ops[-1].outputs[0]
    h = g.t(out).shape[1]
    if bands > h:
        return None
    cuts = [round(i * h / bands) for i in range(bands + 1)]
    needs = []
    for r0, r1 in zip(cuts, cuts[1:]):
        need = {out: (r0, r1)}
        for op in reversed(ops):
            if op.outputs[0] not in need:
                return None  # an op whose output the stage never reads
            o0, o1 = need[op.outputs[0]]
            stride, pad, extent = _window(g, op)
            for x in _acts(g, op):
                a, b = input_rows(o0, o1, stride, pad, extent, g.t(x).shape[1])
                if b <= a:
                    return None
                lo, hi = need.get(x, (a, b))
                need[x] = (min(lo, a), max(hi, b))
        needs.append(need)
    inner = {op.outputs[0] for op in ops[:-1]}
    # Band buffers of the intermediates, placed by their lifetimes inside one band.
    users = {t: [i for i, op in enumerate(ops) if t in op.inputs] for t in inner}
    bufs = []
    for i, op in enumerate(ops[:-1]):
        t = op.outputs[0]
        rows = max(n[t][1] - n[t][0] for n in needs)
        bufs.append(Buffer(i, rows * _row_bytes(g, t), i, max(users[t]), tensors=[t]))
    scratch, offs = min((_place(bufs, 0, key) for key in _PLACE_ORDERS), key=lambda r: r[0]) if bufs else (0, {})
    offsets = {b.tensors[0]: offs[b.id] for b in bufs}
    table, macs = [], 0
    for need in needs:
        row: list[int] = []
        for op in ops:
            y = op.outputs[0]
            o0, o1 = need[y]
            stride, pad, extent = _window(g, op)
            macs += (o1 - o0) * _macs_per_row(g, op)
            if op.kind in WINDOWED:
                x = op.inputs[0]
                a, b = input_rows(o0, o1, stride, pad, extent, g.t(x).shape[1])
                top = o0 * stride - pad  # a - top: the band's rows of top padding
                row += [b - a, a - top, o1 - o0, (a - (need[x][0] if x in inner else 0)) * _row_bytes(g, x)]
            else:
                # The call's size: elements, or for a Concat its `outer` (pixels of the band).
                per_row = g.t(y).shape[2] if op.kind in ROW_JOIN else g.t(y).size // g.t(y).shape[1]
                row += [(o1 - o0) * per_row, 0, 0]
                row += [(o0 - (need[x][0] if x in inner else 0)) * _row_bytes(g, x) for x in _acts(g, op)]
            row.append((o0 - (need[y][0] if y in inner else 0)) * _row_bytes(g, y))
        table.append(tuple(row))
    nominal = sum(_macs_per_row(g, op) * g.t(op.outputs[0]).shape[1] for op in ops)
    return Stage(tuple(ops), bands, tuple(table), offsets, scratch, macs, nominal)


def _closed(g: QGraph, ops: list[QOp]) -> bool:
    """Whether only the last op's output is used outside ``ops`` (and none is a graph output)."""
    ids = {id(op) for op in ops}
    for op in ops[:-1]:
        t = op.outputs[0]
        if t in g.outputs or any(id(c) not in ids for c in g.consumers(t)):
            return False
    return True


def fuse_stage(g: QGraph, stage: Stage) -> QGraph:
    """``g`` with the stage's ops replaced by one ``patch`` op."""
    ids = {id(op) for op in stage.ops}
    ext: list[str] = []
    for op in stage.ops:
        for n in op.inputs:
            if n and n not in ext and not any(n in o.outputs for o in stage.ops):
                ext.append(n)
    last = stage.ops[-1]
    fused = QOp("patch", last.name, ext, [stage.output],
                {"stage": stage, "ring_bytes": stage.scratch_bytes, "inplace": False}, "PATCH_STAGE")
    ops = [fused if op is last else op for op in g.ops if id(op) not in ids or op is last]
    return replace(g, ops=ops)


def _input_stages(g: QGraph) -> list[list[QOp]]:
    """Closed runs of row-local ops from the first op that reads a graph input, or from one
    of the `PREFIX` ops after it (past a float input's quantize, views, layout transposes)."""
    ops = g.ops
    first = next((i for i, op in enumerate(ops) if set(op.inputs) & set(g.inputs)), None)
    if first is None:
        return []
    runs = []
    for start in range(first, min(first + PREFIX + 1, len(ops))):
        for end in range(start, len(ops)):
            if not _row_local(g, ops[end]):
                break
            run = ops[start:end + 1]
            if len(run) > 1 and _closed(g, run) and any(op.kind in WINDOWED for op in run):
                runs.append(run)
    return runs


def _est_peak(g: QGraph, stage: Stage) -> int:
    """The stage's own peak: its full inputs and output plus the band buffers."""
    ext = {n for op in stage.ops for n in _acts(g, op)} - {op.outputs[0] for op in stage.ops}
    return sum(g.t(n).nbytes for n in ext) + g.t(stage.output).nbytes + stage.scratch_bytes


def choose_patch_stage(g: QGraph, arena: Callable[[QGraph], int], budget: int | None = None) -> tuple[QGraph, dict]:
    """The input stage to patch (split point and band count), ``g`` unchanged when none helps.

    With ``budget`` (arena bytes): the stage with the fewest extra MACs whose planned arena
    fits it (a firmware build pays for the RAM it needs, no more). Without, or when none
    fits: the smallest planned arena, fewest extra MACs on ties.
    """
    base = arena(g)
    stages = [s for run in _input_stages(g) for n in BAND_COUNTS if (s := plan_stage(g, run, n)) is not None]
    best, best_arena = None, base
    if budget is not None:
        # The earliest start first: a later start's estimate misses the peak before it.
        pos = {id(op): i for i, op in enumerate(g.ops)}
        cheap = sorted((s for s in stages if _est_peak(g, s) <= budget),
                       key=lambda s: (pos[id(s.ops[0])], s.macs, _est_peak(g, s)))
        for s in cheap[:3 * PLANNED]:
            a = arena(fuse_stage(g, s))
            if a <= budget and a < base:
                best, best_arena = s, a
                break
    if best is None:
        for s in sorted(stages, key=lambda s: (_est_peak(g, s), s.macs))[:PLANNED]:
            a = arena(fuse_stage(g, s))
            if a < best_arena or a == best_arena and best is not None and s.macs < best.macs:
                best, best_arena = s, a
    info = {"arena_bytes_without": base, "arena_bytes_with": best_arena, "stage": None}
    if best is None:
        return g, info
    info["stage"] = describe(g, best)
    return fuse_stage(g, best), info


def describe(g: QGraph, s: Stage) -> dict:
    return {"ops": len(s.ops), "bands": s.bands, "first": s.ops[0].name.rsplit("#", 1)[0],
            "last": s.ops[-1].name.rsplit("#", 1)[0], "output_shape": list(g.t(s.output).shape),
            "scratch_bytes": s.scratch_bytes, "extra_macs": s.macs - s.nominal_macs,
            "stage_macs": s.nominal_macs}


def fuse_conv_pools(g: QGraph, arena: Callable[[QGraph], int]) -> tuple[QGraph, list[dict]]:
    """Each Conv (-> element-wise ops) -> non-overlapping pool run one pool row at a time,
    where that lowers the planned arena."""
    fused: list[dict] = []
    base = None
    for pool in [op for op in g.ops if op.kind in ("maxpool", "avgpool")]:
        stride, _, extent = _window(g, pool)
        if extent > stride or not _row_local(g, pool):
            continue  # overlapping windows would compute conv rows twice
        run = [pool]
        while True:
            prod = g.producer(run[0].inputs[0])
            if prod is None or not _row_local(g, prod) or prod.kind not in ("conv", "dwconv") + ELEMENTWISE:
                break
            run.insert(0, prod)
            if prod.kind in ("conv", "dwconv"):
                break
        if run[0].kind not in ("conv", "dwconv") or not _closed(g, run):
            continue
        stage = plan_stage(g, run, g.t(pool.outputs[0]).shape[1])
        if stage is None or stage.macs != stage.nominal_macs:
            continue
        base = arena(g) if base is None else base
        trial = fuse_stage(g, stage)
        a = arena(trial)
        if a < base:
            fused.append({**describe(g, stage), "arena_bytes_without": base, "arena_bytes_with": a})
            g, base = trial, a
    return g, fused


# Per kind: the struct type of its params, and the C assignments of a band's 3 geometry fields.
_GEOMETRY = {
    "conv": ("edgec_conv_params", ("p.in_h", "p.pad_h", "p.out_h")),
    "dwconv": ("edgec_conv_params", ("p.in_h", "p.pad_h", "p.out_h")),
    "maxpool": ("edgec_pool_params", ("p.in_h", "p.pad_h", "p.out_h")),
    "avgpool": ("edgec_pool_params", ("p.in_h", "p.pad_h", "p.out_h")),
    "pad": ("edgec_pad_params", ("p.in_dims[1]", "p.pad_before[1]", "p.out_dims[1]")),
    "add": ("edgec_binary_params", ("p.size",)),
    "mul": ("edgec_binary_params", ("p.size",)),
    "requant": ("edgec_requant_params", ("p.size",)),
    "lut": (None, ()),  # its size is the call's first argument
    "conv_s16": ("edgec_conv_params", ("p.in_h", "p.pad_h", "p.out_h")),
    "dwconv_s16": ("edgec_conv_params", ("p.in_h", "p.pad_h", "p.out_h")),
    "maxpool_s16": ("edgec_pool_params", ("p.in_h", "p.pad_h", "p.out_h")),
    "pad_s16": ("edgec_pad_params", ("p.in_dims[1]", "p.pad_before[1]", "p.out_dims[1]")),
    "hardswish_s16": ("edgec_hswish16_params", ("p.size",)),
    "add_s16": ("edgec_add16_params", ("p.size",)),
    "requant_s8_s16": ("edgec_requant_params", ("p.size",)),
    "requant_s16_s8": ("edgec_requant_params", ("p.size",)),
}


def emit_patch(op: QOp, ctx) -> list[str]:
    from edgec.targets.mcu.ops import EMITTERS
    from edgec.targets.mcu.ops.resblock import _split_args

    stage: Stage = op.attrs["stage"]
    g = ctx.g
    tokens: dict[str, str] = {}

    plain = ctx.ref

    def token(name: str, writable: bool = False) -> str:
        if g.t(name).is_const:
            return plain(name, writable)
        return tokens.setdefault(name, f"@EDGEC_PATCH_{len(tokens)}@")

    ctx.ref = token  # the ops' emitters name their tensors by token; the bands place them
    try:
        calls = [EMITTERS[sub.kind](sub, ctx) for sub in stage.ops]
    finally:
        del ctx.ref
    def where(name: str) -> str:
        if name in stage.offsets:
            return f"({ctx.ring(op)} + {stage.offsets[name]})"
        return ctx.ref(name, name == stage.output)

    body, col = [], 0
    for sub, lines in zip(stage.ops, calls):
        if sub.kind in ROW_JOIN:
            # One edgec_concat_part_s8(in, out, outer, ...) per input: band pointers and outer.
            acts, out = _acts(g, sub), sub.outputs[0]
            outer, first, col = f"q[{col}]", col + 3, col + 4 + len(acts)
            for i, (x, line) in enumerate(zip(acts, lines, strict=True)):
                fn, args = line[:line.index("(")], _split_args(line)
                args[:3] = [f"{where(x)} + q[{first + i}]", f"{where(out)} + q[{first + len(acts)}]", outer]
                body.append(f"        {fn}({', '.join(args)});")
            continue
        if len(lines) != 1:
            raise RuntimeError(f"mcu patch stage: {sub.kind} emitted {len(lines)} statements, expected one call")
        call = lines[0]
        fn, args = call[:call.index("(")], _split_args(call)
        struct, fields = _GEOMETRY[sub.kind]
        sets = [f"{f} = q[{col + i}];" for i, f in enumerate(fields)]
        if sub.kind == "lut":
            args[0] = f"q[{col}]"
        col += 3
        names = [*_acts(g, sub), sub.outputs[0]]
        for i, a in enumerate(args):
            if a.startswith("@EDGEC_PATCH_"):
                name = next(n for n, t in tokens.items() if t == a)
                if name != names[0]:
                    raise RuntimeError(f"mcu patch stage: unexpected argument order in {call}")
                name = names.pop(0)
                # Band offsets are bytes: int16 tensors step through a byte pointer.
                args[i] = f"{where(name)} + q[{col}]" if g.t(name).dtype == "int8" else \
                    f"(int16_t *)(void *)((int8_t *){where(name)} + q[{col}])"
                col += 1
        if struct is not None:
            body.append(f"        {{ {struct} p = {args[0][1:]}; {' '.join(sets)} "
                        f"{fn}(&p, {', '.join(args[1:])}); }}")
        else:
            body.append(f"        {fn}({', '.join(args)});")
    width = col
    sym = ctx._unique("edgec_bands_" + op.name.split("/")[-1][-32:])
    rows = ",\n".join("    {" + ", ".join(map(str, r)) + "}" for r in stage.table)
    ctx.params.append(f"/* {stage.bands} bands x {len(stage.ops)} ops: per op its row geometry and buffer offsets. */\n"
                      f"static const int32_t {sym}[{stage.bands}][{width}] = {{\n{rows}\n}};")
    return ["{", "    int32_t band;", f"    for (band = 0; band < {stage.bands}; ++band) {{",
            f"        const int32_t *q = {sym}[band];", *body, "    }", "}"]


def kinds(op: QOp) -> list[str]:
    """The kinds whose kernels an op runs (a stage's ops; else its own)."""
    return [s.kind for s in op.attrs["stage"].ops] if op.kind == "patch" else [op.kind]


RECORDS = (OpRecord("PatchStage", kinds=("patch",), emit=emit_patch),)
