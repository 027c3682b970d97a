"""The build pipeline as named stages over one typed `BuildState`.

``load -> optimize -> [prune] -> check support -> calibrate -> quantize -> lower -> verify
-> package``. Each stage is a function of the state (`STAGES`); the support check runs on
the float graph before calibration, so an unsupported op fails in seconds. Lowering and
verifying is a `Lowering` object (`compiler/lowering.py`): the build calls it once, and the accuracy gate
(``--max-accuracy-drop``) calls it again with other quantized models until one fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgec.compiler import bundle as bundle_io
from edgec.compiler.config import CHOOSING_CALIB_METHODS, BuildConfig, check_option_names
from edgec.compiler.lowering import Lowering, input_profiles, is_classifier
from edgec.compiler.model import ModelHandle
from edgec.compiler.packaging import source_size
from edgec.compiler.output_dir import read_paths
from edgec.compiler.progress import SILENT, Progress
from edgec.errors import CalibrationDataError, ConfigError, MissingDependencyError

VERIFY_MAX_SAMPLES = 64  # samples of the calibration data reused for the accuracy check
EVAL_MAX_SAMPLES = 1000  # samples of an explicit --eval set


@dataclass
class BuildResult:
    """What `build` returns: the bundle folder and its parsed manifest and report."""

    bundle: Path
    manifest: dict[str, Any]
    report: dict[str, Any]


def resolve_precision(target, precision: str | None) -> str:
    p = precision or target.default_precision
    if p not in target.supported_precisions:
        hint = ""
        if p == "int4":
            from edgec.targets.registry import TARGETS

            have = [n for n in TARGETS.names() if "int4" in TARGETS.target_class(n).supported_precisions]
            hint = f"; int4 weight-only builds are for targets {' and '.join(have)}"
        raise ConfigError(
            f"target '{target.name}' does not support precision '{p}' (it supports: "
            f"{', '.join(target.supported_precisions)}){hint}")
    return p


def check_target_options(target, options: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and reject options the target does not declare."""
    check_option_names(target, options)
    declared = {o.name: o for o in target.options}
    return {name: options.get(name, o.default) if options.get(name) is not None else o.default
            for name, o in declared.items()}


def build(config: BuildConfig, progress: Progress = SILENT) -> BuildResult:
    """Compile ``config.model`` for ``config.target`` into the bundle ``config.output``."""
    from edgec.targets.registry import get_target

    target = get_target(config.target)
    reason = target.availability()
    if reason:
        raise _unavailable(target, reason)
    precision = resolve_precision(target, config.precision)
    options = check_target_options(target, config.target_options)
    writer = bundle_io.BundleWriter(config.output, config.force, reads=read_paths(config))
    try:
        result = _build_into(config, target, precision, options, writer.tmp, progress)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    progress.message(f"wrote {config.output}")
    return BuildResult(Path(config.output), result[0], result[1])


def _unavailable(target, reason: str) -> MissingDependencyError:
    return MissingDependencyError(target.name, target.extra,
                                  message=f"target '{target.name}' is not usable here: {reason}")


@dataclass
class BuildState:
    """Everything one build knows, filled in stage by stage.

    Attributes:
        config, target, precision, options: What was asked (options checked and defaulted).
        tmp: The bundle folder being written (moved into place when the build succeeds).
        progress: Progress reporter.
        handle: The float model (after loading, optimizing and pruning).
        prune: The ``--prune`` request, or None.
        passes: Passes run so far, ``{"name", "config"}`` each, in order.
        calibration: Calibration data, when the precision is calibrated.
        ranges: Per-tensor ranges from calibration (int8).
        quantizer: `Int8Quantizer` / `Int4Quantizer`, or None.
        quant, quant_summary: The quantized model and its pass summary (without the gate).
        kept_quant: The source's own quantization, when an already-quantized ONNX keeps it.
        eval_samples, eval_source, labels: The data the build is verified on.
        manifest, lowered, accuracy, gate: What lowering, verifying and the gate produced.
    """

    config: BuildConfig
    target: Any
    precision: str
    options: dict[str, Any]
    tmp: Path
    progress: Progress
    handle: ModelHandle | None = None
    prune: Any = None
    passes: list[dict[str, Any]] = field(default_factory=list)
    calibration: Any = None
    ranges: Any = None
    quantizer: Any = None
    quant: ModelHandle | None = None
    quant_summary: dict[str, Any] | None = None
    kept_quant: Any = None
    eval_samples: list[dict] = field(default_factory=list)
    eval_source: str = ""
    labels: Any = None
    manifest: dict[str, Any] = field(default_factory=dict)
    lowered: Any = None
    accuracy: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] | None = None


