"""MaxPool, AveragePool and Mean (GlobalAveragePool, ReduceMean): importers, emitters, records."""

from __future__ import annotations

import numpy as np

from edgec.errors import UnsupportedOpError
from edgec.targets.mcu.ops.record import NCHW_TO_NHWC_AXIS, OpRecord, attrs
from edgec.targets.mcu.qgraph import QOp
from edgec.targets.mcu.qmath import f32, fused_act, quantize_multiplier, same_pad


def emit_pool(op, ctx) -> list[str]:
    g = ctx.g
    x, out = g.t(op.inputs[0]), g.t(op.outputs[0])
    fields = {"batch": x.shape[0], "in_h": x.shape[1], "in_w": x.shape[2], "c": x.shape[3],
              "out_h": out.shape[1], "out_w": out.shape[2],
              "k_h": op.attrs["kernel"][0], "k_w": op.attrs["kernel"][1],
              "stride_h": op.attrs["stride"][0], "stride_w": op.attrs["stride"][1],
              "pad_h": op.attrs["pad"][0], "pad_w": op.attrs["pad"][1],
              "act_min": op.attrs["act"][0], "act_max": op.attrs["act"][1]}
    if op.attrs.get("count_pad"):
        fields.update({"count_pad": 1, "pad_value": x.zp})
    if (x.s, x.zp) != (out.s, out.zp):
        raise UnsupportedOpError(op.source_op or op.kind, op.name, "mcu",
                                 "pooling with different input/output quantization")
    p = ctx.param_struct("edgec_pool_params", fields, op)
    # maxpool_s16: the int16 twin in s16.c (ops/s16.py), the same parameters.
    fn = {"maxpool": "edgec_maxpool_s8", "avgpool": "edgec_avgpool_s8", "maxpool_s16": "edgec_maxpool_s16"}[op.kind]
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


# -- ONNX ------------------------------------------------------------------------------------


def onnx_pool(ctx, node):
    a = attrs(node)
    kind = "maxpool" if node.op_type == "MaxPool" else "avgpool"
    x = ctx.q_of(node.input[0], node)
    y, act = ctx.out_q(node, fuse=True)
    pads = a.get("pads", [0, 0, 0, 0])
    op_attrs = {"kernel": tuple(a["kernel_shape"]), "stride": tuple(a.get("strides", [1, 1])),
                "pad": (pads[0], pads[1]), "act": act}
    if kind == "avgpool" and a.get("count_include_pad", 0) and any(pads):
        op_attrs["count_pad"] = 1
    ctx.add_op(kind, node, [x], [y], op_attrs)


def pool_constraints(v) -> str | None:
    k = v.attr("kernel_shape")
    if k is None or len(k) != 2:
        return "only 2-D pooling"
    if any(d != 1 for d in v.attr("dilations", [1, 1])):
        return "dilations"
    # ceil_mode adds a last row/column whose windows run past the bottom/right edge: the kernel
    # reads a window's real taps only, which is MaxPool's result there. AveragePool's divisor
    # with count_include_pad would count the padding differently: not taken.
    if v.attr("ceil_mode", 0) and v.op_type != "MaxPool":
        return "AveragePool with ceil_mode"
    if v.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return "auto_pad SAME (write explicit pads)"
    return None


def onnx_global_avg(ctx, node):
    x = ctx.q_of(node.input[0], node)
    y, _ = ctx.out_q(node)
    ctx.add_op("mean", node, [x], [y], {"axes": [1, 2]})


def _onnx_mean(ctx, node, axes):
    x = ctx.q_of(node.input[0], node)
    y, _ = ctx.out_q(node)
    rank = len(ctx.tensors[x].shape)
    axes = [int(v) % rank for v in (axes if axes is not None else range(rank))]
    if x in ctx.rank4:
        axes = [NCHW_TO_NHWC_AXIS[v] for v in axes]
    ctx.add_op("mean", node, [x], [y], {"axes": sorted(axes)})


def onnx_reduce_mean_v1(ctx, node):
    _onnx_mean(ctx, node, attrs(node).get("axes"))


def onnx_reduce_mean_v18(ctx, node):
    axes = [int(v) for v in ctx.scalar(node.input[1])] if len(node.input) > 1 and node.input[1] else None
    _onnx_mean(ctx, node, axes)


def mean_constraints(v) -> str | None:
    if v.op_type != "ReduceMean":
        return None
    if v.opset >= 18 and v.input(1) and v.const(1) is None:
        return "axes must be a constant"
    if v.opset >= 18 and not v.input(1) and v.attr("noop_with_empty_axes", 0):
        return "noop_with_empty_axes"
    shape = v.shape(0)
    axes = v.attr("axes") if v.opset < 18 else (None if not v.input(1) else [int(a) for a in v.const(1).reshape(-1)])
    if shape is not None:
        rank = len(shape)
        ax = sorted({int(a) % rank for a in (axes if axes is not None else range(rank))})
        if rank == 4:
            ax = sorted(NCHW_TO_NHWC_AXIS[a] for a in ax)
        if ax != list(range(ax[0], ax[-1] + 1)):
            return "mean over non-adjacent axes"
    return None


# -- TFLite ----------------------------------------------------------------------------------


def tflite_pool(g, opname, node, ins, outs, opts) -> QOp:
    x, out = g.tensors[ins[0]], g.tensors[outs[0]]
    kh, kw = int(opts.filterHeight), int(opts.filterWidth)
    sh, sw = int(opts.strideH), int(opts.strideW)
    pad = (same_pad(x.shape[1], kh, sh, 1, out.shape[1], int(opts.padding)),
           same_pad(x.shape[2], kw, sw, 1, out.shape[2], int(opts.padding)))
    kind = "maxpool" if opname == "MAX_POOL_2D" else "avgpool"
    return QOp(kind, node, ins[:1], outs, {"kernel": (kh, kw), "stride": (sh, sw), "pad": pad,
                                            "act": fused_act(opts, out)}, opname)


def tflite_mean(g, opname, node, ins, outs, opts) -> QOp:
    axes = [int(a) % len(g.tensors[ins[0]].shape) for a in np.asarray(g.tensors[ins[1]].data).reshape(-1)]
    return QOp("mean", node, ins[:1], outs, {"axes": sorted(set(axes))}, opname)


RECORDS = (
    # Pooling keeps its input's scale and zero point (TFLite requires it of AVERAGE_POOL_2D),
    # so the kernel needs no requantization.
    OpRecord("Pool", kinds=("maxpool", "avgpool"), emit=emit_pool, kernels=("pool.c",),
             onnx={"MaxPool": {1: onnx_pool}, "AveragePool": {1: onnx_pool}},
             tflite={"MAX_POOL_2D": tflite_pool, "AVERAGE_POOL_2D": tflite_pool},
             constraints=(pool_constraints,), keeps_input_qparams=frozenset({"MaxPool", "AveragePool"})),
    OpRecord("Mean", kinds=("mean",), emit=emit_mean, kernels=("pool.c",),
             onnx={"GlobalAveragePool": {1: onnx_global_avg},
                   "ReduceMean": {1: onnx_reduce_mean_v1, 18: onnx_reduce_mean_v18}},
             tflite={"MEAN": tflite_mean}, constraints=(mean_constraints,)),
)
