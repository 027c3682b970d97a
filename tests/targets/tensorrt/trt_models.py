"""Tiny models built with onnx.helper, quantized with onnxruntime's QDQ quantizer, and hand-built
Q/DQ graphs with good and deliberately bad placements."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgec.calibration import CalibrationData
from edgec.compiler.model import ModelHandle
from edgec.targets.base import LowerSpec

OPSET = 17


def _w(rng, *shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def make_model(nodes, inputs, outputs, inits, opset=OPSET):
    g = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def cnn(batch=1, seed=0):
    """Conv-Relu-Conv + residual Add - Relu - GAP - Flatten - Gemm(transB)."""
    rng = np.random.default_rng(seed)
    inits = {"w1": _w(rng, 8, 3, 3, 3), "b1": _w(rng, 8), "w2": _w(rng, 8, 8, 3, 3, scale=0.15), "b2": _w(rng, 8),
             "wf": _w(rng, 4, 8), "bf": _w(rng, 4)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["a1"], name="add1"),
        helper.make_node("Relu", ["a1"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    b = batch if isinstance(batch, int) else batch
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, 3, 8, 8])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [b, 4])], inits)


def mlp(seed=0):
    """MatMul [1,16]x[16,12] + bias - Relu - MatMul [12,4]."""
    rng = np.random.default_rng(seed)
    inits = {"w1": _w(rng, 16, 12), "b1": _w(rng, 12), "w2": _w(rng, 12, 4)}
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="mm1"),
        helper.make_node("Add", ["m1", "b1"], ["a1"], name="bias1"),
        helper.make_node("Relu", ["a1"], ["r1"], name="relu1"),
        helper.make_node("MatMul", ["r1", "w2"], ["y"], name="mm2"),
    ]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)


def offset(seed=0):
    """Conv - Sigmoid - Add 50 - Conv: the second Conv's input lives in [50, 51]."""
    rng = np.random.default_rng(seed)
    inits = {"w1": _w(rng, 4, 3, 3, 3), "w2": _w(rng, 4, 4, 1, 1), "k": np.array(50.0, np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c1"], ["s1"], name="sigmoid"),
        helper.make_node("Add", ["s1", "k"], ["o1"], name="shift"),
        helper.make_node("Conv", ["o1", "w2"], ["y"], name="conv2"),
    ]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)


def samples_for(model, n=8, seed=1):
    rng = np.random.default_rng(seed)
    inp = model.graph.input[0]
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    return [{inp.name: rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


def quantize(model, samples, tmp: Path, **extra):
    """onnxruntime QDQ static quantization with TensorRT's settings (symmetric int8, per channel)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(samples)

        def get_next(self):
            return next(self.it, None)

    src, dst = tmp / "float.onnx", tmp / "qdq.onnx"
    onnx.save(model, src)
    opts = {"ActivationSymmetric": True, "WeightSymmetric": True}
    opts.update(extra)
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, extra_options=opts)
    return onnx.load(dst)


def handle(model, name="m.onnx", **kw):
    return ModelHandle.from_onnx(model, name, "0" * 64, **kw)


def spec_for(model, precision="fp16", qdq=None, samples=None, **kw):
    calib = CalibrationData(samples, source="test") if samples else None
    return LowerSpec(precision=precision, float_model=handle(model), quant_model=handle(qdq) if qdq else None,
                     calibration=calib, **kw)


# ---- hand-built Q/DQ graphs (good and deliberately bad placements) ----------------------
def _qparams(prefix, scale, zp=0, zp_type=np.int8):
    return {f"{prefix}_s": np.asarray(scale, np.float32), f"{prefix}_z": np.asarray(zp, zp_type)}


def qdq_weighted(op="Conv", w_axis=None, act_zp=0, act_zp_type=np.int8, quantize_act=True, quantize_weight=True,
                 trans_b=0, weight_first=False, act_scale=0.05):
    """x -> Q -> DQ -> OP(weight int8 -> DQ) -> y, with knobs to break each rule."""
    rng = np.random.default_rng(0)
    inits, nodes = {}, []
    if op == "Conv":
        w, xs, ys, default_axis = _w(rng, 4, 3, 3, 3), [1, 3, 6, 6], [1, 4, 4, 4], 0
    elif op == "ConvTranspose":
        w, xs, ys, default_axis = _w(rng, 3, 4, 3, 3), [1, 3, 4, 4], [1, 4, 6, 6], 1
    elif op == "MatMul":
        w, xs, ys, default_axis = _w(rng, 8, 5), [1, 8], [1, 5], 1
    else:  # Gemm
        w = _w(rng, 5, 8) if trans_b else _w(rng, 8, 5)
        xs, ys, default_axis = [1, 8], [1, 5], (0 if trans_b else 1)
    axis = default_axis if w_axis is None else w_axis
    ch = w.shape[axis]
    ws = (np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis)) / 127).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = ch
    wq = np.clip(np.round(w / ws.reshape(shape)), -127, 127).astype(np.int8)
    inits["w_q"] = wq
    inits.update(_qparams("w", ws, np.zeros(ch, np.int8)))
    inits["w_float"] = w
    inits.update(_qparams("x", act_scale, act_zp, act_zp_type))
    act = "x"
    if quantize_act:
        nodes += [helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"], name="x_q"),
                  helper.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xd"], name="x_dq")]
        act = "xd"
    wt = "w_float"
    if quantize_weight:
        nodes.append(helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["wd"], name="w_dq", axis=axis))
        wt = "wd"
    ins = [wt, act] if weight_first else [act, wt]
    kw = {"transB": trans_b} if op == "Gemm" else {}
    nodes.append(helper.make_node(op, ins, ["y"], name="layer", **kw))
    if weight_first:
        ys = None
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ys)], inits)


def qdq_residual(quantize_left=True, quantize_right=True):
    """Two Q/DQ'd Convs whose outputs meet in an Add; each Add input optionally quantized."""
    rng = np.random.default_rng(0)
    inits = {"w_q": np.clip(np.round(_w(rng, 3, 3, 1, 1) * 100), -127, 127).astype(np.int8)}
    inits.update(_qparams("w", np.full(3, 0.01), np.zeros(3, np.int8)))
    inits.update(_qparams("x", 0.05))
    inits.update(_qparams("a", 0.1))
    inits.update(_qparams("b", 0.1))
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"], name="x_q"),
             helper.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xd"], name="x_dq"),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["wd"], name="w_dq", axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv"),
             helper.make_node("Relu", ["x"], ["skip"], name="skip_relu")]
    left, right = "c", "skip"
    if quantize_left:
        nodes += [helper.make_node("QuantizeLinear", ["c", "a_s", "a_z"], ["cq"], name="c_q"),
                  helper.make_node("DequantizeLinear", ["cq", "a_s", "a_z"], ["cd"], name="c_dq")]
        left = "cd"
    if quantize_right:
        nodes += [helper.make_node("QuantizeLinear", ["skip", "b_s", "b_z"], ["sq"], name="s_q"),
                  helper.make_node("DequantizeLinear", ["sq", "b_s", "b_z"], ["sd"], name="s_dq")]
        right = "sd"
    nodes.append(helper.make_node("Add", [left, right], ["y"], name="residual_add"))
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])], inits)
