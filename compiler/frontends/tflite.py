"""A float (or dynamic-range) ``.tflite`` as a source for every target.

The flatbuffer is converted to ONNX with tf2onnx's tflite reader (maintained, covers the
builtin op set; measured more faithful than anything we would write per op, see
``benchmarks/frontends.py``). Two things tf2onnx does not read are handled first:

* sparse weights behind DENSIFY ops: LiteRT itself densifies them (the reference runtime
  decides what the dense values are); the dense values replace the DENSIFY op.
* fp16 weights behind DEQUANTIZE ops are read by tf2onnx as Cast nodes, folded later by
  the optimize stage.

The converted graph keeps the .tflite's own layout (NHWC images): inputs are marked NHWC so
no target transposes them as if they were NCHW. A full-integer int8 .tflite stays a
flatbuffer for targets that take it natively (mcu).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgec._deps import require
from edgec.compiler.model import ModelHandle
from edgec.errors import ExportError, ModelLoadError

OPSET = 17
# LiteRT's own kernels vs onnxruntime on the converted graph; float32 reordering stays far below.
PARITY_MIN_COSINE = 0.999
DENSIFY = 124  # tflite BuiltinOperator.DENSIFY


def is_full_integer(handle: ModelHandle) -> bool:
    """Whether every input and output of a .tflite source is an integer quantized tensor."""
    return all(s.scale is not None for s in [*handle.inputs, *handle.outputs])


def as_source_for(handle: ModelHandle, accepted_formats: tuple[str, ...]) -> ModelHandle:
    """The handle a target with ``accepted_formats`` builds from: the flatbuffer or its ONNX."""
    if handle.format != "tflite":
        return handle
    if "tflite" in accepted_formats and is_full_integer(handle):
        return handle
    return tflite_to_onnx(handle)


def tflite_to_onnx(handle: ModelHandle) -> ModelHandle:
    """Convert a .tflite handle to a float ONNX handle, checked against LiteRT."""
    data = densify(handle.tflite_bytes or b"")
    proto = convert_flatbuffer(data, handle.source_path)
    out = ModelHandle.from_onnx(proto, handle.source_path, handle.source_sha256, task=handle.task)
    in_layout = {s.name: s.layout for s in handle.inputs}
    out_layout = {s.name: s.layout for s in handle.outputs}
    out.inputs = [replace(s, layout=in_layout.get(s.name)) for s in out.inputs]
    out.outputs = [replace(s, layout=out_layout.get(s.name)) for s in out.outputs]
    err, cos = parity(handle.tflite_bytes or b"", proto)
    if cos < PARITY_MIN_COSINE and not _has_hybrid_ops(handle.tflite_bytes or b""):
        raise ExportError(f"the ONNX converted from '{handle.source_path}' disagrees with LiteRT (cosine {cos:.4f}): "
                          "the .tflite uses an op tf2onnx mishandles")
    out.export_parity_max_abs_err = err
    out.meta.update(handle.meta)
    out.meta["frontend"] = {"source": "tflite", "converter": "tf2onnx", "opset": OPSET,
                            "layout": "NHWC (the .tflite's own)", "parity_vs_litert": {"max_abs": err, "cosine": cos},
                            "densified": data is not handle.tflite_bytes}
    return out


def convert_flatbuffer(data: bytes, source: str) -> "onnx.ModelProto":  # noqa: F821
    """tf2onnx's tflite path, quiet, deterministic node names."""
    require("tensorflow", "tflite")
    tf2onnx = require("tf2onnx", "tflite")
    with tempfile.TemporaryDirectory(prefix="edgec-tflite-") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(data)
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf), _quiet_logs():
                proto, _ = tf2onnx.convert.from_tflite(str(path), opset=OPSET)
        except Exception as exc:  # noqa: BLE001 - tf2onnx raises anything on ops it cannot read
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelLoadError(f"cannot convert '{source}' to ONNX with tf2onnx: {msg}") from exc
    from edgec.compiler.loaders import cap_ir_version

    proto.producer_name, proto.producer_version = "edgec-tflite", ""
    _renumber_generated_names(proto)
    cap_ir_version(proto)
    return proto


def _renumber_generated_names(proto) -> None:
    """tf2onnx suffixes generated names with ``__N`` from a process-wide counter; renumber them
    by first appearance so one file always gives the same graph bytes."""
    import re

    pattern = re.compile(r"__(\d+)")
    numbers: dict[str, str] = {}

    def fix(name: str) -> str:
        return pattern.sub(lambda m: "__" + numbers.setdefault(m.group(1), str(len(numbers) + 1)), name)

    g = proto.graph
    for n in g.node:
        n.name = fix(n.name)
        n.input[:] = [fix(x) for x in n.input]
        n.output[:] = [fix(x) for x in n.output]
    for t in [*g.initializer, *g.value_info, *g.input, *g.output]:
        t.name = fix(t.name)
    _name_shared_initializers(g)
    for field in (g.initializer, g.value_info):  # tf2onnx writes them in dict order
        items = sorted(field, key=lambda t: t.name)
        copies = [type(t)() for t in items]
        for c, t in zip(copies, items):
            c.CopyFrom(t)
        del field[:]
        field.extend(copies)


