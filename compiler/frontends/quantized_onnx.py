"""Already-quantized ONNX sources: Q/DQ, or dynamic quantization (ConvInteger/MatMulInteger/
DynamicQuantizeLinear, ORT's DynamicQuantizeLSTM).

By default the model is dequantized back to float (the weights become ``(q - zp) * scale``,
activation fake-quantization is removed) and edgec calibrates and quantizes it like any float
model. With ``--keep-source-quantization`` a Q/DQ model is lowered with the user's own scales
on targets that consume Q/DQ ONNX. The report's ``frontend`` entry says which happened.

The dequantization is exact for the weights: a dynamically quantized activation ``x`` is
replaced by ``x`` itself with scale 1 and zero point 0, so ``ConvInteger(x, w) * sx * sw``
becomes ``Conv(x, w - zw) * sw``; constant folding then merges the scales into the weights.
"""

from __future__ import annotations

import numpy as np

from edgec.compiler.model import ModelHandle
from edgec.errors import ConfigError, UnsupportedOpError

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
DYNAMIC_OPS = ("DynamicQuantizeLinear", "ConvInteger", "MatMulInteger", "DynamicQuantizeLSTM")
QOPERATOR_OPS = ("QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QGemm", "QLinearSigmoid",
                 "QLinearGlobalAveragePool", "QLinearConcat", "QLinearLeakyRelu", "QLinearAveragePool")
INT_TYPES = (2, 3, 6)  # onnx TensorProto UINT8, INT8, INT32


def quantization_kind(proto) -> str | None:
    """``qdq``, ``dynamic`` or None for a float graph."""
    ops = {n.op_type for n in proto.graph.node}
    bad = sorted(ops & set(QOPERATOR_OPS))
    if bad:
        raise UnsupportedOpError(f"the model is quantized in QOperator form ({', '.join(bad)}): edgec reads Q/DQ "
                                 "and dynamic (ConvInteger/MatMulInteger) quantization; re-quantize it with "
                                 "quant_format=QDQ or give the float model")
    if ops & set(DYNAMIC_OPS):
        return "dynamic"
    if ops & set(QDQ_OPS):
        return "qdq"
    return None


def prepare(handle: ModelHandle, keep_source_quantization: bool) -> tuple[ModelHandle, ModelHandle | None]:
    """(float handle, source-quantized handle to lower as is or None)."""
    kind = quantization_kind(handle.proto)
    if kind is None:
        if keep_source_quantization:
            raise ConfigError("--keep-source-quantization: the model is not quantized (no Q/DQ or ConvInteger nodes)")
        return handle, None
    float_handle = handle.with_proto(dequantize(handle.proto))
    kept = None
    if keep_source_quantization:
        if kind != "qdq":
            raise ConfigError("--keep-source-quantization keeps Q/DQ scales; this model is dynamically quantized "
                              "(ConvInteger/DynamicQuantizeLinear), which no target's int8 kernels take: drop the flag "
                              "to requantize it with calibration")
        kept = handle
    float_handle.meta["frontend"] = {
        "source": f"quantized onnx ({kind})",
        "quantization": "kept the source's Q/DQ scales" if kept is not None
        else "dequantized to float, requantized with edgec's calibration"}
    return float_handle, kept


