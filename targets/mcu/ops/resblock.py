"""Residual block fusion: Conv -> Conv (+ a projection Conv of the block input) -> Add runs
row by row (kernels/resblock.c), so neither the inner activation nor the second conv's
output ever exists whole, and the block's output overwrites its input in place. The same
driver runs a channel-expanding Conv -> DepthwiseConv pair (MobileNet's pointwise ->
depthwise), whose wide intermediate then exists only as k_h rows.

ResNet-8's blocks keep the block input alive across both convs: unfused, the peak is the
input plus the inner activation plus the second conv's output. Fused, it is the input plus
a window of the inner activation's rows (the second conv's k_h), one output row and one
projection row. Every row is computed by the unchanged Conv and Add kernels on a window of
rows (`rows.py`'s trick), so the block stays bit-exact.

`fuse_residual_blocks` rewrites the `QGraph` (build.py runs it before planning); the fused
QOp keeps the original ops in its attrs, and its emitter emits their kernels' arguments.
"""

from __future__ import annotations

from dataclasses import replace

from edgec.targets.mcu.ops.record import OpRecord
from edgec.targets.mcu.qgraph import QGraph, QOp
from edgec.targets.mcu.rows import input_rows, row_window


def _split_args(call: str) -> list[str]:
    """The top-level arguments of one emitted C call ``fn(a, (b, c), d);``."""
    body = call[call.index("(") + 1:call.rindex(")")]
    args, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        cur += ch
    return args + [cur.strip()]


def _conv_struct(sub: QOp, ctx) -> str:
    from edgec.targets.mcu.ops import EMITTERS

    fn = "edgec_dwconv_s8(" if sub.kind == "dwconv" else "edgec_conv_s8("
    (call,) = [line for line in EMITTERS[sub.kind](sub, ctx) if line.startswith(fn)]
    args = _split_args(call)
    p, _, w, b, m, s, _, scratch = args[:8]
    need = args[8] if sub.kind == "conv" else "0"
    run = "edgec_conv_s8"
    if sub.kind == "dwconv":
        run = "edgec_dwconv_any"
        if _DW_ADAPTER not in ctx.params:
            ctx.params.insert(0, _DW_ADAPTER)
    sym = ctx._unique("cw_" + sub.name.split("/")[-1][-32:])
    ctx.params.append(f"static const edgec_conv_w {sym} = {{{run}, {p}, {w}, {b}, {m}, {s}, {scratch}, {need}}};")
    return sym


# edgec_dwconv_s8 behind edgec_conv_fn (edgec_resblock.h), in the models that use it.
_DW_ADAPTER = """static void edgec_dwconv_any(const edgec_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                             const int32_t *mult, const int32_t *shift, int8_t *out, int8_t *pad, int32_t unused) {
    (void)unused;
    edgec_dwconv_s8(p, in, w, bias, mult, shift, out, pad);
}"""


def emit_resblock(op, ctx) -> list[str]:
    from edgec.targets.mcu.ops import EMITTERS

    c1, c2, sc, add = (op.attrs[k] for k in ("c1", "c2", "sc", "add"))
    add_p = _split_args(EMITTERS["add"](add, ctx)[0])[0] if add is not None else "0"
    s1, s2 = _conv_struct(c1, ctx), _conv_struct(c2, ctx)
    s3 = f"&{_conv_struct(sc, ctx)}" if sc is not None else "0"
    skip_first = int(add is not None and add.inputs[0] != c2.outputs[0])
    if add is None:  # a conv pair: its own entry, so that the Add kernel is not linked in
        return [f"edgec_convpair_s8(&{s1}, &{s2}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)}, "
                f"{ctx.ring(op)});"]
    return [f"edgec_resblock_s8(&{s1}, &{s2}, {s3}, {add_p}, {skip_first}, {ctx.ref(op.inputs[0])}, "
            f"{ctx.ref(op.outputs[0], True)}, {ctx.ring(op)});"]


def _inplace_safe(g: QGraph, c1: QOp, c2: QOp, sc: QOp | None, identity: bool) -> bool:
    """Whether output row r may overwrite the input's bytes once row r is computed: no
    later row reads them (the driver computes inner rows only as they are needed)."""
    x, y1, out = g.t(c1.inputs[0]), g.t(c1.outputs[0]), g.t(c2.outputs[0])
    if x.nbytes < out.nbytes:
        return False
    x_row, o_row = x.nbytes // x.shape[1], out.nbytes // out.shape[1]

    def window(conv: QOp, row: int, in_h: int) -> tuple[int, int]:
        return input_rows(row, row + 1, *row_window(g, conv), in_h)

    reads: list[int] = []  # the lowest input row each output row's step reads
    made = 0
    for r in range(out.shape[1]):
        lo = x.shape[1]
        _, b = window(c2, r, y1.shape[1])
        for q in range(made, b):
            lo = min(lo, window(c1, q, x.shape[1])[0])
        made = max(made, b)
        if sc is not None:
            lo = min(lo, window(sc, r, x.shape[1])[0])
        elif identity and o_row != x_row:
            return False
        reads.append(lo)
    return all((r + 1) * o_row <= min(reads[r + 1:], default=x.shape[1]) * x_row for r in range(len(reads)))


