"""ONNX -> ``.tflite``: onnx2tf builds the TensorFlow graph, TFLiteConverter writes the flatbuffer.

Steps (`lower`):

1. prepare the ONNX: static shapes, onnxslim, Erf-GELU -> ``Gelu`` (TFLite has a builtin
   GELU with an int8 kernel; a decomposed Erf has none);
2. onnx2tf -> a Keras model (NHWC for 4-D inputs), run in a private temp folder with the
   offline calibration-sample file it insists on;
3. a ``tf.function`` wrapper fixes the artifact's I/O: one signature (``serving_default``)
   whose keys are the ONNX input/output names, int32 token inputs (cast to int64 inside),
   non-image tensors kept in the ONNX layout;
4. TFLiteConverter (builtin ops only; a Flex op is an error, LiteRT would reject it):
   fp32 always (checked against onnxruntime), then fp16 / dynamic-range / full-integer;
5. I/O specs are read back from the flatbuffer through its signature, in ONNX order.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgec._deps import version_of
from edgec.compiler.model import ModelHandle
from edgec.errors import AccuracyError, CalibrationDataError, ConfigError
from edgec.targets.base import RECURRENT_OPS, Artifact, LowerResult, LowerSpec
from edgec.targets.tflite.converter_step import run_converter
from edgec.targets.tflite.graph_passes import fuse_erf_gelu, prepare_onnx
from edgec.targets.tflite.int8_floor import hold_the_bar, pinned
from edgec.targets.tflite.onnx2tf_step import TFGraph, run_onnx2tf
from edgec.targets.tflite.quant_modes import (MAX_AUTO_SAMPLES, convert_full_integer, convert_int16, float_prefix,
                                              int8_mode, with_float_islands, with_float_prefix,
                                              with_worst_ops_float)
from edgec.targets.tflite.support import check_model, validate_options
from edgec.targets.tflite.tflite_io import (SIGNATURE, check_samples, float_error, read_io, reference_outputs,
                                             run_tflite, xnnpack_refused_ops)
from edgec.targets.tflite.tools import captured_output, import_tf

TEMPLATES = Path(__file__).parent / "templates"
# A float .tflite off onnxruntime by more than this share of an output's peak took a wrong
# transpose (a layout guess), not float rounding; onnx2tf then converts again in strict mode.
FLOAT_REL_TOL = 1e-3


def lower(model: ModelHandle, spec: LowerSpec, out_dir: Path, target: str = "arm") -> LowerResult:
    """Write ``model.tflite``, ``bench_tflite.py`` and ``README.md`` into ``out_dir``."""
    check_model(model, spec, target).raise_if_unsupported()
    io_dtype = validate_options(spec)
    precision = spec.precision
    if precision not in ("fp32", "fp16", "int8", "int8-dynamic"):
        raise ConfigError(f"target '{target}' has no precision '{precision}' (fp32, fp16, int8, int8-dynamic)")
    if spec.keep_float and precision == "int8":
        raise ConfigError(
            "--keep-float names ONNX nodes, which the arm target's converter renames: keep TFLite ops in float "
            "with --float-nodes TENSOR (output tensor names) or --float-ops N (the N worst by the quantization "
            "debugger), or use --precision int8-dynamic / fp16")
    activations, float_nodes, float_ops, ranges = int8_mode(spec)
    prefix = float_prefix(spec)
    if precision != "int8" and (activations != "int8" or float_nodes or float_ops or prefix
                                or spec.options.get("ranges")):
        raise ConfigError("--activations / --float-nodes / --float-ops / --float-prefix / --ranges apply to "
                          "--precision int8 on the arm target")
    if precision == "int8" and (spec.calibration is None or not len(spec.calibration)):
        raise CalibrationDataError("--precision int8 on the arm target needs calibration data (--calib)")
    progress = spec.progress
    say = progress.message if progress is not None else (lambda _t: None)

    converted, passes = model, []
    if precision == "int8" and activations == "int8":
        # int8 activations are per tensor here: a Conv -> [Relu] -> Conv link whose channels
        # differ 100x in range gets the spread moved into the weights first (same function).
        # Residual streams are not equalized here: with the TFLite converter's own ranges it
        # cost blazeface-back 0.966 -> 0.957 and full-sparse 0.980 -> 0.976 (short 0.951 -> 0.959).
        from edgec.compiler.equalize import equalize

        converted, info = equalize(model, list(spec.calibration.samples))
        passes.append({"name": "equalize-conv-pairs", "config": info})
    # Erf-GELU is fused after the bias correction: onnxruntime has no Gelu before opset 20, and
    # the correction and its float check run the prepared graph in onnxruntime.
    proto, prepared = prepare_onnx(converted, gelu=False)
    passes += prepared
    corrected = False
    if precision == "int8" and activations == "int16":
        # 16x8: conv biases cancel the mean shift of TFLite's int8 weight rounding (`weight_rounding`);
        # the graph onnx2tf converts is then not the float model, and its float check says so.
        from edgec.targets.tflite.weight_rounding import correct_conv_biases

        info = correct_conv_biases(proto, list(spec.calibration.samples))
        corrected = bool(info["layers"])
        if corrected:
            passes.append({"name": "weight-rounding-bias-correction", "config": info})
    samples = check_samples(model, spec)
    want = reference_outputs(model.proto.SerializeToString(), samples)
    float_want = reference_outputs(proto.SerializeToString(), samples) if corrected else want
    # The 16x8 rung's bias correction runs onnxruntime on a copy of the graph before the fusion.
    unfused = type(proto)()
    unfused.CopyFrom(proto)
    n = fuse_erf_gelu(proto)
    if n:
        passes.append({"name": "fuse-erf-gelu", "config": {"fused": n}})
    # A recurrent cell stays a WHILE loop unless unrolled, and TFLiteConverter's full-integer
    # calibration crashes the process on the loop (SIGSEGV, ddddocr's CRNN). Unrolled over its
    # static time steps, the cell is FullyConnected/Logistic/Tanh/Mul/Add ops that quantize.
    unroll = precision == "int8" and any(n.op_type in RECURRENT_OPS for n in proto.graph.node)
    tf = import_tf()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgec-tflite-") as tmp:
        # onnx2tf's strict mode re-runs the partial model at every Reshape/MatMul to check the
        # transposes it picked (two thirds of a ViT's conversion); its guesses are checked here
        # instead, against onnxruntime, and strict mode runs only when they are wrong.
        for strict in (False, True):
            say(f"onnx2tf: ONNX -> TensorFlow{' (strict mode)' if strict else ''}")
            keras_model = run_onnx2tf(proto, Path(tmp) / f"strict{int(strict)}",
                                      [s.name for s in model.inputs if s.layout == "NHWC"], strict=strict,
                                      unroll_rnn=unroll)
            with captured_output():
                graph = TFGraph(tf, keras_model, model, samples)
            say("TFLiteConverter: float32")
            float_bytes = run_converter(graph.converter(), "fp32")
            err, rel = float_error(float_want, float_bytes, graph, samples)
            if rel <= FLOAT_REL_TOL:
                break
        report["onnx2tf_strict_mode"] = strict
        report["float_tflite_max_abs_err"] = err
        report["float_tflite_samples"] = len(samples)
        report["float_tflite_bytes"] = len(float_bytes)
        passes.append({"name": "onnx2tf", "config": {"version": version_of("onnx2tf"), "strict_mode": strict,
                                                     "replace_to_pseudo_operators": ["erf"], "unroll_rnn": unroll}})

        conv = graph.converter()
        quant: dict[str, Any] = {"mode": "none"}
        scored: dict[int, list] = {}  # the int8 ladder's outputs of the model it ships, on ``samples``
        data = None
        if precision == "fp32":
            data = float_bytes
        else:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            if precision == "fp16":
                conv.target_spec.supported_types = [tf.float16]
                quant = {"mode": "float16-weights"}
            elif precision == "int8-dynamic":
                quant = {"mode": "dynamic-range", "weights": "int8 per-channel", "activations": "float"}
            else:
                calib = list(spec.calibration.samples)
                io_tf = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[io_dtype]
                if activations == "int16":
                    say(f"TFLiteConverter: {precision} (16x8)")
                    data, quant = convert_int16(tf, graph, calib)
                    io_dtype = "float32"
                else:
                    with_float = ", with float ops" if float_nodes or float_ops or prefix else ""
                    say(f"TFLiteConverter: {precision} ({ranges} ranges{with_float})")
                    keep: dict[str, Any] = {}
                    data, quant = convert_full_integer(tf, conv, graph, calib, io_tf, float_nodes, float_ops, ranges,
                                                       keep, float_model=float_bytes, prefix=prefix)
                    if not pinned(spec):
                        def float_rung(build):
                            """A ladder rung of float ops: ``build(arg) -> (model, info, deny-list)``; the rung
                            ``(arg, held_out)`` also gives its held-out fold score if asked."""
                            from edgec.targets.tflite.ranges import held_out_score

                            def rung(arg, held_out):
                                data_f, info_f, deny = build(arg)
                                held = held_out_score(keep["raw"], graph, calib, MAX_AUTO_SAMPLES,
                                                      quant["ranges"]["method"], lambda m: keep["quantize"](m, deny),
                                                      keep.get("folds")) if held_out and deny else None
                                return data_f, info_f, held, len(deny)
                            return rung

                        worst_ops_float = float_rung(lambda n: with_worst_ops_float(keep, graph, calib, n))

                        def corrected_graph():
                            """The 16x8 fallback's graph: a copy of ``proto`` with `correct_conv_biases`, converted."""
                            from edgec.targets.tflite.weight_rounding import correct_conv_biases

                            proto16 = type(proto)()
                            proto16.CopyFrom(unfused)
                            info = correct_conv_biases(proto16, calib)
                            if not info["layers"]:
                                return graph, info
                            fuse_erf_gelu(proto16)  # whisper: conv1d -> Gelu (no onnxruntime Gelu before opset 20)
                            say("onnx2tf: ONNX -> TensorFlow (16x8, weight-rounding bias correction)")
                            keras16 = run_onnx2tf(proto16, Path(tmp) / "corrected",
                                                  [s.name for s in model.inputs if s.layout == "NHWC"], strict=strict,
                                                  unroll_rnn=unroll)
                            with captured_output():
                                return TFGraph(tf, keras16, model, samples), info

                        data, quant, is16 = hold_the_bar(tf, graph, calib, samples, want, data, quant, model, spec,
                                                         say, corrected_graph, worst_ops_float,
                                                         lambda kinds: with_float_islands(keep, kinds), scored,
                                                         float_rung(lambda share: with_float_prefix(keep, share)))
                        io_dtype = "float32" if is16 else io_dtype
                        if is16 and quant.get("weight_rounding_bias_correction", {}).get("layers"):
                            passes.append({"name": "weight-rounding-bias-correction",
                                           "config": quant.pop("weight_rounding_bias_correction")})
                quant["representative_layout"] = "NHWC"
            if data is None:
                say(f"TFLiteConverter: {precision}")
                data = run_converter(conv, precision)

        inputs, outputs, ops = read_io(data, graph)
        if precision == "int8":
            try:
                got = scored[id(data)] if id(data) in scored else run_tflite(data, graph, samples)
            except RuntimeError as exc:  # LiteRT's int8 kernels check their inputs (a DIV by int8 zero)
                why = str(exc).splitlines()[0][:200]
                refused = xnnpack_refused_ops(data)
                if refused:
                    raise AccuracyError(
                        f"the int8 .tflite fails in LiteRT: XNNPACK cannot prepare {refused[0]}, outside its "
                        f"[2^-32, 256) ({len(refused)} op(s)): an activation range of 1e30+ or a zero-scale "
                        "weight; rebuild with --ranges percentile or --activations int16") from exc
                raise AccuracyError(
                    f"the int8 .tflite fails in LiteRT: {why} (a kernel refuses its int8 quantization parameters, "
                    "e.g. a LayerNorm variance quantized to zero); use --activations int16, --float-ops N, "
                    "--max-accuracy-drop X (tries both), or --precision int8-dynamic") from exc
            errs = [float(np.abs(g.reshape(w.shape) - w).max(initial=0.0))
                    for w_row, row in zip(want, got) for w, g in zip(w_row, row)]
            report["int8_tflite_max_abs_err"] = max(errs) if errs else None

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.tflite").write_bytes(data)
    shutil.copyfile(TEMPLATES / "bench_tflite.py", out_dir / "bench_tflite.py")
    versions = {"onnx2tf": version_of("onnx2tf"), "tensorflow": version_of("tensorflow"),
                "ai-edge-litert": version_of("ai-edge-litert"), "onnxslim": version_of("onnxslim")}
    manifest = {
        "converter": "onnx2tf+TFLiteConverter",
        "versions": versions,
        "io_dtype": io_dtype,
        "signature": SIGNATURE,
        "quantization": quant,
        "layout": {s.name: s.layout for s in inputs if s.layout},
        "input_names": {m.name: s.name for m, s in zip(model.inputs, inputs)},
        "output_names": {m.name: s.name for m, s in zip(model.outputs, outputs)},
        "builtin_ops_only": True,
        "ops": ops,
    }
    report.update({"size_bytes": len(data), "size_ratio_vs_float_tflite": len(data) / len(float_bytes),
                   "ops": ops})

    from edgec.targets.tflite.readme import bundle_readme

    (out_dir / "README.md").write_text(bundle_readme(model, precision, io_dtype, inputs, outputs,
                                                     quant, versions, report, spec))
    return LowerResult(
        artifacts=[Artifact("model.tflite", "tflite", "model"),
                   Artifact("bench_tflite.py", "python", "harness"),
                   Artifact("README.md", "markdown", "doc")],
        inputs=inputs, outputs=outputs, manifest=manifest, report=report, passes=passes,
    )
