"""Add, Mul (TFLite int8 numerics, 4-D broadcasting), requantize/ReLU, LUT activations."""

from __future__ import annotations

import numpy as np

from edgec.targets.mcu.qmath import f32, quantize_multiplier


def _shape4(shape) -> list[int]:
    s = [int(d) for d in shape]
    return [1] * (4 - len(s)) + s


def _strides(shape4: list[int], out4: list[int]) -> list[int]:
    st, acc = [0, 0, 0, 0], 1
    for d in range(3, -1, -1):
        st[d] = 0 if (shape4[d] == 1 and out4[d] != 1) else acc
        acc *= shape4[d]
    return st


def _binary_fields(op, ctx) -> dict:
    g = ctx.g
    a, b, out = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    if len(out.shape) > 4:
        from edgec.errors import UnsupportedOpError

        raise UnsupportedOpError(op.source_op or op.kind, op.name, "mcu", "more than 4 dimensions")
    o4 = _shape4(out.shape)
    bc = int(not (a.size == b.size == out.size))
    return {"size": out.size, "dims": o4, "str1": _strides(_shape4(a.shape), o4),
            "str2": _strides(_shape4(b.shape), o4), "broadcast": bc,
            "in1_offset": -a.zp, "in2_offset": -b.zp, "out_offset": out.zp,
            "act_min": op.attrs["act"][0], "act_max": op.attrs["act"][1]}


def emit_add(op, ctx) -> list[str]:
    g = ctx.g
    a, b, out = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    f = _binary_fields(op, ctx)
    left_shift = 20
    twice_max = float(np.float32(2.0) * np.float32(max(f32(a.s), f32(b.s))))
    m1, s1 = quantize_multiplier(f32(a.s) / twice_max)
    m2, s2 = quantize_multiplier(f32(b.s) / twice_max)
    mo, so = quantize_multiplier(twice_max / float(np.float32(1 << left_shift) * np.float32(out.s)))
    f.update({"left_shift": left_shift, "in1_mult": m1, "in1_shift": s1, "in2_mult": m2, "in2_shift": s2,
              "out_mult": mo, "out_shift": so})
    p = ctx.param_struct("edgec_binary_params", f, op)
    return [f"edgec_add_s8(&{p}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.inputs[1])}, {ctx.ref(op.outputs[0], True)});"]


def emit_mul(op, ctx) -> list[str]:
    g = ctx.g
    a, b, out = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    f = _binary_fields(op, ctx)
    mo, so = quantize_multiplier(f32(a.s) * f32(b.s) / f32(out.s))
    f.update({"left_shift": 0, "in1_mult": 0, "in1_shift": 0, "in2_mult": 0, "in2_shift": 0,
              "out_mult": mo, "out_shift": so})
    p = ctx.param_struct("edgec_binary_params", f, op)
    return [f"edgec_mul_s8(&{p}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.inputs[1])}, {ctx.ref(op.outputs[0], True)});"]


def requant_fields(x, out, act=(-128, 127)) -> dict:
    m, s = quantize_multiplier(f32(x.s) / f32(out.s))
    return {"size": out.size, "mult": m, "shift": s, "in_zp": x.zp, "out_zp": out.zp,
            "act_min": act[0], "act_max": act[1]}


def emit_requant(op, ctx) -> list[str]:
    g = ctx.g
    x, out = g.t(op.inputs[0]), g.t(op.outputs[0])
    p = ctx.param_struct("edgec_requant_params", requant_fields(x, out, op.attrs.get("act", (-128, 127))), op)
    return [f"edgec_requant_s8(&{p}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


def emit_lut(op, ctx) -> list[str]:
    from edgec.targets.mcu.lut import lut_table

    g = ctx.g
    x, out = g.t(op.inputs[0]), g.t(op.outputs[0])
    table = lut_table(op, x, out, ctx.g.source)
    sym = ctx.const_array(op.name + "_lut", "int8_t", table, dedup_key=("lut", tuple(int(v) for v in table)))
    return [f"edgec_lut_s8({out.size}, {sym}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


def emit_reshape(op, ctx) -> list[str]:
    src, dst = ctx.ref(op.inputs[0]), ctx.ref(op.outputs[0], True)
    if ctx.same_buffer(op.inputs[0], op.outputs[0]):
        return [f"/* {op.source_op or 'reshape'} {op.name}: no data movement */"]
    return [f"edgec_copy_s8({ctx.g.t(op.outputs[0]).size}, {src}, {dst});"]


def emit_dequantize(op, ctx) -> list[str]:
    x = ctx.g.t(op.inputs[0])
    return [f"edgec_dequantize_s8_f32({x.size}, {ctx.float_literal(x.s)}, {x.zp}, "
            f"{ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


def _emit_quantize(op, ctx) -> list[str]:
    out = ctx.g.t(op.outputs[0])
    return [f"edgec_quantize_f32_s8({out.size}, {ctx.float_literal(out.s)}, {out.zp}, "
            f"{ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


EMITTERS = {"add": emit_add, "mul": emit_mul, "requant": emit_requant, "lut": emit_lut,
            "reshape": emit_reshape, "quantize": _emit_quantize, "dequantize": emit_dequantize}
