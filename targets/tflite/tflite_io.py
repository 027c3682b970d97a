"""Reading a ``.tflite`` back: signature I/O specs, op histogram, and runs on model-convention samples."""

from __future__ import annotations

import numpy as np

from edgec.compiler.model import ModelHandle, TensorSpec
from edgec.targets.base import LowerSpec
from edgec.targets.tflite.onnx2tf_step import TFGraph
from edgec.targets.tflite.tools import TFLiteConversionError

SIGNATURE = "serving_default"
MAX_CHECK_SAMPLES = 16


def interpreter_class():
    """The LiteRT Interpreter class and its OpResolverType (ai_edge_litert, else tflite_runtime)."""
    try:
        from ai_edge_litert import interpreter as mod
    except ImportError:
        try:
            from tflite_runtime import interpreter as mod  # type: ignore[no-redef]
        except ImportError:
            from edgec.errors import MissingDependencyError

            raise MissingDependencyError("ai-edge-litert", "tflite") from None
    return mod.Interpreter, getattr(mod, "OpResolverType", None)


def signature_io(interp) -> tuple[dict[str, dict], dict[str, dict]]:
    """``({input_key: details}, {output_key: details})`` of the first signature, else by tensor name."""
    try:
        sigs = interp.get_signature_list()
    except Exception:
        sigs = {}
    if sigs:
        key = SIGNATURE if SIGNATURE in sigs else next(iter(sigs))
        runner = interp.get_signature_runner(key)
        ins, outs = dict(runner.get_input_details()), dict(runner.get_output_details())
        del runner  # it holds references that block invoke() on the interpreter
        return ins, outs
    return ({d["name"]: d for d in interp.get_input_details()},
            {d["name"]: d for d in interp.get_output_details()})


def tensor_spec(name: str, d: dict, layout: str | None) -> TensorSpec:
    dt = np.dtype(d["dtype"]).name
    scale, zp = d.get("quantization", (0.0, 0))
    quant = np.dtype(dt).kind in "iu" and scale and scale > 0
    return TensorSpec(name, tuple(int(x) for x in d["shape"]), dt,
                      float(scale) if quant else None, int(zp) if quant else None, layout)


def read_io(data: bytes, graph: TFGraph) -> tuple[list[TensorSpec], list[TensorSpec], dict[str, int]]:
    """Artifact I/O specs (ONNX order) and the op histogram of a flatbuffer."""
    Interpreter, _ = interpreter_class()
    interp = Interpreter(model_content=data)
    ins, outs = signature_io(interp)
    missing = [k for k in (*graph.in_keys, *graph.out_keys) if k not in ins and k not in outs]
    if missing:
        raise TFLiteConversionError(f"the .tflite signature lacks {missing}")
    inputs = [tensor_spec(k, ins[k], lay) for k, lay in zip(graph.in_keys, graph.in_layout)]
    outputs = [tensor_spec(k, outs[k], lay) for k, lay in zip(graph.out_keys, graph.out_layout)]
    ops: dict[str, int] = {}
    try:
        for op in interp._get_ops_details():  # noqa: SLF001 - the only op listing API
            ops[op["op_name"]] = ops.get(op["op_name"], 0) + 1
    except Exception:
        pass
    return inputs, outputs, dict(sorted(ops.items()))


