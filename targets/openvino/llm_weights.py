"""Low-bit decoder weights kept compressed in the OpenVINO IR, in the form the CPU plugin runs compressed.

OpenVINO's ONNX frontend folds a weight's ``DequantizeLinear`` into a float constant, so an int4
decoder would run with float weights (4x the memory traffic per token). Instead the quantized
weights leave the ONNX graph before conversion (each ``DequantizeLinear`` output becomes a graph
input), and afterwards each comes back as OpenVINO's weight-decompression pattern, the one
NNCF writes and the CPU plugin fuses into its compressed ``FullyConnected``/``Gather`` kernels:

    Constant(u4|i4|i8 [N, groups, group]) -> Convert -> [Subtract zero point] -> Multiply scale
    -> Reshape [N, K] -> MatMul(x, W, transpose_b=True)

(embedding tables: ``[vocab, hidden]`` int8 with a per-row scale, read by the ``Gather``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class LowBitWeight:
    """One ``DequantizeLinear`` of a constant: values, scale, zero point as in the ONNX (axis/block)."""

    name: str
    values: np.ndarray  # int8/uint8 storage of the int4/uint4/int8 values, ONNX layout
    signed: bool
    bits: int
    scale: np.ndarray
    zero_point: np.ndarray | None
    axis: int
    block: int


def lift_quantized_weights(proto) -> tuple[Any, list[LowBitWeight]]:
    """The decoder ONNX with each constant ``DequantizeLinear`` replaced by a float graph input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    kinds = {TensorProto.INT4: (True, 4), TensorProto.UINT4: (False, 4), TensorProto.INT8: (True, 8)}
    lifted, keep = [], []
    for n in g.node:
        q = inits.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if q is None or q.data_type not in kinds or n.input[1] not in inits:
            keep.append(n)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        zp = numpy_helper.to_array(inits[n.input[2]]) if len(n.input) > 2 and n.input[2] else None
        signed, bits = kinds[q.data_type]
        lifted.append(LowBitWeight(n.output[0], numpy_helper.to_array(q), signed, bits,
                                   numpy_helper.to_array(inits[n.input[1]]).astype(np.float32), zp,
                                   int(attrs.get("axis", 1)), int(attrs.get("block_size", 0))))
        g.input.append(helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, list(q.dims)))
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    return out, lifted


def _constant(values: np.ndarray, bits: int, signed: bool):
    """An OpenVINO constant of i4/u4 (two values a byte, low nibble first) or i8 values."""
    import openvino as ov
    import openvino.opset13 as ops

    if bits == 8:
        return ops.constant(values.astype(np.int8))
    flat = values.astype(np.int16).reshape(-1) & 0xF
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.int16)])
    packed = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)
    tensor = ov.Tensor(ov.Type.i4 if signed else ov.Type.u4, ov.Shape(list(values.shape)))
    np.copyto(tensor.data.reshape(-1).view(np.uint8)[:packed.size], packed)
    return ov.op.Constant(tensor)


def _decompressed(w: LowBitWeight, n_first: bool):
    """The decompression subgraph; ``n_first``: output channels first (``[N, K]``, for MatMul)."""
    import openvino.opset13 as ops

    values, scale, zp = w.values, w.scale, w.zero_point
    if n_first and w.axis == 1 and not w.block:  # per-channel [K, N] -> [N, K]
        values, scale = values.T, scale.reshape(-1, 1)
        zp = None if zp is None else zp.reshape(-1, 1)
        shape = None
    elif n_first and w.axis == 0 and w.block:  # blocked along K: [K, N] -> [N, groups, block]
        k, n = values.shape
        groups = k // w.block
        values = values.T.reshape(n, groups, w.block)
        scale = scale.T.reshape(n, groups, 1)
        zp = None if zp is None else zp.T.reshape(n, groups, 1)
        shape = [n, k]
    elif not n_first and w.axis == 0 and not w.block:  # embedding [vocab, hidden], per-row
        scale = scale.reshape(-1, 1)
        zp = None if zp is None else zp.reshape(-1, 1)
        shape = None
    else:
        return None
    x = ops.convert(_constant(np.ascontiguousarray(values), w.bits, w.signed), "f32")
    if zp is not None and np.any(zp):
        x = ops.subtract(x, ops.convert(_constant(np.ascontiguousarray(zp), w.bits, w.signed), "f32"))
    x = ops.multiply(x, ops.constant(np.ascontiguousarray(scale, np.float32)))
    if shape is not None:
        x = ops.reshape(x, ops.constant(np.array(shape, np.int64)), False)
    return x


def restore_compressed_weights(ov_model, lifted: list[LowBitWeight]) -> dict[str, int]:
    """Put each lifted weight back as a decompression subgraph; returns counts per consumer kind."""
    import openvino.opset13 as ops

    counts = {"matmul": 0, "gather": 0, "float": 0}
    for w in lifted:
        param = ov_model.input(w.name).get_node()
        for target in list(param.output(0).get_target_inputs()):
            user = target.get_node()
            kind = user.get_type_name()
            if kind == "MatMul" and target.get_index() == 1 and not user.get_attributes().get("transpose_b"):
                sub = _decompressed(w, n_first=True)
                if sub is not None:
                    mm = ops.matmul(user.input_value(0), sub, user.get_attributes().get("transpose_a", False), True)
                    mm.output(0).get_tensor().set_names(user.output(0).get_names())
                    user.output(0).replace(mm.output(0))
                    counts["matmul"] += 1
                    continue
            if kind == "Gather" and target.get_index() == 0:
                sub = _decompressed(w, n_first=False)
                if sub is not None:
                    target.replace_source_output(sub.output(0))
                    counts["gather"] += 1
                    continue
            target.replace_source_output(_dequantized_float(w).output(0))  # anything else: float, as before
            counts["float"] += 1
        ov_model.remove_parameter(param)
    ov_model.validate_nodes_and_infer_types()
    return counts


def _dequantized_float(w: LowBitWeight):
    import openvino.opset13 as ops

    v = w.values.astype(np.float32)
    zp = 0.0 if w.zero_point is None else w.zero_point.astype(np.float32)
    if w.block:
        rep = lambda a: np.repeat(a, w.block, axis=w.axis)  # noqa: E731
        return ops.constant(((v - (rep(zp) if w.zero_point is not None else 0.0)) * rep(w.scale)).astype(np.float32))
    shape = [1] * v.ndim
    shape[w.axis] = -1
    zp_b = np.reshape(zp, shape) if w.zero_point is not None else 0.0
    return ops.constant(((v - zp_b) * w.scale.reshape(shape)).astype(np.float32))
