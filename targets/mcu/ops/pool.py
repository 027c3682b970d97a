"""MaxPool, AveragePool and Mean emitters."""

from __future__ import annotations

from edgec.errors import UnsupportedOpError
from edgec.targets.mcu.qmath import f32, quantize_multiplier


def emit_pool(op, ctx) -> list[str]:
    g = ctx.g
    x, out = g.t(op.inputs[0]), g.t(op.outputs[0])
    fields = {"batch": x.shape[0], "in_h": x.shape[1], "in_w": x.shape[2], "c": x.shape[3],
              "out_h": out.shape[1], "out_w": out.shape[2],
              "k_h": op.attrs["kernel"][0], "k_w": op.attrs["kernel"][1],
              "stride_h": op.attrs["stride"][0], "stride_w": op.attrs["stride"][1],
              "pad_h": op.attrs["pad"][0], "pad_w": op.attrs["pad"][1],
              "act_min": op.attrs["act"][0], "act_max": op.attrs["act"][1]}
    if (x.s, x.zp) != (out.s, out.zp):
        raise UnsupportedOpError(op.source_op or op.kind, op.name, "mcu",
                                 "pooling with different input/output quantization")
    p = ctx.param_struct("edgec_pool_params", fields, op)
    fn = "edgec_maxpool_s8" if op.kind == "maxpool" else "edgec_avgpool_s8"
    return [f"{fn}(&{p}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


def mean_multiplier(s_in: float, s_out: float, n: int) -> tuple[int, int]:
    """TFLite's QuantizedMeanOrSum: in/out multiplier with 1/n folded in."""
    mult, shift = quantize_multiplier(f32(s_in) / f32(s_out))
    sh = n.bit_length() - 1
    sh = min(sh, 32, 31 + shift)
    mult = int((mult << sh) // n)
    return mult, shift - sh


def emit_mean(op, ctx) -> list[str]:
    g = ctx.g
    x, out = g.t(op.inputs[0]), g.t(op.outputs[0])
    axes = sorted(op.attrs["axes"])
    if axes != list(range(axes[0], axes[-1] + 1)):
        raise UnsupportedOpError(op.source_op or "MEAN", op.name, "mcu", "mean over non-adjacent axes")
    outer = 1
    for d in x.shape[: axes[0]]:
        outer *= d
    reduce = 1
    for a in axes:
        reduce *= x.shape[a]
    inner = x.size // (outer * reduce)
    mult, shift = mean_multiplier(x.s, out.s, reduce)
    fields = {"outer": outer, "reduce": reduce, "inner": inner, "mult": mult, "shift": shift,
              "in_zp": x.zp, "out_zp": out.zp}
    p = ctx.param_struct("edgec_mean_params", fields, op)
    return [f"edgec_mean_s8(&{p}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


EMITTERS = {"maxpool": emit_pool, "avgpool": emit_pool, "mean": emit_mean}