def dequantize(proto):
    """A float copy of a Q/DQ or dynamically quantized ONNX graph."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}

    def const(name: str):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        return consts.get(name)

    def add_init(name: str, value) -> str:
        arr = np.asarray(value)
        g.initializer.append(numpy_helper.from_array(arr, name))
        inits[name] = g.initializer[-1]
        return name

    alias: dict[str, str] = {}
    new_nodes = []
    for n in g.node:
        ins = [alias.get(x, x) for x in n.input]
        if n.op_type == "DynamicQuantizeLinear":
            # The activation stands for itself: scale 1, zero point 0 (float).
            alias[n.output[0]] = ins[0]
            new_nodes.append(helper.make_node("Constant", [], [n.output[1]], value=numpy_helper.from_array(
                np.array(1.0, np.float32))))
            new_nodes.append(helper.make_node("Constant", [], [n.output[2]], value=numpy_helper.from_array(
                np.array(0.0, np.float32))))
            continue
        if n.op_type == "QuantizeLinear" and all(c.op_type == "DequantizeLinear" for c in _consumers(g, n.output[0])):
            # Fake quantization of an activation: the Q/DQ pair goes, but its saturation stays
            # (quantizers drop a Relu whose clamp the uint8 range already does).
            bounds = _saturation(const(ins[1]), const(ins[2]) if len(ins) > 2 and ins[2] else None)
            if bounds is None:
                alias[n.output[0]] = ins[0]
                continue
            lo = add_init(f"{n.output[0]}_min", np.float32(bounds[0]))
            hi = add_init(f"{n.output[0]}_max", np.float32(bounds[1]))
            new_nodes.append(helper.make_node("Clip", [ins[0], lo, hi], [n.output[0]], name=n.name or n.output[0]))
            continue
        if n.op_type == "DequantizeLinear":
            q = const(ins[0])
            if q is None:
                alias[n.output[0]] = ins[0]  # the Q before it became a Clip: the float value passes through
                continue
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            add_init(n.output[0], _dq(q, const(ins[1]), const(ins[2]) if len(ins) > 2 and ins[2] else None, axis))
            continue
        if n.op_type in ("ConvInteger", "MatMulInteger"):
            w = const(ins[1])
            if w is None:
                raise UnsupportedOpError(f"{n.op_type} node '{n.name}' has a non-constant weight: cannot dequantize")
            wzp = const(ins[3]) if len(ins) > 3 and ins[3] else np.zeros((), w.dtype)
            wf = _minus_zp(w, wzp, 0 if n.op_type == "ConvInteger" else 1)
            wname = add_init(f"{ins[1]}_float", wf)
            op = "Conv" if n.op_type == "ConvInteger" else "MatMul"
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute} if op == "Conv" else {}
            new_nodes.append(helper.make_node(op, [ins[0], wname], list(n.output), name=n.name, **attrs))
            continue
        if n.op_type == "DynamicQuantizeLSTM":
            new_nodes.append(_lstm(n, ins, const, add_init))
            continue
        if n.op_type == "Cast" and next(a.i for a in n.attribute if a.name == "to") in INT_TYPES:
            # Integer casts of quantized arithmetic (bias in int32) now carry float values.
            new_nodes.append(helper.make_node("Cast", ins, list(n.output), name=n.name, to=1))
            continue
        n2 = onnx.NodeProto()
        n2.CopyFrom(n)
        n2.input[:] = ins
        new_nodes.append(n2)
    del g.node[:]
    g.node.extend(new_nodes)
    for o in g.output:
        if o.name in alias:
            g.node.append(helper.make_node("Identity", [alias[o.name]], [o.name]))
    used = {x for n in g.node for x in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    del g.value_info[:]  # integer value infos no longer hold
    used_domains = {n.domain for n in g.node} | {"", "ai.onnx"}
    keep_opsets = [o for o in m.opset_import if o.domain in used_domains]
    del m.opset_import[:]
    m.opset_import.extend(keep_opsets)
    return m


_RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127), np.dtype(np.uint16): (0, 65535),
           np.dtype(np.int16): (-32768, 32767)}


def _saturation(scale, zp) -> tuple[float, float] | None:
    """Float range a per-tensor QuantizeLinear saturates to, or None when not constant."""
    if scale is None or np.asarray(scale).size != 1:
        return None
    zp = np.zeros((), np.uint8) if zp is None else np.asarray(zp)
    if zp.size != 1 or zp.dtype not in _RANGES:
        return None
    qmin, qmax = _RANGES[zp.dtype]
    s, z = float(np.asarray(scale).ravel()[0]), float(zp.ravel()[0])
    return (qmin - z) * s, (qmax - z) * s


def _consumers(g, name: str):
    return [n for n in g.node if name in n.input]


def _dq(q, scale, zp, axis: int):
    from edgec.runtimes.io import dequantize_linear

    return dequantize_linear(q, scale, zp, axis).astype(np.float32)


def _minus_zp(w, zp, axis: int):
    zp = np.asarray(zp, np.float32)
    if zp.ndim == 1 and zp.size > 1:
        shape = [1] * w.ndim
        shape[axis] = -1
        zp = zp.reshape(shape)
    return (w.astype(np.float32) - zp).astype(np.float32)


def _lstm(n, ins, const, add_init):
    """ORT's DynamicQuantizeLSTM -> ONNX LSTM with float weights ([dirs, in, 4H] -> [dirs, 4H, in])."""
    from onnx import helper

    def weight(qi: int, si: int, zi: int, tag: str) -> str:
        q, s, z = const(ins[qi]), const(ins[si]), const(ins[zi])
        if q is None or s is None:
            raise UnsupportedOpError(f"DynamicQuantizeLSTM node '{n.name}' has non-constant weights")
        s = np.asarray(s, np.float32).reshape(q.shape[0], -1)[:, None, :]
        z = np.zeros_like(s) if z is None else np.asarray(z, np.float32).reshape(q.shape[0], -1)[:, None, :]
        return add_init(f"{n.name or n.output[0]}_{tag}_float",
                        ((q.astype(np.float32) - z) * s).transpose(0, 2, 1).astype(np.float32))

    w, r = weight(1, 8, 9, "W"), weight(2, 10, 11, "R")
    inputs = [ins[0], w, r] + [ins[i] if i < len(ins) else "" for i in range(3, 8)]
    while inputs and not inputs[-1]:
        inputs.pop()
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    return helper.make_node("LSTM", inputs, list(n.output), name=n.name, **attrs)


def kept_source_model(kept: ModelHandle, config, target, precision: str, float_handle: ModelHandle) -> ModelHandle:
    """The user's Q/DQ model, shapes fixed like the float one, for targets that lower Q/DQ ONNX."""
    from edgec.compiler.loaders import fix_input_shapes

    if target.quant_scheme is None or precision not in target.calibrated_precisions:
        raise ConfigError(f"--keep-source-quantization: target '{target.name}' at {precision} does not lower Q/DQ "
                          "ONNX with given scales (it quantizes by itself or is not int8); drop the flag")
    if config.prune:
        raise ConfigError("--keep-source-quantization cannot be combined with --prune (pruning changes the weights "
                          "the source's scales belong to)")
    out = fix_input_shapes(kept, config.input_shapes)
    out.inputs = [s for s in float_handle.inputs]
    return out
