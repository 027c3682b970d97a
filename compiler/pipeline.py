"""The build pipeline: load -> optimize -> calibrate -> quantize -> lower -> verify -> package."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgec import __version__
from edgec._deps import version_of
from edgec.compiler import bundle as bundle_io
from edgec.compiler.config import BuildConfig
from edgec.compiler.model import ModelHandle
from edgec.compiler.output_dir import read_paths
from edgec.compiler.progress import SILENT, Progress
from edgec.errors import CalibrationDataError, ConfigError, MissingDependencyError

CORE_DISTS = ("edgec", "numpy", "onnx", "onnxruntime", "onnxslim")
SOURCE_DISTS = {"torch": ("torch",), "pt2": ("torch",), "hf": ("torch", "transformers", "tokenizers")}
TARGET_DISTS = {"intel-cpu": ("openvino",), "arm": ("tensorflow", "onnx2tf", "ai-edge-litert"),
                "mcu": ("ai-edge-litert",), "jetson": ("tensorrt",)}
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
        hint = "; int4 weight-only builds are for targets intel-cpu and onnxruntime" if p == "int4" else ""
        raise ConfigError(
            f"target '{target.name}' does not support precision '{p}' (it supports: "
            f"{', '.join(target.supported_precisions)}){hint}")
    return p


def check_target_options(target, options: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and reject options the target does not declare."""
    declared = {o.name: o for o in target.options}
    unknown = sorted(k for k, v in options.items() if k not in declared and v not in (None, False, ()))
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise ConfigError(f"{flags} do(es) not apply to target '{target.name}'")
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