def _name_shared_initializers(g) -> None:
    """Names every initializer that several nodes read after its first reader and input slot.

    tf2onnx merges equal constants (a TFLite model's shared zero biases) and keeps one of their names, and which one
    changes from process to process (iris-landmark: ``depthwise_conv2d/Bias`` or ``depthwise_conv2d_2/Bias``), so
    the same .tflite gave different ONNX and IR bytes; the set of readers does not change.
    """
    readers: dict[str, list[tuple[str, int]]] = {}
    for n in g.node:
        for k, x in enumerate(n.input):
            readers.setdefault(x, []).append((n.name, k))
    taken = {t.name for t in g.initializer} | {x for n in g.node for x in n.output} | {t.name for t in g.input}
    rename: dict[str, str] = {}
    for t in g.initializer:
        r = readers.get(t.name, [])
        if len({name for name, _ in r}) < 2:
            continue
        base = new = f"{r[0][0]}/shared_input_{r[0][1]}"
        k = 1
        while new in taken:
            new, k = f"{base}_{k}", k + 1
        taken.add(new)
        rename[t.name] = new
    if not rename:
        return
    for t in [*g.initializer, *g.value_info, *g.output]:
        t.name = rename.get(t.name, t.name)
    for n in g.node:
        n.input[:] = [rename.get(x, x) for x in n.input]


@contextlib.contextmanager
def _quiet_logs():
    import logging

    logger = logging.getLogger("tf2onnx")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def _interpreter(data: bytes, preserve: bool = False):
    interp_mod = require("ai_edge_litert.interpreter", "tflite", "ai-edge-litert")
    it = interp_mod.Interpreter(model_content=data, experimental_preserve_all_tensors=preserve,
                                experimental_op_resolver_type=interp_mod.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    return it


def densify(data: bytes) -> bytes:
    """Replace every DENSIFY op by a constant holding the dense weights LiteRT computes."""
    from edgec.targets.mcu.import_tflite import schema

    s = schema()
    model = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
    dens = {i for i, c in enumerate(model.operatorCodes) if max(int(c.builtinCode), int(c.deprecatedBuiltinCode)) == DENSIFY}
    if not dens:
        return data
    it = _interpreter(data, preserve=True)
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    it.invoke()
    for sg_index, sg in enumerate(model.subgraphs):
        keep = []
        for op in sg.operators:
            if op.opcodeIndex not in dens:
                keep.append(op)
                continue
            if sg_index:
                raise ModelLoadError("a DENSIFY op inside a control-flow subgraph is not supported")
            src, dst = int(op.inputs[0]), int(op.outputs[0])
            dense = np.ascontiguousarray(it.get_tensor(dst))
            buf = s.BufferT()
            buf.data = np.frombuffer(dense.tobytes(), np.uint8)
            model.buffers.append(buf)
            sg.tensors[dst].buffer = len(model.buffers) - 1
            sg.tensors[src].sparsity = None
            sg.tensors[src].buffer = 0  # orphaned: converters must not read the sparse bytes
        sg.operators = keep
    import flatbuffers

    b = flatbuffers.Builder(len(data) * 2)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _has_hybrid_ops(data: bytes) -> bool:
    """Dynamic-range models run int8 kernels in LiteRT: their error vs float is quantization, not conversion."""
    from edgec.targets.mcu.import_tflite import schema

    model = schema().ModelT.InitFromPackedBuf(bytearray(data), 0)
    sg = model.subgraphs[0]
    float_inputs = all(int(sg.tensors[i].type) in (0, 1) for i in sg.inputs)
    int8_consts = any(int(t.type) == 9 and t.buffer and model.buffers[t.buffer].data is not None for t in sg.tensors)
    return float_inputs and int8_consts


def parity(data: bytes, proto, samples: int = 2) -> tuple[float, float]:
    """Max abs error and cosine of onnxruntime on ``proto`` vs LiteRT on ``data`` (random inputs)."""
    import onnxruntime as ort

    it = _interpreter(data)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    errs, dots, n1, n2 = [0.0], 0.0, 0.0, 0.0
    names = [i.name for i in sess.get_inputs()]
    for _ in range(samples):
        feeds = {}
        for d, name in zip(it.get_input_details(), names):
            x = (rng.uniform(-1, 1, d["shape"]) if np.dtype(d["dtype"]).kind == "f"
                 else rng.integers(0, 2, d["shape"])).astype(d["dtype"])
            it.set_tensor(d["index"], x)
            feeds[name] = x
        it.invoke()
        got = sess.run(None, feeds)
        for d, g in zip(it.get_output_details(), got):
            ref = it.get_tensor(d["index"]).astype(np.float64).ravel()
            g = np.asarray(g, np.float64).ravel()
            if ref.size != g.size:
                raise ExportError(f"tf2onnx changed the size of output '{d['name']}'")
            errs.append(float(np.abs(ref - g).max()) if ref.size else 0.0)
            dots += float(ref @ g)
            n1 += float(ref @ ref)
            n2 += float(g @ g)
    cos = dots / max(np.sqrt(n1 * n2), 1e-30) if n1 or n2 else 1.0
    return max(errs), float(cos)