def _is_conv(op: QOp | None) -> bool:
    return op is not None and op.kind == "conv" and len(op.outputs) == 1


def fuse_residual_blocks(g: QGraph) -> QGraph:
    """``g`` with every Conv -> Conv (-> projection Conv) -> Add block as one ``resblock`` op."""
    ops = list(g.ops)
    outs = set(g.outputs)
    for add in [op for op in ops if op.kind == "add"]:
        o = g.t(add.outputs[0])
        if len(o.shape) != 4 or o.shape[0] != 1 or any(g.t(i).shape != o.shape or g.t(i).is_const for i in add.inputs):
            continue
        for main in add.inputs:
            c2 = g.producer(main)
            c1 = g.producer(c2.inputs[0]) if _is_conv(c2) else None
            other = add.inputs[1] if main == add.inputs[0] else add.inputs[0]
            if not _is_conv(c1) or other == main:
                continue
            x = c1.inputs[0]
            sc = None if other == x else g.producer(other)
            if sc is not None and not (_is_conv(sc) and sc.inputs[0] == x and g.consumers(other) == [add]):
                continue
            inner = [c1.outputs[0], main] + ([other] if sc is not None else [])
            if (any(t in outs for t in inner + [x]) or g.consumers(c1.outputs[0]) != [c2]
                    or g.consumers(main) != [add] or len(g.consumers(x)) != 2 or g.t(x).shape[0] != 1):
                continue
            y1, y2 = g.t(c1.outputs[0]), g.t(main)
            k2 = row_window(g, c2)[2]  # the inner rows one output row reads
            ring = k2 * y1.nbytes // y1.shape[1] + (2 if sc is not None else 1) * y2.nbytes // y2.shape[1]
            consts = [t for sub in (c1, c2, sc) if sub is not None for t in sub.inputs[1:]]
            fused = QOp("resblock", add.name, [x, *consts], list(add.outputs),
                        {"c1": c1, "c2": c2, "sc": sc, "add": add, "ring_bytes": ring,
                         "inplace": _inplace_safe(g, c1, c2, sc, sc is None)}, "RESIDUAL_BLOCK")
            members = {id(c1), id(c2), id(add)} | ({id(sc)} if sc is not None else set())
            ops = [fused if op is add else op for op in ops if id(op) not in members or op is add]
            break
    return g if len(ops) == len(g.ops) else replace(g, ops=ops)


def fuse_expanding_pairs(g: QGraph) -> QGraph:
    """``g`` with every Conv -> DepthwiseConv pair whose intermediate is wider than the
    Conv's input, and whose output can overwrite that input, as one ``convpair`` op."""
    ops = list(g.ops)
    for c2 in [op for op in ops if op.kind == "dwconv" and op.attrs.get("depth_mult", 1) == 1]:
        c1 = g.producer(c2.inputs[0])
        if not _is_conv(c1) or not any(op is c1 for op in ops):
            continue
        x, y1, y2 = g.t(c1.inputs[0]), g.t(c1.outputs[0]), g.t(c2.outputs[0])
        if (y1.nbytes <= x.nbytes or len(x.shape) != 4 or x.shape[0] != 1 or y1.name in g.outputs
                or g.consumers(y1.name) != [c2] or x.name in g.outputs):
            continue
        if y2.nbytes > x.nbytes or not _inplace_safe(g, c1, c2, None, False):
            continue
        k2 = row_window(g, c2)[2]  # the inner rows one output row reads
        fused = QOp("convpair", c2.name, [x.name, *c1.inputs[1:], *c2.inputs[1:]], list(c2.outputs),
                    {"c1": c1, "c2": c2, "sc": None, "add": None, "ring_bytes": k2 * y1.nbytes // y1.shape[1],
                     "inplace": True}, "CONV_PAIR")
        ops = [fused if op is c2 else op for op in ops if op is not c1]
    return g if len(ops) == len(g.ops) else replace(g, ops=ops)


RECORDS = (
    OpRecord("ResidualBlock", kinds=("resblock", "convpair"), emit=emit_resblock,
             kernels=("conv.c", "dwconv.c", "elementwise.c", "resblock.c"), headers=("edgec_rows.h", "edgec_resblock.h")),
)
