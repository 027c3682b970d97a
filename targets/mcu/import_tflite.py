"""Read a full-integer int8 ``.tflite`` flatbuffer into a `QGraph`.

Uses the flatbuffer schema classes shipped with ai-edge-litert (or TensorFlow) through
their object API; no interpreter is involved. Fused activations and SAME/VALID padding
are resolved into explicit clamp bounds and top/left pads as TFLite computes them (by the
per-op importers of `edgec.targets.mcu.ops`, with `qmath.same_pad` and `qmath.fused_act`).
"""

from __future__ import annotations

import numpy as np

from edgec.errors import ModelLoadError, UnsupportedOpError
from edgec.targets.mcu.ops import BY_TFLITE, TFLITE_OPS
from edgec.targets.mcu.ops.s16 import S16_KIND, retype
from edgec.targets.mcu.qgraph import QGraph, QTensor

# 16x8 ops a .tflite may hold (bit-exact with LiteRT's int16 reference kernels).
S16_TFLITE_KINDS = frozenset(S16_KIND) | {"requant", "concat", "reshape", "transpose"}
S16_TFLITE_OPS = ("ADD", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "PAD", "PADV2", "QUANTIZE",
                  "RESHAPE", "TRANSPOSE")

_TYPES = {0: "float32", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8"}
SUPPORTED = TFLITE_OPS


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
        rec = BY_TFLITE.get(opname)
        if rec is None:
            raise UnsupportedOpError(opname, node, "mcu", "supported: " + ", ".join(SUPPORTED))
        g.ops.append(rec.tflite[opname](g, opname, node, ins, outs, op.builtinOptions))
    g.ops = [o for o in g.ops if o is not None]
    for op in g.ops:
        for n in op.inputs + op.outputs:
            t = g.tensors.get(n)
            if t is None or t.is_const or t.dtype in ("int8", "float32") or op.kind in ("quantize", "dequantize"):
                continue
            if t.dtype != "int16" or op.kind not in S16_TFLITE_KINDS:
                raise UnsupportedOpError(op.source_op, op.name, "mcu",
                                         f"tensor {n.rsplit('#', 1)[0]} is {t.dtype}; only int8 models are supported, "
                                         "and int16 (16x8) for " + ", ".join(sorted(S16_TFLITE_OPS)))
            if op.kind == "concat" and (t.s, t.zp) != (g.tensors[op.outputs[0]].s, g.tensors[op.outputs[0]].zp):
                raise UnsupportedOpError(op.source_op, op.name, "mcu", "int16 inputs quantized unlike the output "
                                         "(LiteRT's int16 CONCATENATION copies them unscaled); requantize them first")
    retype(g)
    g.prune()
    return g