def _build_into(config: BuildConfig, target, precision: str, options: dict[str, Any], tmp: Path,
                progress: Progress) -> tuple[dict[str, Any], dict[str, Any]]:
    from edgec.compiler.llm.source import is_causal_lm_folder

    if not config.input_shapes and is_causal_lm_folder(Path(config.model)):
        from edgec.compiler.llm.pipeline import build_llm

        if config.int8.calib_method is None:  # recorded in the manifest: the target's default
            scheme = target.quant_scheme
            config = config.replace(calib_method=scheme.calib_method if scheme is not None else "minmax")
        return build_llm(config, target, precision, options, tmp, progress)
    if config.llm.lora or config.llm.kv_cache:
        raise ConfigError("--lora and --kv-cache apply to causal-LM folders built as generation bundles "
                          "(an HF *ForCausalLM folder, without --input-shape)")
    state = BuildState(config, target, precision, options, tmp, progress)
    for stage in STAGES:
        stage(state)
    return package(state)


def load(state: BuildState) -> None:
    """Read the source model (PyTorch sources are pruned before export here)."""
    from edgec.compiler.loaders import load_model
    from edgec.compiler.prune import request_from_config

    config, target = state.config, state.target
    state.prune = request_from_config(config)  # None without --prune
    state.progress.message(f"loading {config.model}")
    state.handle = load_model(config.model, task=config.task, input_shapes=config.input_shapes,
                              parity_tol=config.parity_tol, progress=state.progress, prune=state.prune)
    if state.handle.format == "tflite":  # kept as is only where the target runs the flatbuffer natively
        from edgec.compiler.frontends.tflite import as_source_for

        state.handle = as_source_for(state.handle, target.accepted_formats)
    if state.handle.proto is not None:
        from edgec.compiler.finite import check_weights

        check_weights(state.handle.proto, config.model)
    if state.handle.format not in target.accepted_formats:
        raise ConfigError(
            f"target '{target.name}' does not take {state.handle.format} models; give the ONNX or PyTorch model "
            "instead")


def optimize(state: BuildState) -> None:
    """Fix input shapes and simplify the float ONNX graph."""
    from edgec.compiler.loaders import fix_input_shapes
    from edgec.compiler.optimize import optimize as optimize_graph

    if state.handle.format != "onnx":
        return
    from edgec.compiler.frontends.quantized_onnx import prepare

    state.handle, state.kept_quant = prepare(state.handle, state.config.int8.keep_source_quantization)
    state.handle = fix_input_shapes(state.handle, state.config.input_shapes)
    state.progress.message("optimizing the float graph")
    state.handle, info = optimize_graph(state.handle, state.target.skip_fusions)
    state.passes.append({"name": "optimize", "config": info})


def prune(state: BuildState) -> None:
    """``--prune`` on ONNX sources (PyTorch sources were pruned before export)."""
    if state.prune is None or state.handle.format != "onnx":
        return
    from edgec.compiler.prune.hook import after_optimize

    state.handle, prune_pass = after_optimize(state.handle, state.prune, state.progress)
    state.passes.append(prune_pass)


def check_support(state: BuildState) -> None:
    """The target's op support, on the float graph: an unsupported op fails before calibration."""
    from edgec.targets.base import LowerSpec

    spec = LowerSpec(precision=state.precision, float_model=state.handle, options=state.options,
                     input_profiles=input_profiles(state.config), keep_float=state.config.keep_float,
                     progress=state.progress)
    state.target.check(state.handle, spec).raise_if_unsupported()


def calibrate(state: BuildState) -> None:
    """Calibration data and ranges (int8), or the int4 quantizer with its own data."""
    config, target, handle = state.config, state.target, state.handle
    if handle.format == "onnx" and state.precision == "int4":
        from edgec.compiler.int4 import Int4Quantizer

        state.quantizer = Int4Quantizer.create(config, handle, state.progress)
        state.calibration = state.quantizer.calibration
    elif state.kept_quant is not None:  # an already-quantized ONNX whose own scales are kept
        from edgec.compiler.frontends.quantized_onnx import kept_source_model

        state.quant = kept_source_model(state.kept_quant, config, target, state.precision, handle)
        state.passes.append({"name": "quantize", "config": {"source": "kept the model's own Q/DQ scales"}})
    elif handle.format == "onnx" and state.precision in target.calibrated_precisions:
        # ``auto`` with edgec's quantizer collects every method's ranges (min/max too) in one pass
        # of its own, on the model as its passes leave it: a min/max pass here would be thrown away.
        from edgec.compiler.model_recipes import calib_method

        # Without --calib-method: the target's default for this model, chosen by measurement on real models.
        method = calib_method(config, target.quant_scheme, handle)
        deferred = method == "auto" and target.quant_scheme is not None
        state.calibration, state.ranges = _calibrate(config, handle, state.progress, method, collect=not deferred)
        state.passes.append({"name": "calibrate", "config": {"method": method,
                                                              "samples": len(state.calibration),
                                                              "tensors": len(state.ranges)}})
    elif config.keep_float and state.precision not in target.calibrated_precisions:
        raise ConfigError("--keep-float only applies to quantized precisions")


