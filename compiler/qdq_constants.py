"""The constant inputs of quantized nodes as int8/int32 + DequantizeLinear.

Weights (symmetric per-channel int8), biases (int32 at ``s_in * s_w``, the weight scale widened
where int32 cannot hold the bias), large embedding tables (per-row int8) and recurrent cells'
W/R (one scale per gate row for both). Called by `edgec.compiler.quantize.quantize_qdq` for
each node it quantizes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgec.compiler.overflow_fix import (PAIR_GRIDS, PAIR_SCALE_MAX, SEVEN_BIT, SEVEN_BIT_MAX, pair_scales,
                                         recurrent_pair_reach)
from edgec.compiler.quantize import (MIN_SCALE, PARAMETER_INPUTS, RECURRENT_WEIGHT_INPUTS, WEIGHTED_OPS,
                                     _weight_axis, activation_qparams, quantize_weight)

if TYPE_CHECKING:
    from edgec.compiler.quantize import _Builder


# Smaller tables (position/type embeddings, index constants) are not worth a DQ node.
MIN_EMBEDDING_ELEMENTS = 1 << 16


def quantize_embedding(n, b: _Builder, stats) -> list:
    """Weight-only int8 for a large float embedding table read by Gather (per row, symmetric).

    The table is usually the biggest tensor of a text model (MiniLM: 47 of 90 MB); a row
    lookup of int8 data followed by DequantizeLinear is exact up to int8 rounding per row.
    """
    from onnx import helper

    name = n.input[0]
    t = b.inits.get(name)
    if t is None or t.data_type != 1 or len(t.dims) != 2 or t.dims[0] * t.dims[1] < MIN_EMBEDDING_ELEMENTS:
        return []
    w = b.nh.to_array(t).astype(np.float32)
    q, s = quantize_weight(w, 0)
    dq = _dq(b, name, q, s, np.zeros(s.shape, np.int8), 0, f"{name}_DequantizeLinear", helper)
    n.input[0] = dq.output[0]
    stats["embeddings"] += 1
    return [dq]


def quantize_constants(n, b: _Builder, params, rename, scheme, full, stats, chan_scales=None, grid=None) -> list:
    """Replace the float constant inputs of quantized node ``n`` by int8/int32 + DQ (weights on the 8-bit grid,
    or on ``grid``, `overflow_fix.layer_grid`)."""
    from onnx import helper

    out = []
    in_scale = None
    first_act = next((i for i in n.input if i and i not in b.inits), None)
    if first_act is not None and chan_scales and first_act in chan_scales:
        in_scale = chan_scales[first_act]  # depthwise: output channel o reads input channel o // multiplier
    elif first_act is not None and first_act in params:
        in_scale = params[first_act].scale
    w_scales = None
    rec_scales = _recurrent_scales(n, b, grid) if n.op_type in scheme.int8_recurrent_ops and not full else None
    for k, name in enumerate(n.input):
        if name not in b.inits or k in PARAMETER_INPUTS.get(n.op_type, ()):
            continue
        t = b.inits[name]
        if t.data_type != 1:  # only float32 constants
            continue
        w = b.nh.to_array(t).astype(np.float32)
        is_bias = n.op_type in ("Conv", "ConvTranspose", "Gemm") and k == 2
        if is_bias:
            if w.ndim > 1 and w.size == w.shape[-1]:
                w = w.reshape(-1)  # a [1, N] Gemm bias (MatMul + Add fused): per output channel
            if in_scale is None or w_scales is None or w.ndim != 1:
                continue
            s_in = np.float32(in_scale) if np.ndim(in_scale) == 0 else np.repeat(in_scale, w.size // in_scale.size)
            bscale = (s_in * np.broadcast_to(w_scales, w.shape)).astype(np.float32)
            if not (np.all(bscale > 0) and np.all(np.isfinite(w))):
                continue  # no int32 grid for it (NaN in the float bias, or a scale that underflowed): keep it float
            qb = np.clip(np.round(w.astype(np.float64) / bscale), -(2**31) + 1, 2**31 - 1).astype(np.int32)
            out.append(_dq(b, name, qb, bscale, np.zeros(bscale.shape, np.int32), 0, f"{name}_DequantizeLinear", helper))
            n.input[k] = out[-1].output[0]
            continue
        if n.op_type in WEIGHTED_OPS and (k == 1 or (n.op_type == "MatMul" and k == 0)):
            axis = _weight_axis(n, k, w) if scheme.per_channel else None
            paired = pair_scales(w, n, k, axis, MIN_SCALE, grid) if grid in PAIR_GRIDS else None
            q, s = quantize_weight(w, axis, SEVEN_BIT_MAX if grid == SEVEN_BIT else 127, paired)
            stats["seven_bit_weights"] += int(grid == SEVEN_BIT)
            stats["pair_bounded_weights"] += int(grid in PAIR_GRIDS)
            q, s = _fit_bias(n, b, w, q, s, axis, in_scale, stats)
            w_scales = s
            out.append(_dq(b, name, q, s, np.zeros(s.shape, np.int8), axis if s.ndim else None,
                           f"{name}_DequantizeLinear", helper))
            n.input[k] = out[-1].output[0]
            stats["quantized_weights"] += 1
            continue
        if rec_scales is not None and k in RECURRENT_WEIGHT_INPUTS and w.ndim == 3:
            s = rec_scales
            q = np.clip(np.round(w / s.reshape(1, -1, 1)), -127, 127).astype(np.int8)
            out.append(_dq(b, name, q, s, np.zeros(s.shape, np.int8), 1, f"{name}_DequantizeLinear", helper))
            n.input[k] = out[-1].output[0]
            stats["quantized_weights"] += 1
            continue
        if full and w.size > 0:
            # Other float constants of integer ops (Add/Mul operands, Concat parts): per-tensor affine.
            qp = activation_qparams(float(w.min()), float(w.max()), scheme.activation_symmetric)
            q = np.clip(np.round(w / qp.scale) + qp.zero_point, -128, 127).astype(np.int8)
            out.append(_dq(b, name, q, np.array(qp.scale, np.float32), np.array(qp.zero_point, np.int8), None,
                           f"{name}_DequantizeLinear", helper))
            n.input[k] = out[-1].output[0]
    return out


def _recurrent_scales(n, b: _Builder, grid: str | None = None) -> np.ndarray | None:
    """One symmetric int8 scale per gate row of a recurrent cell's W and R together (``[directions, gates * hidden,
    size]``, axis 1): oneDNN's int8 RNN, which OpenVINO's CPU plugin runs, takes one set of weight scales for both
    (a toy CRNN with a scale set each: cosine 0.959 in OpenVINO, 0.9998 in onnxruntime; shared: 0.997). Its gemms
    sum u8 x s8 product pairs along ``size`` as the other int8 kernels do: ``grid`` bounds them the same way."""
    ws = [b.nh.to_array(b.inits[n.input[k]]).astype(np.float32)
          for k in RECURRENT_WEIGHT_INPUTS if len(n.input) > k and n.input[k] in b.inits]
    if not ws:
        return None
    if grid in PAIR_GRIDS:
        scales = np.maximum.reduce([recurrent_pair_reach(w) for w in ws]) / PAIR_SCALE_MAX
    else:
        scales = np.maximum.reduce([np.abs(w).max(axis=(0, 2)) for w in ws]) / (
            SEVEN_BIT_MAX if grid == SEVEN_BIT else 127.0)
    scales = scales.astype(np.float32)
    return np.where(scales > MIN_SCALE, scales, np.float32(1.0)).astype(np.float32)


BIAS_HEADROOM = 2**30  # the largest |int32 bias| a weight scale is widened for (half of int32, for the accumulator)


def _fit_bias(n, b: _Builder, w, q, s, axis, in_scale, stats):
    """Widen the weight scale of channels whose bias int32 cannot hold at ``s_in * s_w``.

    A channel with ~0 weights and a real bias (a constant channel after BatchNorm folding)
    gets a tiny weight scale, so ``bias / (s_in * s_w)`` overflows int32 and the clipped bias
    changes the output (onnxruntime quantizes even a float bias this way). Such channels'
    weights are negligible next to their bias: a wider scale costs nothing.
    """
    if n.op_type not in ("Conv", "ConvTranspose", "Gemm") or len(n.input) < 3 or n.input[2] not in b.inits \
            or in_scale is None:
        return q, s
    bias = np.abs(b.nh.to_array(b.inits[n.input[2]]).astype(np.float64).reshape(-1))
    s_in = np.asarray(in_scale, np.float64)
    s_in = s_in if s_in.ndim == 0 else np.repeat(s_in, max(bias.size // max(s_in.size, 1), 1))
    need = bias / (s_in * BIAS_HEADROOM)
    if np.ndim(s) == 0 or need.shape != np.shape(s) or not np.any(need > s):
        return q, s
    s = np.maximum(s, need).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / s.reshape(shape)), -127, 127).astype(np.int8)
    stats["widened_weight_scales"] = stats.get("widened_weight_scales", 0) + int((need > s * (1 - 1e-6)).sum())
    return q, s


def _dq(b: _Builder, name: str, q, scale, zp, axis, node_name: str, helper):
    qn = b.const(f"{name}_quantized", q)
    sn = b.const(f"{name}_scale", np.asarray(scale, np.float32))
    zn = b.const(f"{name}_zero_point", zp)
    kw = {"axis": axis} if axis is not None else {}
    return helper.make_node("DequantizeLinear", [qn, sn, zn], [b.name(f"{name}_dequantized")],
                            name=b.name(node_name), **kw)
