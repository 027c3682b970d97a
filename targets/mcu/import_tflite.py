"""Read a full-integer int8 ``.tflite`` flatbuffer into a `QGraph`.

Uses the flatbuffer schema classes shipped with ai-edge-litert (or TensorFlow) through
their object API; no interpreter is involved. Fused activations and SAME/VALID padding
are resolved here into explicit clamp bounds and top/left pads as TFLite computes them.
"""

from __future__ import annotations

import numpy as np

from edgec.errors import ModelLoadError, UnsupportedOpError
from edgec.targets.mcu.qgraph import QGraph, QOp, QTensor
from edgec.targets.mcu.qmath import act_range

_TYPES = {0: "float32", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8"}
_ACTS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "MAX_POOL_2D",
             "AVERAGE_POOL_2D", "MEAN", "SOFTMAX", "CONCATENATION", "PAD", "PADV2", "RESHAPE",
             "SQUEEZE", "LOGISTIC", "TANH", "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE", "TRANSPOSE")


def schema():
    try:
        from ai_edge_litert import schema_py_generated as s
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as s
        except ImportError as exc:
            from edgec.errors import MissingDependencyError

            raise MissingDependencyError("ai-edge-litert (the .tflite schema)", "mcu") from exc
    return s


def _op_names(s) -> dict[int, str]:
    return {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}


def same_pad(in_size: int, k: int, stride: int, dil: int, out_size: int, padding: int) -> int:
    """TFLite's ComputePaddingHeightWidth (top/left pad); padding 0 = SAME, 1 = VALID."""
    if padding == 1:
        return 0
    eff = (k - 1) * dil + 1
    total = max(0, (out_size - 1) * stride + eff - in_size)
    return total // 2


def list_ops(data: bytes) -> list[tuple[str, str]]:
    """(op name, node name) of every operator, for `check`."""
    s = schema()
    model = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
    names = _op_names(s)
    sg = model.subgraphs[0]
    out = []
    for i, op in enumerate(sg.operators):
        code = model.operatorCodes[op.opcodeIndex]
        b = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = names.get(b, f"BUILTIN_{b}") if b != 32 else (code.customCode or b"CUSTOM").decode()
        t = sg.tensors[op.outputs[0]] if len(op.outputs) else None
        out.append((name, (t.name.decode() if t is not None and t.name else f"op{i}")))
    return out


def load_tflite(data: bytes) -> QGraph:
    s = schema()
    try:
        model = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:  # noqa: BLE001 - any flatbuffer error means a corrupt file
        raise ModelLoadError(f"cannot read the .tflite flatbuffer: {exc}") from exc
    if len(model.subgraphs) != 1:
        raise ModelLoadError(f"the .tflite has {len(model.subgraphs)} subgraphs; the mcu target takes one")
    names = _op_names(s)
    sg = model.subgraphs[0]
    tensors: dict[str, QTensor] = {}
    tname: list[str] = []
    for i, t in enumerate(sg.tensors):
        name = (t.name.decode() if t.name else f"t{i}") + f"#{i}"
        tname.append(name)
        dtype = _TYPES.get(int(t.type), f"type{t.type}")
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        q = t.quantization
        scale = zp = None
        qdim = 0
        if q is not None and q.scale is not None and len(q.scale):
            scale = np.asarray(q.scale, np.float32)
            zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else np.zeros(len(scale)), np.int64)
            qdim = int(q.quantizedDimension)
        data_arr = None
        buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        if buf is not None:
            raw = None
            if buf.data is not None and len(buf.data):
                raw = np.asarray(buf.data, np.uint8).tobytes()
            elif getattr(buf, "offset", 0) and buf.offset > 1:
                raw = bytes(data[buf.offset: buf.offset + buf.size])
            if raw is not None:
                data_arr = np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape).copy()
        tensors[name] = QTensor(name, shape, dtype, scale, zp, data_arr, qdim)

    g = QGraph(tensors, [], [tname[i] for i in sg.inputs], [tname[i] for i in sg.outputs], source="tflite")
    for idx, op in enumerate(sg.operators):
        code = model.operatorCodes[op.opcodeIndex]
        b = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        opname = names.get(b, f"BUILTIN_{b}")
        ins = [tname[i] if i >= 0 else "" for i in op.inputs]
        outs = [tname[i] for i in op.outputs]
        node = outs[0].rsplit("#", 1)[0] if outs else f"op{idx}"
        if opname not in SUPPORTED:
            raise UnsupportedOpError(opname, node, "mcu", "supported: " + ", ".join(SUPPORTED))
        g.ops.append(_convert(g, opname, node, ins, outs, op.builtinOptions))
    g.ops = [o for o in g.ops if o is not None]
    for op in g.ops:
        for n in op.inputs + op.outputs:
            t = g.tensors.get(n)
            if t is not None and not t.is_const and t.dtype not in ("int8", "float32") and op.kind not in ("quantize", "dequantize"):
                raise UnsupportedOpError(op.source_op, op.name, "mcu",
                                         f"tensor {n.rsplit('#', 1)[0]} is {t.dtype}; only int8 models are supported")
    g.prune()
    return g


