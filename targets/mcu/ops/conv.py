"""Conv (regular and depthwise) and FullyConnected (Gemm/MatMul): importers, emitters,
records. Per-channel requantization as TFLite's int8 reference kernels."""

from __future__ import annotations

import numpy as np

from edgec.targets.mcu.ops.record import OpRecord, attrs
from edgec.targets.mcu.qgraph import QOp, QTensor
from edgec.targets.mcu.qmath import f32, fused_act, quantize_multiplier, same_pad


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


def _conv_call(op, ctx, fields_extra: dict, struct: str, fn: str) -> list[str]:
    g = ctx.g
    x, w, out = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    bias = g.t(op.inputs[2]) if len(op.inputs) > 2 else None
    n_out = out.shape[3]
    mults, shifts = _channel_multipliers(x.s, w.scale, out.s, n_out)
    kh, kw = (w.shape[1], w.shape[2])
    fields = conv_fields(op, x, w, out, fields_extra)
    depthwise = op.kind == "dwconv"
    # Fold the input offset into the bias: sum w*(x - zp) + b = sum w*x + (b - zp * sum w).
    # Conv's im2col pads with zp and depthwise subtracts the padded taps' share, so the
    # kernels' hot loops multiply raw int8 values.
    w_rows = w.data.astype(np.int64).reshape(n_out, -1) if not depthwise else \
        w.data.astype(np.int64).reshape(-1, n_out).T
    b = (bias.data.astype(np.int64) if bias is not None else np.zeros(n_out, np.int64)) - x.zp * w_rows.sum(axis=1)
    chunked = depthwise and fields["depth_mult"] == 1 and kh * kw <= DW_MAX_TAPS
    ctx.dw_generic |= depthwise and not chunked
    ctx.dw_tail |= chunked and n_out % _dw_chunk(ctx.cpu) != 0
    ctx.conv_tail |= op.kind == "conv" and n_out % 4 != 0
    ctx.conv_dilated |= op.kind == "conv" and fields["dil_w"] > 1
    if struct == "edgec_conv_params":
        fast = _rq_fast(shifts, np.abs(b) + 128 * np.abs(w_rows).sum(axis=1))
        fields["rq_fast"] = 0 if not fast else 2 if tuple(op.attrs["act"]) == (-128, 127) else 1
        fields["dw_chunk"] = _dw_chunk(ctx.cpu) if chunked else 1
        _check_byte_fields(op, fields)
    p = ctx.param_struct(struct, fields, op)
    k = kh * kw * x.shape[3]
    pointwise = (kh, kw) == (1, 1) and fields["stride_h"] == fields["stride_w"] == 1 and \
        fields["pad_h"] == fields["pad_w"] == 0 and x.shape[1:3] == out.shape[1:3]
    if chunked:
        wsym, b, mults, shifts = _dw_chunked(op, ctx, w_rows, b, mults, shifts)
    elif op.kind == "conv" and k % 4:
        # im2col convs read rows of a whole number of words (conv.c's k_pad): zero-pad them.
        k_pad = (k + 3) // 4 * 4
        wpad = np.zeros((n_out, k_pad), np.int8)
        wpad[:, :k] = w.data.reshape(n_out, k)
        wsym = ctx.const_array(op.name + "_wpad", "int8_t", wpad, dedup_key=None)
    else:
        wsym = ctx.const_array(op.inputs[1], "int8_t", w.data)
    msym = ctx.const_array(op.name + "_mult", "int32_t", mults, dedup_key=None)
    ssym = ctx.const_array(op.name + "_shift", "int32_t", shifts, dedup_key=None)
    if op.kind == "gconv":  # the grouped kernel adds the input offset itself
        bsym = ctx.const_array(op.inputs[2], "int32_t", bias.data) if bias is not None else "0"
        return [f"{fn}(&{p}, {ctx.ref(op.inputs[0])}, {wsym}, {bsym}, {msym}, {ssym}, {ctx.ref(op.outputs[0], True)});"]
    bsym = ctx.const_array(op.name + "_bias", "int32_t", _wrap_i32(b), dedup_key=None)
    args = f"&{p}, {ctx.ref(op.inputs[0])}, {wsym}, {bsym}, {msym}, {ssym}, {ctx.ref(op.outputs[0], True)}"
    if depthwise:
        # The zero-point row padded taps read (in_c bytes).
        ctx.scratch_bytes = max(ctx.scratch_bytes, x.shape[3])
        return [f"{fn}({args}, edgec_scratch);"]
    # conv.c's scratch: 2 int8 im2col columns, and on SIMD32 CPUs 2 more as int16 pairs
    # (1x1 stride-1 convs with whole words read their columns in place).
    k_pad = (k + 3) // 4 * 4
    direct = pointwise and k % 4 == 0
    simd32, mve = ctx.cpu in SIMD32_CPUS, ctx.cpu in MVE_CPUS
    # Helium: the column pair interleaved in 16-byte blocks (conv.c's interleave2).
    need = (0 if direct else 2 * k_pad) + (4 * k_pad if simd32 else 0) + (2 * ((k_pad + 15) // 16 * 16) if mve else 0)
    if not need:
        return [f"{fn}({args}, 0, 0);"]
    ctx.scratch_bytes = max(ctx.scratch_bytes, need)
    return [f"{fn}({args}, edgec_scratch, {need});"]


def conv_fields(op, x, w, out, extra: dict) -> dict:
    """The geometry, offsets and clamp of an edgec_conv_params (``extra``: depth_mult or groups)."""
    return {
        "batch": x.shape[0], "in_h": x.shape[1], "in_w": x.shape[2], "in_c": x.shape[3],
        "out_h": out.shape[1], "out_w": out.shape[2], "out_c": out.shape[3], "k_h": w.shape[1], "k_w": w.shape[2],
        "stride_h": op.attrs["stride"][0], "stride_w": op.attrs["stride"][1],
        "dil_h": op.attrs["dilation"][0], "dil_w": op.attrs["dilation"][1],
        "pad_h": op.attrs["pad"][0], "pad_w": op.attrs["pad"][1],
        **extra,
        "in_offset": -x.zp, "out_offset": out.zp,
        "act_min": op.attrs["act"][0], "act_max": op.attrs["act"][1],
    }


# CPUs whose kernels take conv.c's SIMD32 path (ACLE __ARM_FEATURE_DSP without Helium).
SIMD32_CPUS = ("cortex-m4", "cortex-m7", "cortex-m33")
# CPUs whose kernels take conv.c's Helium path (__ARM_FEATURE_MVE).
MVE_CPUS = ("cortex-m55", "cortex-m85")
# dwconv.c's EDGEC_DW_MAX_TAPS: larger depthwise windows keep TFLite's weight layout.
DW_MAX_TAPS = 64


# edgec_conv_params fields kept in int8 (edgec_kernels.h).
_BYTE_FIELDS = ("batch", "k_h", "k_w", "stride_h", "stride_w", "dil_h", "dil_w", "pad_h", "pad_w", "depth_mult")


def _check_byte_fields(op: QOp, fields: dict) -> None:
    big = {k: int(fields[k]) for k in _BYTE_FIELDS if not -128 <= int(fields[k]) <= 127}
    if big:
        from edgec.errors import UnsupportedOpError

        raise UnsupportedOpError(op.source_op or op.kind, op.name, "mcu",
                                 f"{', '.join(f'{k} {v}' for k, v in big.items())} over the mcu kernels' 127")


def _rq_fast(shifts, acc_bound: np.ndarray) -> bool:
    """edgec_conv_internal.h's rq_dsp is exact for the layer: every shift <= -1, and a doubled accumulator
    fits in int32 or the right shift is at most 21 (then a saturated one clamps alike)."""
    right = -np.asarray(shifts, np.int64)
    return bool(right.min() >= 1 and (right.max() <= 21 or acc_bound.max() < (1 << 30)))


def kernel_isa(cpu: str) -> int:
    """The kernels' instruction set for ``cpu`` (edgec_conv_internal.h's EDGEC_ISA): 2 Helium,
    1 SIMD32, 0 portable C. The bundle's layouts and scratch sizes are made for it."""
    return 2 if cpu in MVE_CPUS else 1 if cpu in SIMD32_CPUS else 0


def _dw_chunk(cpu: str) -> int:
    return 8 if cpu in MVE_CPUS else 4 if cpu in SIMD32_CPUS else 1


def _dw_chunked(op, ctx, w_rows: np.ndarray, b, mults, shifts):
    """Depthwise weights in dwconv.c's channel chunks (edgec_kernels.h): a permutation, no
    flash cost. Helium kernels also read each whole chunk's bias/mult/shift even channels first."""
    g = _dw_chunk(ctx.cpu)
    n = w_rows.shape[0]
    whole = n - n % g
    chunks = [w_rows[c:c + g].T.reshape(-1) for c in range(0, whole, g)] + [w_rows[c] for c in range(whole, n)]
    wsym = ctx.const_array(op.name + "_wchunks", "int8_t", np.concatenate(chunks).astype(np.int8), dedup_key=None)
    if g == 8:
        perm = np.arange(n)
        perm[:whole] = (np.arange(whole) // 8 * 8 + np.tile([0, 2, 4, 6, 1, 3, 5, 7], whole // 8))
        b = np.asarray(b)[perm]
        mults, shifts = [mults[i] for i in perm], [shifts[i] for i in perm]
    return wsym, b, mults, shifts


def _wrap_i32(v: np.ndarray) -> np.ndarray:
    return ((v + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def emit_conv(op, ctx) -> list[str]:
    fn = "edgec_dwconv_s8" if op.kind == "dwconv" else "edgec_conv_s8"
    return _conv_call(op, ctx, {"depth_mult": op.attrs.get("depth_mult", 1)}, "edgec_conv_params", fn)


def emit_group_conv(op, ctx) -> list[str]:
    return _conv_call(op, ctx, {"groups": op.attrs["groups"]}, "edgec_group_conv_params", "edgec_group_conv_s8")


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


# -- ONNX ------------------------------------------------------------------------------------


def onnx_conv(ctx, node):
    a = attrs(node)
    x = ctx.q_of(node.input[0], node)
    w = ctx.tensors[ctx.q_of(node.input[1], node)]
    b = ctx.q_of(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
    y, act = ctx.out_q(node, fuse=True)
    xt, yt = ctx.tensors[x], ctx.tensors[y]
    group = int(a.get("group", 1))
    kh, kw = w.shape[2], w.shape[3]
    strides = a.get("strides", [1, 1])
    dil = a.get("dilations", [1, 1])
    pads = list(a.get("pads", [0, 0, 0, 0]))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for i, (n_in, k, s, d) in enumerate(zip(xt.shape[1:3], (kh, kw), strides, dil)):
            total = max(0, (yt.shape[1 + i] - 1) * s + (k - 1) * d + 1 - n_in)
            pads.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
        pads = pads + pads
    op_attrs = {"stride": tuple(strides), "dilation": tuple(dil), "pad": (pads[0], pads[1]), "act": act}
    in_c = xt.shape[3]
    if group == 1 or w.shape[1] != 1 or group != in_c:
        wq = QTensor(w.name + "/ohwi", (w.shape[0], kh, kw, w.shape[1]), "int8", w.scale, w.zero_point,
                     np.ascontiguousarray(w.data.transpose(0, 2, 3, 1)), 0)
        kind = "conv"
        if group > 1:
            kind = "gconv"
            op_attrs["groups"] = group
    else:
        wq = QTensor(w.name + "/1hwc", (1, kh, kw, w.shape[0]), "int8", w.scale, w.zero_point,
                     np.ascontiguousarray(w.data.transpose(1, 2, 3, 0)), 3)
        kind = "dwconv"
        op_attrs["depth_mult"] = w.shape[0] // in_c
    ctx.add_tensor(wq)
    ctx.add_op(kind, node, [x, wq.name] + ([b] if b else []), [y], op_attrs)


def conv_constraints(v) -> str | None:
    x, w = v.shape(0), v.shape(1)
    if (x is not None and len(x) != 4) or (w is not None and len(w) != 4):
        return "only 2-D convolutions"
    if v.const(1) is None:
        return "the weights must be a constant"
    group = int(v.attr("group", 1))
    if x is not None and w is not None and (x[1] % group or w[0] % group or w[1] * group != x[1]):
        return f"group={group} does not divide {x[1]} input / {w[0]} output channels"
    return None


def _fc(ctx, node, x, w_arr, w_scale, bias):
    y, act = ctx.out_q(node, fuse=True)
    w = QTensor(ctx.fresh(node.name or "fc") + "/w", tuple(w_arr.shape), "int8", w_scale,
                np.zeros(w_scale.size, np.int64), np.ascontiguousarray(w_arr), 0)
    ctx.add_tensor(w)
    ctx.add_op("fc", node, [x, w.name] + ([bias] if bias else []), [y], {"act": act})


def onnx_gemm(ctx, node):
    a = attrs(node)
    x = ctx.q_of(node.input[0], node)
    w = ctx.tensors[ctx.q_of(node.input[1], node)]
    b = ctx.q_of(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
    warr = w.data if a.get("transB", 0) else w.data.T
    _fc(ctx, node, x, warr, w.scale, b)


def onnx_matmul(ctx, node):
    x = ctx.q_of(node.input[0], node)
    w = ctx.tensors[ctx.q_of(node.input[1], node)]
    _fc(ctx, node, x, w.data.T, w.scale, None)


def fc_constraints(v) -> str | None:
    if v.op_type == "Gemm":
        if float(v.attr("alpha", 1.0)) != 1.0 or float(v.attr("beta", 1.0)) != 1.0 or v.attr("transA", 0):
            return "alpha/beta != 1 or transA"
        if v.const(1) is None:
            return "the weights must be a constant"
        return None
    w = v.const(1)
    if w is None or w.ndim != 2:
        return "only MatMul by a constant 2-D weight"
    return None


# -- TFLite ----------------------------------------------------------------------------------


def tflite_conv(g, opname, node, ins, outs, opts) -> QOp:
    T = g.tensors
    out = T[outs[0]]
    x, w = T[ins[0]], T[ins[1]]
    _, ih, iw, _ = x.shape
    _, oh, ow, _ = out.shape
    kh, kw = w.shape[1], w.shape[2]
    sh, sw = int(opts.strideH), int(opts.strideW)
    dh, dw = int(opts.dilationHFactor or 1), int(opts.dilationWFactor or 1)
    pad = (same_pad(ih, kh, sh, dh, oh, int(opts.padding)), same_pad(iw, kw, sw, dw, ow, int(opts.padding)))
    op_attrs = {"stride": (sh, sw), "dilation": (dh, dw), "pad": pad, "act": fused_act(opts, out)}
    kind = "conv"
    if opname == "DEPTHWISE_CONV_2D":
        kind = "dwconv"
        op_attrs["depth_mult"] = out.shape[3] // x.shape[3]
    elif w.shape[3] != x.shape[3]:  # a filter over a slice of the input channels: grouped
        kind = "gconv"
        op_attrs["groups"] = x.shape[3] // w.shape[3]
    inputs = [ins[0], ins[1]] + ([ins[2]] if len(ins) > 2 and ins[2] else [])
    return QOp(kind, node, inputs, outs, op_attrs, opname)


def tflite_fc(g, opname, node, ins, outs, opts) -> QOp:
    inputs = [ins[0], ins[1]] + ([ins[2]] if len(ins) > 2 and ins[2] else [])
    return QOp("fc", node, inputs, outs, {"act": fused_act(opts, g.tensors[outs[0]]), "tflite_per_tensor_float": True},
               opname)


RECORDS = (
    OpRecord("Conv", kinds=("conv", "dwconv"), emit=emit_conv, kernels=("conv.c", "dwconv.c"),
             onnx={"Conv": {1: onnx_conv}}, tflite={"CONV_2D": tflite_conv, "DEPTHWISE_CONV_2D": tflite_conv},
             constraints=(conv_constraints,)),
    # Emitted by the Conv importers for 1 < groups < channels; a kernel of its own so the
    # regular/depthwise kernels stay specialised.
    OpRecord("GroupedConv", kinds=("gconv",), emit=emit_group_conv, kernels=("group_conv.c",),
             headers=("edgec_group_conv.h",)),
    OpRecord("FullyConnected", kinds=("fc",), emit=emit_fc, kernels=("conv.c",),
             onnx={"Gemm": {1: onnx_gemm}, "MatMul": {1: onnx_matmul}}, tflite={"FULLY_CONNECTED": tflite_fc},
             constraints=(fc_constraints,)),
)
