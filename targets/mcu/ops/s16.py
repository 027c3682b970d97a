"""int16 (16x8) ops: conv, depthwise, HardSwish, Add, MaxPool, Pad and the int8 <-> int16
QUANTIZE, one record each, all in ``kernels/s16.c`` (``edgec_s16.h``; EDGEC_WITH_S16).

No importer of their own: both importers read a tensor's dtype from the model (an int16
Q/DQ pair in ONNX, an int16 tensor in a 16x8 .tflite) and make the int8 kinds; `retype`
then gives each op that touches int16 tensors its 16x8 kind where one exists (`S16_KIND`),
and puts a requantization between int16 and int8 where an op runs on int8 only. Numerics as
LiteRT's 16x8 reference kernels; HardSwish has none in LiteRT (it rejects INT16), so it
follows the float formula of the Q/DQ model to within one int16 LSB.
"""

from __future__ import annotations

import math

import numpy as np

from edgec.errors import UnsupportedOpError
from edgec.targets.mcu.ops.record import OpRecord
from edgec.targets.mcu.qgraph import QGraph, QOp, QTensor
from edgec.targets.mcu.qmath import f32, quantize_multiplier

INT16 = (-32768, 32767)
# int8 kind -> its 16x8 kind (the ops whose every activation is then int16).
S16_KIND = {"conv": "conv_s16", "dwconv": "dwconv_s16", "add": "add_s16", "maxpool": "maxpool_s16", "pad": "pad_s16"}
# Kinds that move elements without arithmetic (a Concat input's rescale aside): they run on
# int8 or int16 alike, their emitters pick the element size from the output's dtype.
ANY_DTYPE = frozenset({"reshape", "transpose", "concat", "quantize", "dequantize"})
# Kinds whose output must keep the input's (scale, zero point): an input of the other dtype
# meets them through a requantization to the output's parameters (int16 ones: the input's
# own, when the op runs on int16 and only its output is int8).
SAME_QPARAMS = frozenset({"reshape", "transpose", "maxpool", "pad", "depth_to_space"})


def _hardswish(op: QOp) -> bool:
    return op.kind == "lut" and op.attrs.get("fn") == "HardSwish" or op.source_op == "HARD_SWISH"


# -- emitters ---------------------------------------------------------------------------------


def emit_conv16(op, ctx) -> list[str]:
    from edgec.targets.mcu.ops.conv import _channel_multipliers, _check_byte_fields, conv_fields

    g = ctx.g
    x, w, out = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    n_out = out.shape[3]
    mults, shifts = s16_multipliers(*_channel_multipliers(x.s, w.scale, out.s, n_out))
    fields = conv_fields(op, x, w, out, {"depth_mult": op.attrs.get("depth_mult", 1)})
    _check_byte_fields(op, fields)
    p = ctx.param_struct("edgec_conv_params", fields, op)
    bias = _bias64(g, op, x, w, n_out)
    wsym = ctx.const_array(op.inputs[1], "int8_t", w.data)
    bsym = ctx.const_array(op.name + "_bias64", "int64_t", bias, dedup_key=None)
    msym = ctx.const_array(op.name + "_mult", "int32_t", mults, dedup_key=None)
    ssym = ctx.const_array(op.name + "_shift", "int32_t", shifts, dedup_key=None)
    fn = "edgec_dwconv_s16" if op.kind == "dwconv_s16" else "edgec_conv_s16"
    return [f"{fn}(&{p}, {ctx.ref(op.inputs[0])}, {wsym}, {bsym}, {msym}, {ssym}, {ctx.ref(op.outputs[0], True)});"]


def s16_multipliers(mults: list[int], shifts: list[int]) -> tuple[list[int], list[int]]:
    """TFLite's (multiplier, exponent) pairs as the int16 conv kernels take them: the multiplier
    reduced to 16 bits as LiteRT's int16 kernels round it, and the total right shift."""
    reduced = [(m + (1 << 15)) >> 16 if m < 0x7FFF0000 else 0x7FFF for m in mults]
    return reduced, [15 - s for s in shifts]


