"""Data movement: Pad, Transpose, Concat: importers, emitters, records."""

from __future__ import annotations

import numpy as np

from edgec.targets.mcu.ops.eltwise import requant_fields
from edgec.targets.mcu.ops.record import NCHW_TO_NHWC_AXIS, OpRecord, attrs
from edgec.targets.mcu.qgraph import QOp, QTensor


def _pad4(v: list[int], fill: int = 1) -> list[int]:
    return [fill] * (4 - len(v)) + list(v)


def emit_pad(op, ctx) -> list[str]:
    g = ctx.g
    x, out = g.t(op.inputs[0]), g.t(op.outputs[0])
    before = _pad4([p[0] for p in op.attrs["pads"]], 0)
    fields = {"in_dims": _pad4(list(x.shape)), "out_dims": _pad4(list(out.shape)), "pad_before": before,
              "value": op.attrs["value"]}
    p = ctx.param_struct("edgec_pad_params", fields, op)
    return [f"edgec_pad_{_suffix(x)}(&{p}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


def emit_transpose(op, ctx) -> list[str]:
    g = ctx.g
    x = g.t(op.inputs[0])
    perm = list(op.attrs["perm"])
    k = 4 - len(perm)
    perm4 = list(range(k)) + [p + k for p in perm]
    p = ctx.param_struct("edgec_transpose_params", {"in_dims": _pad4(list(x.shape)), "perm": perm4}, op)
    return [f"edgec_transpose_{_suffix(x)}(&{p}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


def _suffix(t: QTensor) -> str:
    """The kernel name's element type: int8 ``s8``, or ``s16`` in a mixed 16x8 graph (`ops.s16`)."""
    return {"int8": "s8", "int16": "s16"}[t.dtype]


def emit_concat(op, ctx) -> list[str]:
    g = ctx.g
    out = g.t(op.outputs[0])
    axis = op.attrs["axis"]
    outer = 1
    for d in out.shape[:axis]:
        outer *= d
    out_inner = out.size // outer
    lines, off = [], 0
    for name in op.inputs:
        x = g.t(name)
        in_inner = x.size // outer
        rq = "0"
        if (x.s, x.zp) != (out.s, out.zp):
            act = (-128, 127) if out.dtype == "int8" else (-32768, 32767)
            rq = "&" + ctx.param_struct("edgec_requant_params", requant_fields(x, out, act), op)
        lines.append(f"edgec_concat_part_{_suffix(out)}({ctx.ref(name)}, {ctx.ref(op.outputs[0], True)}, {outer}, "
                     f"{in_inner}, {out_inner}, {off}, {rq});")
        off += in_inner
    return lines


# -- ONNX ------------------------------------------------------------------------------------


def _onnx_pad(ctx, node, pads, value_input: str):
    x = ctx.q_of(node.input[0], node)
    y, _ = ctx.out_q(node)
    yt = ctx.tensors[y]
    r = len(pads) // 2
    pairs = [(pads[i], pads[i + r]) for i in range(r)]
    if x in ctx.rank4:
        pairs = [pairs[0], pairs[2], pairs[3], pairs[1]]
    value = 0.0
    if value_input:
        if ctx.is_const(value_input):
            value = float(ctx.scalar(value_input)[0])
        else:
            q = ctx.tensors[ctx.q_of(value_input, node)]
            value = float((int(q.data.reshape(-1)[0]) - q.zp) * q.s)
    lo, hi = (-32768, 32767) if yt.dtype == "int16" else (-128, 127)  # int16: a mixed 16x8 graph
    qv = int(np.clip(np.rint(value / yt.s) + yt.zp, lo, hi))
    ctx.add_op("pad", node, [x], [y], {"pads": pairs, "value": qv})


def onnx_pad_v2(ctx, node):
    a = attrs(node)
    _onnx_pad(ctx, node, [int(v) for v in a["pads"]], "")  # a non-zero ``value`` is rejected


def onnx_pad_v11(ctx, node):
    value = node.input[2] if len(node.input) > 2 else ""
    _onnx_pad(ctx, node, [int(v) for v in ctx.scalar(node.input[1])], value)


def pad_constraints(v) -> str | None:
    if v.attr("mode", "constant") != "constant":
        return "only constant padding"
    if v.opset < 11:
        if float(v.attr("value", 0.0)) != 0.0:
            return "a non-zero fill value before opset 11"
        return None
    if v.const(1) is None:
        return "pads must be a constant"
    if len(v.node.input) > 3 and v.input(3):
        return "the axes input"
    pads = v.const(1).reshape(-1)
    if (pads < 0).any():
        return "negative pads (cropping)"
    return None


def onnx_transpose(ctx, node):
    """A view when both sides store their axes so that no data moves (see `onnx_layout`), else the kernel."""
    from edgec.targets.mcu.onnx_layout import NHWC_OF_NCHW, physical_perm, transpose_perm

    x = ctx.q_of(node.input[0], node)
    y, _ = ctx.out_q(node)
    xt, yt = ctx.tensors[x], ctx.tensors[y]
    rank = len(xt.shape)
    perm = transpose_perm(node, rank)

    def axes(name):
        return NHWC_OF_NCHW if name in ctx.rank4 else tuple(range(rank))

    phys = physical_perm(perm, axes(x), axes(y))
    moves = [p for p in phys if xt.shape[p] != 1]  # axes of size 1 do not order the bytes
    src = y
    if (xt.s, xt.zp) != (yt.s, yt.zp):
        src = ctx.add_tensor(QTensor(ctx.fresh(y), yt.shape, xt.dtype, xt.scale, xt.zero_point))
    if moves == sorted(moves):
        ctx.add_op("reshape", node, [x], [src])
    else:
        ctx.add_op("transpose", node, [x], [src], {"perm": phys})
    if src != y:
        ctx.add_op("requant", node, [src], [y], {"act": (-128, 127)})


def transpose_constraints(v) -> str | None:
    shape = v.shape(0)
    if shape is not None and len(shape) > 4:
        return f"a {len(shape)}-D transpose (the kernel moves up to 4 dimensions)"
    return None


def onnx_depth_to_space(ctx, node):
    x = ctx.q_of(node.input[0], node)
    y, _ = ctx.out_q(node)
    xt, yt = ctx.tensors[x], ctx.tensors[y]
    b = int(attrs(node)["blocksize"])
    if (xt.s, xt.zp) == (yt.s, yt.zp):
        ctx.add_op("depth_to_space", node, [x], [y], {"block": b})
        return
    mid = ctx.add_tensor(QTensor(ctx.fresh(y), yt.shape, xt.dtype, xt.scale, xt.zero_point))
    ctx.add_op("depth_to_space", node, [x], [mid], {"block": b})
    ctx.add_op("requant", node, [mid], [y], {"act": (-128, 127)})


def tflite_depth_to_space(g, opname, node, ins, outs, opts) -> QOp:
    return QOp("depth_to_space", node, ins[:1], outs, {"block": int(opts.blockSize)}, opname)


def emit_depth_to_space(op, ctx) -> list[str]:
    """DCR DepthToSpace of NHWC [N, H, W, b*b*C] is the transpose (0, 2, 1, 3) of [N*H, W, b, b*C]:
    the transpose kernel, no kernel of its own."""
    n, h, w, c = ctx.g.t(op.inputs[0]).shape
    b = op.attrs["block"]
    p = ctx.param_struct("edgec_transpose_params", {"in_dims": [n * h, w, b, c // b], "perm": [0, 2, 1, 3]}, op)
    return [f"edgec_transpose_s8(&{p}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


def depth_to_space_constraints(v) -> str | None:
    if v.attr("mode", "DCR") != "DCR":
        return "mode CRD (only DCR, TensorFlow's order)"
    shape = v.shape(0)
    if shape is not None and len(shape) != 4:
        return "a tensor that is not 4-D"
    return None


def onnx_concat(ctx, node):
    a = attrs(node)
    ins = [ctx.q_of(i, node) for i in node.input]
    y, _ = ctx.out_q(node)
    axis = int(a["axis"]) % len(ctx.tensors[y].shape)
    if y in ctx.rank4:
        axis = NCHW_TO_NHWC_AXIS[axis]
    ctx.add_op("concat", node, ins, [y], {"axis": axis})


# -- TFLite ----------------------------------------------------------------------------------


def tflite_pad(g, opname, node, ins, outs, opts) -> QOp:
    T = g.tensors
    pads = np.asarray(T[ins[1]].data).reshape(-1, 2)
    value = T[outs[0]].zp
    if opname == "PADV2" and len(ins) > 2 and ins[2] and T[ins[2]].data is not None:
        value = int(np.asarray(T[ins[2]].data).reshape(-1)[0])
    return QOp("pad", node, ins[:1], outs, {"pads": [tuple(int(v) for v in p) for p in pads], "value": value}, opname)


def tflite_transpose(g, opname, node, ins, outs, opts) -> QOp:
    perm = [int(v) for v in np.asarray(g.tensors[ins[1]].data).reshape(-1)]
    return QOp("transpose", node, ins[:1], outs, {"perm": perm}, opname)


def tflite_concat(g, opname, node, ins, outs, opts) -> QOp:
    x = g.tensors[ins[0]]
    return QOp("concat", node, list(ins), outs, {"axis": int(opts.axis) % len(x.shape)}, opname)


RECORDS = (
    OpRecord("Pad", kinds=("pad",), emit=emit_pad, kernels=("shape.c",),
             onnx={"Pad": {2: onnx_pad_v2, 11: onnx_pad_v11}}, tflite={"PAD": tflite_pad, "PADV2": tflite_pad},
             constraints=(pad_constraints,), keeps_input_qparams=frozenset({"Pad"})),
    # The Transposes of TensorFlow-converted graphs mostly become views (onnx_layout).
    OpRecord("Transpose", kinds=("transpose",), emit=emit_transpose, kernels=("shape.c",),
             onnx={"Transpose": {1: onnx_transpose}}, tflite={"TRANSPOSE": tflite_transpose},
             constraints=(transpose_constraints,), keeps_input_qparams=frozenset({"Transpose"}), any_layout=True),
    # Runs on the transpose kernel (one transpose of a view).
    OpRecord("DepthToSpace", kinds=("depth_to_space",), emit=emit_depth_to_space, kernels=("shape.c",),
             onnx={"DepthToSpace": {1: onnx_depth_to_space}}, tflite={"DEPTH_TO_SPACE": tflite_depth_to_space},
             constraints=(depth_to_space_constraints,), keeps_input_qparams=frozenset({"DepthToSpace"})),
    OpRecord("Concat", kinds=("concat",), emit=emit_concat, kernels=("shape.c",),
             onnx={"Concat": {1: onnx_concat}}, tflite={"CONCATENATION": tflite_concat}),
)