def _act(opts, out: QTensor) -> tuple[int, int]:
    a = _ACTS.get(int(getattr(opts, "fusedActivationFunction", 0) or 0), "NONE")
    return act_range(a, out.s, out.zp)


def _convert(g: QGraph, opname: str, node: str, ins: list[str], outs: list[str], opts) -> QOp:
    T = g.tensors
    out = T[outs[0]]
    if opname in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        x, w = T[ins[0]], T[ins[1]]
        _, ih, iw, _ = x.shape
        _, oh, ow, _ = out.shape
        kh, kw = w.shape[1], w.shape[2]
        sh, sw = int(opts.strideH), int(opts.strideW)
        dh, dw = int(opts.dilationHFactor or 1), int(opts.dilationWFactor or 1)
        pad = (same_pad(ih, kh, sh, dh, oh, int(opts.padding)), same_pad(iw, kw, sw, dw, ow, int(opts.padding)))
        attrs = {"stride": (sh, sw), "dilation": (dh, dw), "pad": pad, "act": _act(opts, out)}
        kind = "conv"
        if opname == "DEPTHWISE_CONV_2D":
            kind = "dwconv"
            attrs["depth_mult"] = out.shape[3] // x.shape[3]
        inputs = [ins[0], ins[1]] + ([ins[2]] if len(ins) > 2 and ins[2] else [])
        return QOp(kind, node, inputs, outs, attrs, opname)
    if opname == "FULLY_CONNECTED":
        inputs = [ins[0], ins[1]] + ([ins[2]] if len(ins) > 2 and ins[2] else [])
        return QOp("fc", node, inputs, outs, {"act": _act(opts, out), "tflite_per_tensor_float": True}, opname)
    if opname in ("ADD", "MUL"):
        return QOp(opname.lower(), node, ins[:2], outs, {"act": _act(opts, out)}, opname)
    if opname in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        x = T[ins[0]]
        kh, kw = int(opts.filterHeight), int(opts.filterWidth)
        sh, sw = int(opts.strideH), int(opts.strideW)
        pad = (same_pad(x.shape[1], kh, sh, 1, out.shape[1], int(opts.padding)),
               same_pad(x.shape[2], kw, sw, 1, out.shape[2], int(opts.padding)))
        kind = "maxpool" if opname == "MAX_POOL_2D" else "avgpool"
        return QOp(kind, node, ins[:1], outs, {"kernel": (kh, kw), "stride": (sh, sw), "pad": pad,
                                                "act": _act(opts, out)}, opname)
    if opname == "MEAN":
        axes = [int(a) % len(T[ins[0]].shape) for a in np.asarray(T[ins[1]].data).reshape(-1)]
        return QOp("mean", node, ins[:1], outs, {"axes": sorted(set(axes))}, opname)
    if opname == "SOFTMAX":
        return QOp("softmax", node, ins[:1], outs, {"beta": float(opts.beta)}, opname)
    if opname == "CONCATENATION":
        x = T[ins[0]]
        return QOp("concat", node, list(ins), outs, {"axis": int(opts.axis) % len(x.shape)}, opname)
    if opname in ("PAD", "PADV2"):
        pads = np.asarray(T[ins[1]].data).reshape(-1, 2)
        value = out.zp
        if opname == "PADV2" and len(ins) > 2 and ins[2] and T[ins[2]].data is not None:
            value = int(np.asarray(T[ins[2]].data).reshape(-1)[0])
        return QOp("pad", node, ins[:1], outs, {"pads": [tuple(int(v) for v in p) for p in pads],
                                                "value": value}, opname)
    if opname in ("RESHAPE", "SQUEEZE"):
        return QOp("reshape", node, ins[:1], outs, {}, opname)
    if opname == "TRANSPOSE":
        perm = [int(v) for v in np.asarray(T[ins[1]].data).reshape(-1)]
        return QOp("transpose", node, ins[:1], outs, {"perm": perm}, opname)
    if opname in ("LOGISTIC", "TANH"):
        return QOp("lut", node, ins[:1], outs, {"fn": "sigmoid" if opname == "LOGISTIC" else "tanh",
                                                 "tflite_op": opname}, opname)
    if opname in ("RELU", "RELU6"):
        return QOp("requant", node, ins[:1], outs, {"act": act_range(opname, out.s, out.zp)}, opname)
    if opname == "QUANTIZE":
        x = T[ins[0]]
        if x.dtype == "float32":
            return QOp("quantize", node, ins[:1], outs, {}, opname)
        return QOp("requant", node, ins[:1], outs, {"act": (-128, 127)}, opname)
    if opname == "DEQUANTIZE":
        return QOp("dequantize", node, ins[:1], outs, {}, opname)
    raise UnsupportedOpError(opname, node, "mcu")