def quantize(state: BuildState) -> None:
    """Q/DQ placement by the target's `QuantScheme` (without the gate: the gate quantizes itself)."""
    from edgec.compiler.quant_stage import check_int8_passes

    config, target = state.config, state.target
    if state.ranges is not None and target.quant_scheme is not None:
        from edgec.compiler.quant_stage import Int8Quantizer

        state.quantizer = Int8Quantizer.create(config, state.handle, state.calibration, state.ranges,
                                               target.quant_scheme, state.progress)
        state.ranges = state.quantizer.ranges
        calibrate_pass = next((p for p in state.passes if p["name"] == "calibrate"), None)
        if calibrate_pass is not None and not calibrate_pass["config"]["tensors"]:  # deferred to auto
            calibrate_pass["config"]["tensors"] = len(state.ranges)
        state.progress.message(f"quantizing to int8 ({target.quant_scheme.placement} Q/DQ placement)")
    check_int8_passes(config, state.quantizer, target.name, state.precision)
    if config.int8.calib_method is None:  # recorded in the manifest as the build resolved it
        from edgec.compiler.model_recipes import calib_method

        method = getattr(state.quantizer, "calib_method", None) or calib_method(config, target.quant_scheme,
                                                                                 state.handle)
        state.config = config.replace(calib_method=method)
    if state.quantizer is not None:
        state.passes.extend(state.quantizer.passes)
        if config.gate.max_accuracy_drop is None:
            state.quant, state.quant_summary = state.quantizer.quantize(config.keep_float)


def lower_and_verify(state: BuildState) -> None:
    """Lower into the bundle folder and verify; through the accuracy gate when a budget is set."""
    state.eval_samples, state.eval_source, state.labels = _eval_samples(state.config, state.handle,
                                                                        state.calibration)
    lowering = Lowering(state)
    if state.config.gate.max_accuracy_drop is not None:
        from edgec.compiler.accuracy_gate import run_gate

        classifier = _is_classifier(state.handle)
        state.manifest, state.lowered, state.accuracy, state.gate = run_gate(
            state.config, state.target, state.quantizer, lowering, state.eval_samples, state.labels, classifier,
            state.progress)
    else:
        state.manifest, state.lowered, state.accuracy, _ = lowering(state.quant, state.config.keep_float,
                                                                    state.quant_summary)
        check_accuracy_floor(state)


def _accuracy_unknown(state: BuildState) -> bool:
    """Quantized with random calibration data and verified on it: nothing is known about accuracy."""
    return (state.calibration is not None and state.calibration.random and state.eval_source == "calibration"
            and _quantized(state))


def _is_classifier(handle: ModelHandle) -> bool:
    return is_classifier({"task": handle.task, "model_outputs": [s.to_json() for s in handle.outputs]})


def _quantized(state: BuildState) -> bool:
    return state.precision in state.target.calibrated_precisions or state.precision == "int4"


def check_accuracy_floor(state: BuildState) -> None:
    """Trust by default: a quantized build below the floor fails (`edgec.compiler.accuracy_floor`)."""
    from edgec.compiler import accuracy_floor

    if _accuracy_unknown(state):
        state.progress.message(accuracy_floor.ACCURACY_UNKNOWN)
        return
    if not _quantized(state) or state.config.gate.accept_low_accuracy \
            or state.eval_source in ("synthetic", "example-inputs"):
        return
    classifier = _is_classifier(state.handle)
    accuracy_floor.check_floor(state.accuracy, classifier, state.handle, state.quant, state.eval_samples,
                               state.target.name, state.precision)


STAGES = (load, optimize, prune, check_support, calibrate, quantize, lower_and_verify)


