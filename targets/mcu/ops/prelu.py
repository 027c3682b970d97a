"""PRelu: ``x >= 0 ? x : alpha * x`` with a constant alpha broadcast onto ``x`` (one
per channel in PyTorch's ``nn.PReLU(C)``, per element in Keras' default ``PReLU``)."""

from __future__ import annotations

import numpy as np

from edgec.targets.mcu.ops.eltwise import _shape4, _strides
from edgec.targets.mcu.ops.record import OpRecord
from edgec.targets.mcu.qgraph import QOp, QTensor
from edgec.targets.mcu.qmath import quantize_multiplier


def emit_prelu(op, ctx) -> list[str]:
    g = ctx.g
    x, alpha, out = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    f32 = np.float32
    # TFLite's PreluPrepare computes both multipliers in float32 arithmetic.
    pos_m, pos_s = quantize_multiplier(float(f32(x.s) / f32(out.s)))
    neg_m, neg_s = quantize_multiplier(float(f32(x.s) * f32(alpha.s) / f32(out.s)))
    o4 = _shape4(out.shape)
    fields = {"dims": o4, "alpha_str": _strides(_shape4(alpha.shape), o4), "in_offset": -x.zp,
              "alpha_offset": -alpha.zp, "out_offset": out.zp, "pos_mult": pos_m, "neg_mult": neg_m,
              "pos_shift": pos_s, "neg_shift": neg_s}
    p = ctx.param_struct("edgec_prelu_params", fields, op)
    return [f"edgec_prelu_s8(&{p}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.inputs[1])}, {ctx.ref(op.outputs[0], True)});"]


def onnx_prelu(ctx, node):
    x = ctx.q_of(node.input[0], node)
    a = ctx.tensors[ctx.q_of(node.input[1], node)]
    y, _ = ctx.out_q(node)
    data = np.asarray(a.data)
    if y in ctx.rank4:
        # Slope broadcasts onto NCHW (e.g. [C, 1, 1]); the C runs NHWC.
        data = data.reshape((1,) * (4 - data.ndim) + data.shape).transpose(0, 2, 3, 1)
    alpha = ctx.add_tensor(QTensor(a.name + "/alpha", tuple(data.shape), "int8", a.scale, a.zero_point,
                                   np.ascontiguousarray(data)))
    ctx.add_op("prelu", node, [x, alpha], [y])


def prelu_constraints(v) -> str | None:
    slope, x = v.const(1), v.shape(0)
    if slope is None:
        return "the slope must be a constant"
    if x is not None and (len(x) > 4 or slope.ndim > len(x)):
        return "more than 4 dimensions"
    return None


def tflite_prelu(g, opname, node, ins, outs, opts) -> QOp:
    return QOp("prelu", node, ins[:2], outs, {}, opname)


RECORDS = (
    OpRecord("PRelu", kinds=("prelu",), emit=emit_prelu, kernels=("prelu.c",), headers=("edgec_prelu.h",),
             inplace=True, onnx={"PRelu": {1: onnx_prelu}}, tflite={"PRELU": tflite_prelu},
             constraints=(prelu_constraints,)),
)
