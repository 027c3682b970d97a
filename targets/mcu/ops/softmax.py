"""Softmax (TFLite int8 reference: Q5.26 input scaling, gemmlowp exp): importers, emitter, record."""

from __future__ import annotations

import math

import numpy as np

from edgec.errors import UnsupportedOpError
from edgec.targets.mcu.ops.record import OpRecord, attrs
from edgec.targets.mcu.qgraph import QOp, QTensor
from edgec.targets.mcu.qmath import f32, quantize_multiplier

SCALED_DIFF_INTEGER_BITS = 5


def softmax_fields(beta: float, s_in: float) -> dict:
    real = min(float(beta) * f32(s_in) * float(1 << (31 - SCALED_DIFF_INTEGER_BITS)), float((1 << 31) - 1))
    mult, left_shift = quantize_multiplier(real)
    radius = math.floor(((1 << SCALED_DIFF_INTEGER_BITS) - 1) * float(1 << (31 - SCALED_DIFF_INTEGER_BITS))
                        / float(1 << left_shift))
    return {"input_mult": mult, "input_left_shift": left_shift, "diff_min": -int(radius)}


def emit_softmax(op, ctx) -> list[str]:
    g = ctx.g
    x, out = g.t(op.inputs[0]), g.t(op.outputs[0])
    if abs(out.s - 1.0 / 256) > 1e-9 or out.zp != -128:
        raise UnsupportedOpError(op.source_op or "Softmax", op.name, "mcu",
                                 "softmax output must be quantized with scale 1/256, zero point -128")
    depth = x.shape[-1]
    f = {"outer": x.size // depth, "depth": depth}
    f.update(softmax_fields(op.attrs.get("beta", 1.0), x.s))
    p = ctx.param_struct("edgec_softmax_params", f, op)
    return [f"edgec_softmax_s8(&{p}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


def onnx_softmax(ctx, node):
    x = ctx.q_of(node.input[0], node)
    y, _ = ctx.out_q(node)
    yt = ctx.tensors[y]
    if abs(yt.s - 1 / 256) > 1e-9 or yt.zp != -128:
        mid = ctx.add_tensor(QTensor(ctx.fresh(y), yt.shape, "int8", np.asarray([1 / 256], np.float32),
                                     np.asarray([-128])))
        ctx.add_op("softmax", node, [x], [mid], {"beta": 1.0})
        ctx.add_op("requant", node, [mid], [y], {"act": (-128, 127)})
    else:
        ctx.add_op("softmax", node, [x], [y], {"beta": 1.0})


def softmax_constraints(v) -> str | None:
    shape = v.shape(0)
    if shape is None:
        return None
    # Opset 13 normalises over ``axis`` (default -1); earlier opsets over the flattened
    # dims from ``axis`` (default 1), which for a 2-D tensor is the same last axis.
    axis = int(v.attr("axis", -1 if v.opset >= 13 else 1)) % len(shape)
    if len(shape) == 4 or axis != len(shape) - 1:
        return "softmax over the last axis of a 2-D tensor"
    return None


def tflite_softmax(g, opname, node, ins, outs, opts) -> QOp:
    return QOp("softmax", node, ins[:1], outs, {"beta": float(opts.beta)}, opname)


RECORDS = (
    OpRecord("Softmax", kinds=("softmax",), emit=emit_softmax, kernels=("softmax.c",),
             onnx={"Softmax": {1: onnx_softmax}}, tflite={"SOFTMAX": tflite_softmax},
             constraints=(softmax_constraints,)),
)