def package(state: BuildState) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write report.json and manifest.json (with every file's hash) into the bundle folder."""
    config, handle, lowered, tmp, manifest = state.config, state.handle, state.lowered, state.tmp, state.manifest
    accuracy = state.accuracy
    accuracy["data"] = state.eval_source
    warnings = []
    if _accuracy_unknown(state):
        from edgec.compiler.accuracy_floor import ACCURACY_UNKNOWN

        warnings.append(ACCURACY_UNKNOWN)
    if state.calibration is not None and state.calibration.random:
        warnings.append("calibrated on random data (--calib random): ranges may not match real inputs")
    if handle.meta.get("batch_set_to_1"):
        warnings.append(f"dynamic batch of input(s) {', '.join(handle.meta['batch_set_to_1'])} built as batch 1 "
                        "(give --input-shape to choose another)")
    if state.eval_source == "synthetic":
        warnings.append("accuracy measured on synthetic inputs; pass --calib or --eval for real data")
    report = {
        "accuracy": accuracy,
        "size_bytes": {"source": source_size(config.model, handle),
                       "artifact": sum((tmp / a.path).stat().st_size for a in lowered.artifacts
                                       if a.role in ("model", "weights"))},
        "export_parity_max_abs_err": handle.export_parity_max_abs_err,
        "calibration": manifest["calibration"],
        "target": lowered.report,
        "warnings": warnings,
    }
    if handle.meta.get("frontend"):
        report["frontend"] = handle.meta["frontend"]
    if state.gate is not None:
        report["accuracy_gate"] = state.gate
    if state.prune is not None:
        from edgec.compiler.prune.report import pruning_report

        report["pruning"], prune_warnings = pruning_report(
            handle, state.eval_samples, state.labels, state.eval_source, is_classifier(manifest), state.target.name,
            state.options, [tmp / a.path for a in lowered.artifacts if a.role in ("model", "weights")])
        warnings.extend(prune_warnings)
    bundle_io.write_json(tmp / bundle_io.REPORT, report)
    manifest["files"] = bundle_io.file_entries(tmp)
    bundle_io.write_json(tmp / bundle_io.MANIFEST, manifest)
    # Return exactly what the files hold (floats rounded the same way).
    return bundle_io.canonical(manifest), bundle_io.canonical(report)


def _calibrate(config: BuildConfig, handle: ModelHandle, progress: Progress, method: str, collect: bool = True):
    from edgec.calibration import collect_ranges, load_calibration_data

    if not config.calib:
        raise CalibrationDataError(
            "int8 needs calibration data: pass --calib PATH (an .npz, a folder of .npy/.npz or images, a .txt/.jsonl "
            "of texts), or --calib random to accept synthetic data (the report flags it)")
    progress.message(f"loading calibration data from {config.calib}")
    data = load_calibration_data(config.calib, handle.inputs, max_samples=config.calib_samples,
                                 tokenizer_dir=handle.tokenizer_dir, preprocess=config.preprocess, seed=config.seed)
    if not collect:
        return data, {}
    # auto, held-out: min/max first, the choice is made in quant_stage
    ranges = collect_ranges(handle.proto, data.samples, "minmax" if method in CHOOSING_CALIB_METHODS else method,
                            progress=progress)
    return data, ranges


def _eval_samples(config: BuildConfig, handle: ModelHandle, calibration) -> tuple[list[dict], str, Any]:
    from edgec.runtimes.io import synthetic_feeds

    if config.eval_data:
        from edgec.calibration import load_calibration_data

        data = load_calibration_data(config.eval_data, handle.inputs, max_samples=EVAL_MAX_SAMPLES,
                                     tokenizer_dir=handle.tokenizer_dir, preprocess=config.preprocess, seed=config.seed,
                                     role="--eval")
        return data.samples, str(config.eval_data), data.labels
    if calibration is not None:
        labels = calibration.labels[:VERIFY_MAX_SAMPLES] if calibration.labels is not None else None
        return calibration.samples[:VERIFY_MAX_SAMPLES], "calibration", labels
    if config.calib and handle.format == "onnx":
        from edgec.calibration import load_calibration_data

        data = load_calibration_data(config.calib, handle.inputs, max_samples=VERIFY_MAX_SAMPLES,
                                     tokenizer_dir=handle.tokenizer_dir, preprocess=config.preprocess, seed=config.seed)
        return data.samples, "calibration", data.labels
    if handle.example_inputs is not None:
        return [handle.example_inputs], "example-inputs", None
    return [synthetic_feeds(handle.inputs, seed=config.seed + i) for i in range(8)], "synthetic", None