def run_tflite(data: bytes, graph: TFGraph, feeds_list: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    """Run a float/int8 flatbuffer on model-convention samples; outputs dequantized, ONNX layout."""
    Interpreter, _ = interpreter_class()
    interp = Interpreter(model_content=data, num_threads=1)
    interp.allocate_tensors()
    ins, outs = signature_io(interp)
    results = []
    for feeds in feeds_list:
        for key, a in zip(graph.in_keys, graph.to_native(feeds)):
            d = ins[key]
            scale, zp = d["quantization"]
            if np.dtype(d["dtype"]).kind in "iu" and a.dtype.kind == "f" and scale:
                info = np.iinfo(d["dtype"])
                a = np.clip(np.round(a / scale) + zp, info.min, info.max)
            interp.set_tensor(d["index"], a.astype(d["dtype"]))
        interp.invoke()
        row = []
        for key, lay in zip(graph.out_keys, graph.out_layout):
            d = outs[key]
            o = interp.get_tensor(d["index"])
            scale, zp = d["quantization"]
            if np.dtype(d["dtype"]).kind in "iu" and scale:
                o = (o.astype(np.float32) - zp) * np.float32(scale)
            if lay == "NHWC":
                o = o.transpose(0, 3, 1, 2)
            row.append(np.array(o))
        results.append(row)
    return results


def check_samples(model: ModelHandle, spec: LowerSpec) -> list[dict[str, np.ndarray]]:
    if spec.calibration is not None and len(spec.calibration):
        return list(spec.calibration.samples[:MAX_CHECK_SAMPLES])
    from edgec.runtimes.io import synthetic_feeds

    return [synthetic_feeds(model.inputs, seed=i) for i in range(4)]


def float_error(want: list[list[np.ndarray]], data: bytes, graph: TFGraph, samples) -> tuple[float, float]:
    """``(max abs error, max error relative to each output's peak)`` of a .tflite against ``want``.

    ``want``: onnxruntime's outputs on ``samples`` (`reference_outputs`).
    """
    got = run_tflite(data, graph, samples)
    err = rel = 0.0
    for w_row, row in zip(want, got):
        for w, g in zip(w_row, row):
            e = float(np.abs(np.asarray(g, np.float64).reshape(w.shape) - w).max(initial=0.0))
            err = max(err, e)
            rel = max(rel, e / max(float(np.abs(w).max(initial=0.0)), 1e-6))
    return err, rel


def reference_outputs(proto_bytes: bytes, samples) -> list[list[np.ndarray]]:
    """onnxruntime's outputs (all, in the model's order) on each of ``samples``."""
    from edgec.runtimes.onnxruntime_runner import make_session

    sess = make_session(proto_bytes, threads=1)
    return [sess.run(None, feeds) for feeds in samples]


# XNNPACK's int8 convolutions take a requantization scale (input scale x weight scale / output
# scale) in [2^-32, 256); outside it the delegate fails when it builds its runtime ("failed to
# create XNNPACK runtime"), after it has claimed the nodes, so LiteRT does not fall back.
XNNPACK_REQUANT_RANGE = (2.0 ** -32, 256.0)
_MATMUL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def xnnpack_refused_ops(data: bytes) -> list[str]:
    """``"OP 'output tensor' (requantization scale S)"`` for each int8 op XNNPACK cannot prepare."""
    Interpreter, _ = interpreter_class()
    interp = Interpreter(model_content=data)
    det = {d["index"]: d for d in interp.get_tensor_details()}
    lo, hi = XNNPACK_REQUANT_RANGE
    found = []
    for op in interp._get_ops_details():  # noqa: SLF001 - LiteRT's only per-op view
        ins = [i for i in op["inputs"] if i >= 0]
        if op["op_name"] not in _MATMUL_OPS or len(ins) < 2 or not len(op["outputs"]):
            continue
        x, w, y = det[ins[0]], det[ins[1]], det[op["outputs"][0]]
        if op["op_name"] == "TRANSPOSE_CONV":
            x, w = det[ins[2]], det[ins[1]]
        scales = [d["quantization_parameters"]["scales"] for d in (x, w, y)]
        if any(not len(s) for s in scales) or x["dtype"] != np.int8:
            continue
        req = scales[0][0] * scales[1] / scales[2][0]
        bad = req[(req < lo) | (req >= hi)]
        if len(bad):
            found.append(f"{op['op_name']} '{y['name']}' (requantization scale {float(bad[0]):.3g})")
    return found