def _bias64(g: QGraph, op: QOp, x: QTensor, w: QTensor, n: int) -> np.ndarray:
    """The int64 bias at scale s_in * s_w: a 16x8 .tflite's own, or an int8 Q/DQ model's
    (made for the int8 input scale) rescaled from its float value."""
    if len(op.inputs) < 3:
        return np.zeros(n, np.int64)
    b = g.t(op.inputs[2])
    if g.source == "tflite":
        return b.data.astype(np.int64).reshape(-1)
    ws = np.broadcast_to(np.asarray(w.scale, np.float64).reshape(-1), (n,))
    bs = np.broadcast_to(np.asarray(b.scale, np.float64).reshape(-1), (n,))
    return np.round(b.data.astype(np.float64).reshape(-1) * bs / (f32(x.s) * ws)).astype(np.int64)


def hardswish16_gate(s_in: float) -> tuple[int, int]:
    """(gate_mult, S): relu6(x + 3) / 6 in Q30 is ``(x * gate_mult + 2^(S-1) >> S) + 2^29``."""
    v = f32(s_in) / 6.0 * 2.0 ** 30  # the gate's slope in Q30 per input step
    if not 1.0 <= v < 2.0 ** 30:  # S <= 30: every part of the split fits 32 bits
        raise ValueError(f"HardSwish int16 input scale {s_in} out of range")
    shift = 30 - math.floor(math.log2(v))
    mult = round(v * 2.0 ** shift)
    if mult >= 1 << 31:
        mult, shift = mult // 2, shift - 1
    return mult, shift


def hardswish16_reference(x: np.ndarray, s_in: float, s_out: float) -> np.ndarray:
    """The int16 HardSwish in int64 arithmetic, the kernel's definition (kernels/edgec_s16.h)."""
    mult, shift = hardswish16_gate(s_in)
    out_mult, out_shift = quantize_multiplier(f32(s_in) / f32(s_out) / 2.0 ** 15)
    total = 31 - min(out_shift, 30)
    x = np.asarray(x, np.int64)
    gate = np.clip(((x * mult + (1 << (shift - 1))) >> shift) + (1 << 29), 0, 1 << 30)
    prod = (x * gate + (1 << 14)) >> 15
    return np.clip((prod * out_mult + (1 << (total - 1))) >> total, *INT16)


def hardswish16_fields(s_in: float, s_out: float, size: int) -> dict:
    """kernels/edgec_s16.h's edgec_hswish16_params for int16 scales ``s_in``/``s_out``: the
    gate's multiplier split so that every product fits 32 bits, and the clamp as thresholds."""
    mult, shift = hardswish16_gate(s_in)
    x = np.arange(INT16[0], INT16[1] + 1, dtype=np.int64)
    raw = ((x * mult + (1 << (shift - 1))) >> shift) + (1 << 29)
    low, high = x[raw <= 0], x[raw >= 1 << 30]
    # Below 2^15 the remainder is scaled up to S = 15 (the same floor): S >= 15 from here on.
    rem = (mult % (1 << shift)) << max(0, 15 - shift)
    s = max(shift, 15)
    half = 1 << (s - 1)
    out_mult, out_shift = quantize_multiplier(f32(s_in) / f32(s_out) / 2.0 ** 15)
    return {"size": size, "x_lo": int(low.max()) if low.size else INT16[0] - 1,
            "x_hi": int(high.min()) if high.size else INT16[1] + 1, "gate_q": mult >> shift,
            "gate_rh": rem >> 15, "gate_rl": rem & 0x7FFF, "round_h": half >> 15, "round_l": half & 0x7FFF,
            "gate_shift": s - 15, "out_mult": out_mult, "out_shift": min(out_shift, 30)}