def _build_into(config: BuildConfig, target, precision: str, options: dict[str, Any], tmp: Path,
                progress: Progress) -> tuple[dict[str, Any], dict[str, Any]]:
    from edgec.compiler.loaders import fix_input_shapes, load_model
    from edgec.compiler.optimize import optimize

    from edgec.compiler.llm.source import is_causal_lm_folder

    if not config.input_shapes and is_causal_lm_folder(Path(config.model)):
        from edgec.compiler.llm.pipeline import build_llm

        return build_llm(config, target, precision, options, tmp, progress)
    if config.lora or config.kv_cache:
        raise ConfigError("--lora and --kv-cache apply to causal-LM folders built as generation bundles "
                          "(an HF *ForCausalLM folder, without --input-shape)")
    passes: list[dict[str, Any]] = []
    from edgec.compiler.prune import request_from_config

    prune = request_from_config(config)  # None without --prune
    progress.message(f"loading {config.model}")
    handle = load_model(config.model, task=config.task, input_shapes=config.input_shapes,
                        parity_tol=config.parity_tol, progress=progress, prune=prune)
    if handle.format == "tflite":  # kept as is only where the target runs the flatbuffer natively
        from edgec.compiler.frontends.tflite import as_source_for

        handle = as_source_for(handle, target.accepted_formats)
    if handle.proto is not None:
        from edgec.compiler.finite import check_weights

        check_weights(handle.proto, config.model)
    if handle.format not in target.accepted_formats:
        raise ConfigError(
            f"target '{target.name}' does not take {handle.format} models; give the ONNX or PyTorch model instead")
    kept_quant = None
    if handle.format == "onnx":
        from edgec.compiler.frontends.quantized_onnx import prepare

        handle, kept_quant = prepare(handle, config.keep_source_quantization)
        handle = fix_input_shapes(handle, config.input_shapes)
        progress.message("optimizing the float graph")
        handle, info = optimize(handle)
        passes.append({"name": "optimize", "config": info})
        if prune is not None:  # ONNX sources are pruned here; PyTorch ones were before export
            from edgec.compiler.prune.hook import after_optimize

            handle, prune_pass = after_optimize(handle, prune, progress)
            passes.append(prune_pass)

    calibration = ranges = quant = quantizer = None
    quant_summary: dict[str, Any] | None = None
    if handle.format == "onnx" and precision == "int4":
        from edgec.compiler.int4 import Int4Quantizer

        quantizer = Int4Quantizer.create(config, handle, progress)
        calibration = quantizer.calibration
    elif kept_quant is not None:
        from edgec.compiler.frontends.quantized_onnx import kept_source_model

        quant = kept_source_model(kept_quant, config, target, precision, handle)
        passes.append({"name": "quantize", "config": {"source": "kept the model's own Q/DQ scales"}})
    elif handle.format == "onnx" and precision in target.calibrated_precisions:
        calibration, ranges = _calibrate(config, handle, progress)
        passes.append({"name": "calibrate", "config": {"method": config.calib_method, "samples": len(calibration),
                                                        "tensors": len(ranges)}})
        if target.quant_scheme is not None:
            from edgec.compiler.quant_stage import Int8Quantizer

            quantizer = Int8Quantizer.create(config, handle, calibration, ranges, target.quant_scheme, progress)
            ranges = quantizer.ranges
            progress.message(f"quantizing to int8 ({target.quant_scheme.placement} Q/DQ placement)")
    elif config.keep_float and precision not in target.calibrated_precisions:
        raise ConfigError("--keep-float only applies to quantized precisions")
    from edgec.compiler.quant_stage import check_int8_passes

    check_int8_passes(config, quantizer, target.name, precision)
    if quantizer is not None:
        passes.extend(quantizer.passes)
        if config.max_accuracy_drop is None:
            quant, quant_summary = quantizer.quantize(config.keep_float)
    eval_samples, eval_source, labels = _eval_samples(config, handle, calibration)
    classifier = is_classifier({"task": handle.task, "model_outputs": [s.to_json() for s in handle.outputs]})
    base_passes = list(passes)
    tries = [0]

    def attempt(quant, keep_float: tuple[str, ...], quant_summary, store: bool = False):
        """Lower ``quant`` (or the float model) into ``tmp``, write the manifest, verify it."""
        from edgec.compiler.quality import OutputRecorder
        from edgec.targets.base import LowerSpec

        if tries[0]:  # the accuracy gate lowers again: start from an empty bundle folder
            _clear_dir(tmp)
        tries[0] += 1
        passes[:] = base_passes + ([{"name": "quantize", "config": quant_summary}] if quant_summary else [])
        spec = LowerSpec(precision=precision, float_model=handle, quant_model=quant, calibration=calibration,
                         ranges=ranges, options=options, input_profiles=_profiles(config), keep_float=keep_float,
                         progress=progress)
        model = quant or handle
        target.check(model, spec).raise_if_unsupported()
        progress.message(f"lowering for {target.name} ({precision})")
        lowered = target.lower(model, spec, tmp)
        passes.extend(lowered.passes)

        ref = _write_reference(handle, tmp, quant)
        if handle.tokenizer_dir is not None:
            _copy_tokenizer(handle.tokenizer_dir, tmp / "tokenizer")
        art = lowered.model_artifact
        manifest: dict[str, Any] = {
            "schema_version": bundle_io.SCHEMA_VERSION,
            "edgec_version": __version__,
            "target": target.name,
            "precision": precision,
            "runner": target.runner,
            "artifact": {"path": art.path, "kind": art.kind},
            "artifacts": [{"path": a.path, "kind": a.kind, "role": a.role} for a in lowered.artifacts],
            "source": {"path": config.model, "sha256": handle.source_sha256, "kind": handle.meta.get("source_kind")},
            "task": handle.task,
            "model_inputs": [s.to_json() for s in handle.inputs],
            "model_outputs": [s.to_json() for s in handle.outputs],
            "inputs": [s.to_json() for s in lowered.inputs],
            "outputs": [s.to_json() for s in lowered.outputs],
            # Artifact I/O name -> model I/O name (targets keep the model's order; arm renames).
            "io_names": _io_names(handle, lowered),
            "reference": ref,
            "tokenizer": "tokenizer" if handle.tokenizer_dir is not None else None,
            "passes": passes,
            "calibration": ({"method": config.calib_method, "samples": len(calibration), "source": calibration.source,
                             "random": calibration.random} if calibration is not None else None),
            "config": config.manifest_view() | {"precision": precision, "target_options": _jsonable(options)},
            "target_info": lowered.manifest,
            "dependencies": _dependencies(handle, target),
        }
        progress.message("verifying against the float model")
        recorder = OutputRecorder(store=store, perplexity=handle.task == "text-generation")
        accuracy = _verify(target, tmp, manifest, eval_samples, labels, progress, recorder)
        accuracy.update(recorder.summary())
        return manifest, lowered, accuracy, recorder

    gate = None
    if config.max_accuracy_drop is not None:
        from edgec.compiler.accuracy_gate import run_gate

        manifest, lowered, accuracy, gate = run_gate(config, target, quantizer, attempt, eval_samples, labels,
                                                     classifier, progress)
    else:
        manifest, lowered, accuracy, _ = attempt(quant, config.keep_float, quant_summary)
    accuracy["data"] = eval_source
    warnings = []
    if calibration is not None and calibration.random:
        warnings.append("calibrated on random data (--calib random): ranges may not match real inputs")
    if handle.meta.get("batch_set_to_1"):
        warnings.append(f"dynamic batch of input(s) {', '.join(handle.meta['batch_set_to_1'])} built as batch 1 "
                        "(give --input-shape to choose another)")
    if eval_source == "synthetic":
        warnings.append("accuracy measured on synthetic inputs; pass --calib or --eval for real data")
    report = {
        "accuracy": accuracy,
        "size_bytes": {"source": _source_size(config.model, handle),
                       "artifact": sum((tmp / a.path).stat().st_size for a in lowered.artifacts
                                       if a.role in ("model", "weights"))},
        "export_parity_max_abs_err": handle.export_parity_max_abs_err,
        "calibration": manifest["calibration"],
        "target": lowered.report,
        "warnings": warnings,
    }
    if handle.meta.get("frontend"):
        report["frontend"] = handle.meta["frontend"]
    if gate is not None:
        report["accuracy_gate"] = gate
    if prune is not None:
        from edgec.compiler.prune.report import pruning_report

        report["pruning"], prune_warnings = pruning_report(
            handle, eval_samples, labels, eval_source, is_classifier(manifest), target.name, options,
            [tmp / a.path for a in lowered.artifacts if a.role in ("model", "weights")])
        warnings.extend(prune_warnings)
    bundle_io.write_json(tmp / bundle_io.REPORT, report)
    manifest["files"] = bundle_io.file_entries(tmp)
    bundle_io.write_json(tmp / bundle_io.MANIFEST, manifest)
    # Return exactly what the files hold (floats rounded the same way).
    return bundle_io.canonical(manifest), bundle_io.canonical(report)


