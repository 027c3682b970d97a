"""Softmax emitter (TFLite int8 reference: Q5.26 input scaling, gemmlowp exp)."""

from __future__ import annotations

import math

from edgec.errors import UnsupportedOpError
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


EMITTERS = {"softmax": emit_softmax}
