"""Conv2D, DepthwiseConv2D and FullyConnected emitters (per-channel requantization)."""

from __future__ import annotations

import numpy as np

from edgec.targets.mcu.qmath import f32, quantize_multiplier


def _channel_multipliers(s_in: float, w_scales: np.ndarray, s_out: float, n: int) -> tuple[list[int], list[int]]:
    ws = np.asarray(w_scales, np.float32).reshape(-1)
    if ws.size == 1:
        ws = np.repeat(ws, n)
    mults, shifts = [], []
    for c in range(n):
        # TFLite PopulateConvolutionQuantizationParams: double(in) * double(w) / double(out).
        m, s = quantize_multiplier(f32(s_in) * float(ws[c]) / f32(s_out))
        mults.append(m)
        shifts.append(s)
    return mults, shifts


def emit_conv(op, ctx) -> list[str]:
    g = ctx.g
    x, w, out = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    bias = g.t(op.inputs[2]) if len(op.inputs) > 2 else None
    n_out = out.shape[3]
    mults, shifts = _channel_multipliers(x.s, w.scale, out.s, n_out)
    depthwise = op.kind == "dwconv"
    kh, kw = (w.shape[1], w.shape[2])
    fields = {
        "batch": x.shape[0], "in_h": x.shape[1], "in_w": x.shape[2], "in_c": x.shape[3],
        "out_h": out.shape[1], "out_w": out.shape[2], "out_c": n_out, "k_h": kh, "k_w": kw,
        "stride_h": op.attrs["stride"][0], "stride_w": op.attrs["stride"][1],
        "dil_h": op.attrs["dilation"][0], "dil_w": op.attrs["dilation"][1],
        "pad_h": op.attrs["pad"][0], "pad_w": op.attrs["pad"][1],
        "depth_mult": op.attrs.get("depth_mult", 1),
        "in_offset": -x.zp, "out_offset": out.zp,
        "act_min": op.attrs["act"][0], "act_max": op.attrs["act"][1],
    }
    p = ctx.param_struct("edgec_conv_params", fields, op)
    wsym = ctx.const_array(op.inputs[1], "int8_t", w.data)
    # Fold the input offset into the bias: sum w*(x - zp) + b = sum w*x + (b - zp * sum w).
    # Conv's im2col pads with zp and depthwise subtracts the padded taps' share, so the
    # kernels' hot loops multiply raw int8 values.
    wsum = w.data.astype(np.int64).reshape(n_out, -1).sum(axis=1) if not depthwise else \
        w.data.astype(np.int64).reshape(-1, n_out).sum(axis=0)
    b = (bias.data.astype(np.int64) if bias is not None else np.zeros(n_out, np.int64)) - x.zp * wsum
    bsym = ctx.const_array(op.name + "_bias", "int32_t", _wrap_i32(b), dedup_key=None)
    msym = ctx.const_array(op.name + "_mult", "int32_t", mults, dedup_key=None)
    ssym = ctx.const_array(op.name + "_shift", "int32_t", shifts, dedup_key=None)
    args = f"&{p}, {ctx.ref(op.inputs[0])}, {wsym}, {bsym}, {msym}, {ssym}, {ctx.ref(op.outputs[0], True)}"
    if depthwise:
        return [f"edgec_dwconv_s8({args});"]
    pointwise = (kh, kw) == (1, 1) and fields["stride_h"] == fields["stride_w"] == 1 and \
        fields["pad_h"] == fields["pad_w"] == 0 and x.shape[1:3] == out.shape[1:3]
    if pointwise:
        return [f"edgec_conv_s8({args}, 0);"]
    # Up to 2 im2col columns (the DSP kernel's block); the model keeps one scratch buffer.
    ctx.scratch_bytes = max(ctx.scratch_bytes, 2 * kh * kw * x.shape[3])
    return [f"edgec_conv_s8({args}, edgec_scratch);"]


def _wrap_i32(v: np.ndarray) -> np.ndarray:
    return ((v + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def emit_fc(op, ctx) -> list[str]:
    g = ctx.g
    x, w, out = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    bias = g.t(op.inputs[2]) if len(op.inputs) > 2 else None
    n, k = w.shape
    ws = np.asarray(w.scale, np.float32).reshape(-1)
    if ws.size == 1 and op.attrs.get("tflite_per_tensor_float"):
        # TFLite's GetQuantizedConvolutionMultipler multiplies the scales in float32 first.
        m, s = quantize_multiplier(float(np.float32(x.s) * ws[0]) / f32(out.s))
        mults, shifts = [m], [s]
    else:
        mults, shifts = _channel_multipliers(x.s, ws, out.s, n if ws.size > 1 else 1)
    # Fold the input zero point into the bias: sum_k w*(x - zp) + b = sum_k w*x + (b - zp*sum_k w).
    wsum = w.data.astype(np.int64).sum(axis=1)
    b = (bias.data.astype(np.int64) if bias is not None else np.zeros(n, np.int64)) - x.zp * wsum
    b = _wrap_i32(b)
    fields = {"batch": x.size // k, "in_k": k, "out_n": n, "per_channel": int(len(mults) > 1),
              "in_offset": -x.zp, "out_offset": out.zp,
              "act_min": op.attrs["act"][0], "act_max": op.attrs["act"][1]}
    p = ctx.param_struct("edgec_fc_params", fields, op)
    wsym = ctx.const_array(op.inputs[1], "int8_t", w.data)
    bsym = ctx.const_array(op.name + "_bias", "int32_t", b, dedup_key=None)
    msym = ctx.const_array(op.name + "_mult", "int32_t", mults, dedup_key=None)
    ssym = ctx.const_array(op.name + "_shift", "int32_t", shifts, dedup_key=None)
    return [f"edgec_fc_s8(&{p}, {ctx.ref(op.inputs[0])}, {wsym}, {bsym}, {msym}, {ssym}, {ctx.ref(op.outputs[0], True)});"]


EMITTERS = {"conv": emit_conv, "dwconv": emit_conv, "fc": emit_fc}