def _io_names(handle: ModelHandle, lowered) -> dict[str, dict[str, str]]:
    out = {}
    for kind, model_specs, art_specs in (("inputs", handle.inputs, lowered.inputs),
                                         ("outputs", handle.outputs, lowered.outputs)):
        if len(model_specs) == len(art_specs):
            out[kind] = {a.name: m.name for a, m in zip(art_specs, model_specs)}
    return out


def _calibrate(config: BuildConfig, handle: ModelHandle, progress: Progress):
    from edgec.calibration import collect_ranges, load_calibration_data

    if not config.calib:
        raise CalibrationDataError(
            "int8 needs calibration data: pass --calib PATH (an .npz, a folder of .npy/.npz or images, a .txt/.jsonl "
            "of texts), or --calib random to accept synthetic data (the report flags it)")
    progress.message(f"loading calibration data from {config.calib}")
    data = load_calibration_data(config.calib, handle.inputs, max_samples=config.calib_samples,
                                 tokenizer_dir=handle.tokenizer_dir, preprocess=config.preprocess, seed=config.seed)
    method = "minmax" if config.calib_method == "auto" else config.calib_method  # auto: see quant_stage
    ranges = collect_ranges(handle.proto, data.samples, method, progress=progress)
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


def _verify(target, tmp: Path, manifest: dict[str, Any], samples: list[dict], labels, progress: Progress,
            recorder=None) -> dict[str, Any]:
    from edgec.runtimes.harness import compare
    from edgec.runtimes.registry import reference_runner

    runner = target.verify_runner(tmp, manifest)
    ref = reference_runner(tmp, manifest)
    with runner, ref, progress.task("verifying", total=len(samples)) as t:
        got, want = (recorder.wrap(runner, "artifact"), recorder.wrap(ref, "reference")) if recorder else (runner, ref)
        acc = compare(got, want, samples, labels=labels, classification=is_classifier(manifest),
                      on_sample=lambda _: t.advance())
    acc["runner"] = runner.name
    return acc


CLASSIFICATION_TASKS = ("image-classification", "text-classification", "token-classification", "fill-mask",
                        "text-generation")


def is_classifier(manifest: dict[str, Any]) -> bool:
    """Whether top-1 agreement means something for this model's first output."""
    task = manifest.get("task")
    if task is not None:
        return task in CLASSIFICATION_TASKS
    out = manifest["model_outputs"][0]
    return len(out["shape"]) == 2


def _write_reference(handle: ModelHandle, tmp: Path, quant: ModelHandle | None = None) -> dict[str, str]:
    (tmp / "reference").mkdir(exist_ok=True)
    if handle.format == "tflite":
        (tmp / "reference" / "model.tflite").write_bytes(handle.serialize())
        return {"runner": "litert", "path": "reference/model.tflite"}
    (tmp / "reference" / "model.onnx").write_bytes(handle.serialize())
    ref = {"runner": "onnxruntime", "path": "reference/model.onnx"}
    if quant is not None:  # what the target lowered, for `edgec debug layers`
        (tmp / "reference" / "quantized.onnx").write_bytes(quant.serialize())
        ref["quantized"] = "reference/quantized.onnx"
    return ref


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                    "merges.txt", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model", "added_tokens.json")


def _clear_dir(folder: Path) -> None:
    for p in folder.iterdir():
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _copy_tokenizer(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in _TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)


def _source_size(model: str, handle: ModelHandle) -> int:
    p = Path(model.rsplit(":", 1)[0] if handle.meta.get("source_kind") == "torch" else model)
    if handle.meta.get("source_kind") in ("torch", "pt2", "hf"):
        return len(handle.serialize())
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size if p.exists() else len(handle.serialize())


def _profiles(config: BuildConfig) -> dict[str, tuple]:
    return {n: (s.min, s.opt, s.max) for n, s in config.input_shapes.items() if s.is_profile}


def _dependencies(handle: ModelHandle, target) -> dict[str, str]:
    dists = [*CORE_DISTS, *SOURCE_DISTS.get(handle.meta.get("source_kind", ""), ()), *TARGET_DISTS.get(target.name, ())]
    return {d: v for d in dists if (v := version_of(d)) is not None}


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(options.items())}
