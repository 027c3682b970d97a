"""Element-wise ops: Add, Mul (TFLite int8 numerics, 4-D broadcasting), requantize/ReLU/Clip,
LUT activations (Sigmoid, Tanh), reshapes (views) and the float I/O Quantize/Dequantize."""

from __future__ import annotations

import numpy as np

from edgec.targets.mcu.ops.record import OpRecord, lut_importers
from edgec.targets.mcu.qgraph import QOp, QTensor
from edgec.targets.mcu.qmath import act_range, clip_range, f32, fused_act, quantize_multiplier


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
    out = ctx.g.t(op.outputs[0])
    if out.dtype != "int8":  # an int16 view (mixed 16x8 graph): the same bytes, two per element
        src, dst = f"(const int8_t *)(const void *){src}", f"(int8_t *)(void *){dst}"
    return [f"edgec_copy_s8({out.nbytes}, {src}, {dst});"]


# A float I/O kernel's element type (int16: a 16x8 .tflite with float inputs/outputs).
_SUFFIX = {"int8": "s8", "int16": "s16"}


def emit_dequantize(op, ctx) -> list[str]:
    x = ctx.g.t(op.inputs[0])
    return [f"edgec_dequantize_{_SUFFIX[x.dtype]}_f32({x.size}, {ctx.float_literal(x.s)}, {x.zp}, "
            f"{ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


def _emit_quantize(op, ctx) -> list[str]:
    out = ctx.g.t(op.outputs[0])
    return [f"edgec_quantize_f32_{_SUFFIX[out.dtype]}({out.size}, {ctx.float_literal(out.s)}, {out.zp}, "
            f"{ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


def emit_quantize_io(op, ctx) -> list[str]:
    return (_emit_quantize if op.kind == "quantize" else emit_dequantize)(op, ctx)


# -- ONNX ------------------------------------------------------------------------------------


def _onnx_binary(ctx, node, kind):
    ins = [ctx.q_of(i, node) for i in node.input[:2]]
    y, act = ctx.out_q(node, fuse=True)
    out_rank4 = y in ctx.rank4
    fixed = []
    for n in ins:
        t = ctx.tensors[n]
        if out_rank4 and t.is_const:
            data = np.asarray(t.data)
            data = data.reshape((1,) * (4 - data.ndim) + data.shape).transpose(0, 2, 3, 1)
            n = ctx.add_tensor(QTensor(n + "/nhwc", tuple(data.shape), t.dtype, t.scale, t.zero_point,
                                       np.ascontiguousarray(data)))
        elif out_rank4 and n not in ctx.rank4:
            from edgec.errors import UnsupportedOpError

            raise UnsupportedOpError(node.op_type, node.name or node.output[0], "mcu",
                                     "broadcasting a lower-rank activation onto a 4-D tensor")
        fixed.append(n)
    ctx.add_op(kind, node, fixed, [y], {"act": act})


def onnx_add(ctx, node):
    _onnx_binary(ctx, node, "add")


def onnx_mul(ctx, node):
    _onnx_binary(ctx, node, "mul")


def binary_constraints(v) -> str | None:
    out = v.out_shape()
    if out is not None and len(out) > 4:
        return "more than 4 dimensions"
    return None


def onnx_activation(ctx, node):
    x = ctx.q_of(node.input[0], node)
    y, _ = ctx.out_q(node)
    lo, hi = ctx.clip_bounds(node)
    yt = ctx.tensors[y]
    ctx.add_op("requant", node, [x], [y], {"act": clip_range(lo, hi, yt.s, yt.zp)})


def clip_constraints(v) -> str | None:
    for i in (1, 2):
        if v.input(i) and v.const(i) is None:
            return "Clip bounds must be constants"
    return None


def _in_graph_order(ctx, name) -> bool:
    """Whether a tensor's bytes are in the ONNX graph's order (NHWC with C == 1 or H*W == 1 is)."""
    t = ctx.tensors[name]
    return name not in ctx.rank4 or t.shape[1] * t.shape[2] == 1 or t.shape[3] == 1


def onnx_reshape(ctx, node):
    x = ctx.q_of(node.input[0], node)
    y, _ = ctx.out_q(node)
    xt, yt = ctx.tensors[x], ctx.tensors[y]
    src = x
    same_nhwc = x in ctx.rank4 and y in ctx.rank4 and xt.shape == yt.shape  # Identity, no-op reshapes
    if not same_nhwc and not _in_graph_order(ctx, x):
        nchw = ctx.add_tensor(QTensor(ctx.fresh(x) + "/nchw", (xt.shape[0], xt.shape[3], xt.shape[1], xt.shape[2]),
                                      xt.dtype, xt.scale, xt.zero_point))
        ctx.add_op("transpose", node, [x], [nchw], {"perm": [0, 3, 1, 2]})
        src = nchw
    if not same_nhwc and not _in_graph_order(ctx, y):
        mid = ctx.add_tensor(QTensor(ctx.fresh(y) + "/nchw", (yt.shape[0], yt.shape[3], yt.shape[1], yt.shape[2]),
                                     yt.dtype, yt.scale, yt.zero_point))
        ctx.add_op("reshape", node, [src], [mid])
        ctx.add_op("transpose", node, [mid], [y], {"perm": [0, 2, 3, 1]})
        return
    if (xt.s, xt.zp) != (yt.s, yt.zp):
        mid = ctx.add_tensor(QTensor(ctx.fresh(y), yt.shape, xt.dtype, xt.scale, xt.zero_point))
        ctx.add_op("reshape", node, [src], [mid])
        ctx.add_op("requant", node, [mid], [y], {"act": (-128, 127)})
        return
    ctx.add_op("reshape", node, [src], [y])


# -- TFLite ----------------------------------------------------------------------------------


def tflite_binary(g, opname, node, ins, outs, opts) -> QOp:
    return QOp(opname.lower(), node, ins[:2], outs, {"act": fused_act(opts, g.tensors[outs[0]])}, opname)


def tflite_relu(g, opname, node, ins, outs, opts) -> QOp:
    out = g.tensors[outs[0]]
    return QOp("requant", node, ins[:1], outs, {"act": act_range(opname, out.s, out.zp)}, opname)


def tflite_reshape(g, opname, node, ins, outs, opts) -> QOp:
    return QOp("reshape", node, ins[:1], outs, {}, opname)


def tflite_quantize(g, opname, node, ins, outs, opts) -> QOp:
    if opname == "DEQUANTIZE":
        return QOp("dequantize", node, ins[:1], outs, {}, opname)
    if g.tensors[ins[0]].dtype == "float32":
        return QOp("quantize", node, ins[:1], outs, {}, opname)
    return QOp("requant", node, ins[:1], outs, {"act": (-128, 127)}, opname)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


_RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")

RECORDS = (
    OpRecord("Add", kinds=("add",), emit=emit_add, kernels=("elementwise.c",), inplace=True,
             onnx={"Add": {1: onnx_add}}, tflite={"ADD": tflite_binary}, constraints=(binary_constraints,)),
    OpRecord("Mul", kinds=("mul",), emit=emit_mul, kernels=("elementwise.c",), inplace=True,
             onnx={"Mul": {1: onnx_mul}}, tflite={"MUL": tflite_binary}, constraints=(binary_constraints,)),
    OpRecord("Requantize", kinds=("requant",), emit=emit_requant, kernels=("elementwise.c",), inplace=True,
             onnx={"Relu": {1: onnx_activation}, "Clip": {1: onnx_activation}},
             tflite={"RELU": tflite_relu, "RELU6": tflite_relu}, constraints=(clip_constraints,)),
    # One kernel for every element-wise function of one int8 tensor: a 256-entry table.
    OpRecord("Lookup table", kinds=("lut",), emit=emit_lut, kernels=("elementwise.c",), inplace=True),
    OpRecord("Sigmoid", lut=sigmoid, **lut_importers("Sigmoid", "Sigmoid", "LOGISTIC")),
    OpRecord("Tanh", lut=np.tanh, **lut_importers("Tanh", "Tanh", "TANH")),
    OpRecord("Reshape", kinds=("reshape",), emit=emit_reshape, kernels=("elementwise.c",),
             onnx={**{op: {1: onnx_reshape} for op in _RESHAPES}, "Identity": {1: onnx_reshape}},
             tflite={"RESHAPE": tflite_reshape, "SQUEEZE": tflite_reshape},
             keeps_input_qparams=frozenset(_RESHAPES) | {"Identity"}, any_layout=True),
    OpRecord("Quantize", kinds=("quantize", "dequantize"), emit=emit_quantize_io, kernels=("float_io.c",),
             tflite={"QUANTIZE": tflite_quantize, "DEQUANTIZE": tflite_quantize}),
)