def emit_hardswish16(op, ctx) -> list[str]:
    x, out = ctx.g.t(op.inputs[0]), ctx.g.t(op.outputs[0])
    p = ctx.param_struct("edgec_hswish16_params", hardswish16_fields(x.s, out.s, out.size), op)
    return [f"edgec_hardswish_s16(&{p}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


def add16_fields(s1: float, s2: float, s_out: float, size: int, act=INT16) -> dict:
    """LiteRT's general-scale int16 ADD (left shift 15; the int8 Add's multipliers)."""
    left_shift = 15
    twice_max = 2.0 * max(f32(s1), f32(s2))
    m1, sh1 = quantize_multiplier(f32(s1) / twice_max)
    m2, sh2 = quantize_multiplier(f32(s2) / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << left_shift) * f32(s_out)))
    return {"size": size, "in1_mult": m1, "in2_mult": m2, "out_mult": mo, "in1_shift": sh1, "in2_shift": sh2,
            "out_shift": so, "left_shift": left_shift, "act_min": act[0], "act_max": act[1]}


def emit_add16(op, ctx) -> list[str]:
    g = ctx.g
    a, b, out = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    if not a.size == b.size == out.size:
        raise UnsupportedOpError(op.source_op or "Add", op.name, "mcu", "int16 Add with broadcasting")
    p = ctx.param_struct("edgec_add16_params", add16_fields(a.s, b.s, out.s, out.size, op.attrs.get("act", INT16)), op)
    return [f"edgec_add_s16(&{p}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.inputs[1])}, {ctx.ref(op.outputs[0], True)});"]


def emit_requant16(op, ctx) -> list[str]:
    from edgec.targets.mcu.ops.eltwise import requant_fields

    x, out = ctx.g.t(op.inputs[0]), ctx.g.t(op.outputs[0])
    act = INT16 if out.dtype == "int16" else (-128, 127)
    p = ctx.param_struct("edgec_requant_params", requant_fields(x, out, act), op)
    fn = "edgec_requant_s8_s16" if op.kind == "requant_s8_s16" else "edgec_requant_s16_s8"
    return [f"{fn}(&{p}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


# -- the int16 pass ----------------------------------------------------------------------------


def _boundary(g: QGraph, src: QTensor, dtype: str, like: QTensor | None = None) -> QTensor:
    """A tensor for ``src``'s values in ``dtype`` (int16: symmetric, int8's step / 128, which
    holds (q - zp) * 128 for any int8 q and zero point); or ``like``'s parameters when given."""
    if like is not None:
        scale, zp = like.s, like.zp
    elif dtype == "int16":  # int8 -> int16: 128 int16 steps per int8 step, so every int8 value is exact
        scale, zp = src.s / 128.0, 0
    else:  # int16 -> int8: the int16 range over 255 steps, zero point 0
        scale, zp = src.s * INT16[1] / 127.0, 0
    name = f"{src.name}/{dtype}"
    if name in g.tensors:  # a second consumer of the same boundary (other parameters): its own tensor
        name = f"{name}#{len(g.tensors)}"
    t = QTensor(name, src.shape, dtype, np.asarray([scale], np.float32), np.asarray([zp], np.int64))
    g.tensors[name] = t
    return t


def _act_inputs(op: QOp) -> int:
    """How many leading inputs of a 16x8 op are activations (the rest: weights, bias)."""
    return 2 if op.kind == "add" else 1


def retype(g: QGraph) -> QGraph:
    """Give the ops that touch int16 tensors their 16x8 kinds, with requantizations at the
    int8 <-> int16 boundaries (each a ``requant_*`` op of its own)."""
    if not any(t.dtype == "int16" and not t.is_const for t in g.tensors.values()):
        return g
    ops: list[QOp] = []
    for op in g.ops:
        acts = [n for n in op.inputs + op.outputs if n and not g.t(n).is_const]
        if not any(g.t(n).dtype == "int16" for n in acts):
            ops.append(op)
            continue
        if op.kind == "requant":
            pair = (g.t(op.inputs[0]).dtype, g.t(op.outputs[0]).dtype)
            kind = {("int8", "int16"): "requant_s8_s16", ("int16", "int8"): "requant_s16_s8"}.get(pair)
            if kind is None:
                raise UnsupportedOpError(op.source_op or "QuantizeLinear", op.name, "mcu",
                                         f"requantization {pair[0]} -> {pair[1]}")
            ops.append(QOp(kind, op.name, op.inputs, op.outputs, op.attrs, op.source_op))
            continue
        s16 = op.kind in S16_KIND or _hardswish(op)
        want = "int16" if s16 else "int8" if op.kind not in ANY_DTYPE else \
            g.t(op.inputs[0] if op.kind == "dequantize" else op.outputs[0]).dtype
        n_act = _act_inputs(op) if s16 else len(op.inputs)
        ins, outs, after = list(op.inputs), list(op.outputs), []
        # An int16 MaxPool/Pad (scale-preserving) with an int8 output: its int16 output takes
        # the input's scale, requantized to the int8 output after it.
        like = g.t(ins[0]) if s16 and op.kind in SAME_QPARAMS and g.t(ins[0]).dtype == "int16" else None
        out_bounds = [_boundary(g, g.t(n), want, like) if g.t(n).dtype not in (want, "float32") else None
                      for n in outs]
        # The output's parameters in ``want``: what a scale-preserving op's input must carry.
        same = (out_bounds[0] or g.t(outs[0])) if op.kind in SAME_QPARAMS else None
        for i, n in enumerate(ins[:n_act]):
            t = g.t(n) if n else None
            if t is not None and not t.is_const and t.dtype != want and t.dtype != "float32":
                b = _boundary(g, t, want, like=same)
                ops.append(QOp(f"requant_{_short(t.dtype)}_{_short(want)}", f"{op.name}/in{i}", [n], [b.name], {},
                               "QUANTIZE"))
                ins[i] = b.name
        for i, n in enumerate(outs):
            t = g.t(n)
            if out_bounds[i] is not None:
                b = out_bounds[i]
                after.append(QOp(f"requant_{_short(want)}_{_short(t.dtype)}", f"{op.name}/out{i}", [b.name], [n], {},
                                 "QUANTIZE"))
                outs[i] = b.name
                if "act" in op.attrs:
                    op.attrs = {**op.attrs, "act": _act_on(t, b, op.attrs["act"])}
        ops.append(QOp(S16_KIND.get(op.kind, "hardswish_s16") if s16 else op.kind, op.name, ins, outs, op.attrs,
                       op.source_op))
        ops.extend(after)
    g.ops = ops
    return g


def _short(dtype: str) -> str:
    return {"int8": "s8", "int16": "s16"}[dtype]


def _act_on(src: QTensor, dst: QTensor, act) -> tuple[int, int]:
    """A fused Relu/Clip's clamp bounds on ``src`` moved onto ``dst`` (another dtype)."""
    qmin, qmax = (-128, 127) if src.dtype == "int8" else INT16
    dmin, dmax = (-128, 127) if dst.dtype == "int8" else INT16
    lo, hi = int(act[0]), int(act[1])
    to = lambda q: dst.zp + round((q - src.zp) * src.s / dst.s)  # noqa: E731
    return (dmin if lo <= qmin else max(dmin, to(lo)), dmax if hi >= qmax else min(dmax, to(hi)))


def int16_names(g: QGraph) -> list[str]:
    """The activation tensors the graph keeps in int16 (for the manifest)."""
    return sorted(n.rsplit("#", 1)[0] for n, t in g.tensors.items() if t.dtype == "int16" and not t.is_const)


def emit_maxpool16(op, ctx) -> list[str]:
    from edgec.targets.mcu.ops.pool import emit_pool

    return emit_pool(op, ctx)


def emit_pad16(op, ctx) -> list[str]:
    from edgec.targets.mcu.ops.shape import emit_pad

    return emit_pad(op, ctx)


_S16 = {"kernels": ("s16.c",), "headers": ("edgec_s16.h",)}
RECORDS = (
    OpRecord("Conv16x8", kinds=("conv_s16", "dwconv_s16"), emit=emit_conv16, **_S16),
    OpRecord("HardSwish16", kinds=("hardswish_s16",), emit=emit_hardswish16, inplace=True, **_S16),
    OpRecord("Add16", kinds=("add_s16",), emit=emit_add16, inplace=True, **_S16),
    OpRecord("MaxPool16", kinds=("maxpool_s16",), emit=emit_maxpool16, **_S16),
    OpRecord("Pad16", kinds=("pad_s16",), emit=emit_pad16, **_S16),
    OpRecord("Requantize16", kinds=("requant_s8_s16", "requant_s16_s8"), emit=emit_requant16, **_S16),
)
