"""`TensorRTTarget.lower`: write the jetson bundle (and the engine, where it can be built).

Bundle contents (paths relative to the bundle root):

``model.onnx``          Q/DQ ONNX (int8/best; TensorRT-legal, checked) or the float ONNX
                        (fp32/fp16); dynamic dims kept when profiles are given.
``engine_config.json``  every builder option (schema ``edgec.trt-engine-config/1``).
``build_engine.py``     ONNX -> model.engine on the device (TensorRT 8.6 / 10.x).
``bench_trt.py``        times the engine, checks it against ``reference/io.npz``,
                        prints ``edgec.bench/1`` JSON.
``trt_engine/``         the package both scripts import (edgec's ``trt_engine``, copied
                        verbatim, with its ``bench_stats.py`` and ``metrics.py``).
``reference/io.npz``    a few calibration inputs and the float model's outputs.
``README.md``           how to build and bench, with the equivalent ``trtexec`` lines.
``model.engine``        only with ``--engine`` where TensorRT and a GPU are present.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgec.errors import ConfigError, MissingDependencyError
from edgec.targets.base import Artifact, LowerResult, LowerSpec
from edgec.targets.tensorrt import accuracy, profiles as prof, qdq_rules, sparsity, trt_engine as te

REFERENCE_SAMPLES = 4
MODEL_FILE = "model.onnx"
ENGINE_FILE = "model.engine"
CONFIG_FILE = "engine_config.json"
REFERENCE_FILE = "reference/io.npz"  # the pipeline owns reference/model.onnx
TIMING_CACHE = "timing.cache"
TEMPLATES = Path(__file__).parent / "templates"


ENGINE_PACKAGE = "trt_engine"


def engine_package_files() -> dict[str, Path]:
    """``{path in the bundle: source file}`` of the engine package the bundle scripts import.

    The package is copied verbatim, with edgec's dependency-free ``runtimes/bench_stats.py``
    and ``runtimes/metrics.py`` next to it (its `_shared` imports them from there).
    """
    from edgec.runtimes import bench_stats, metrics

    pkg = Path(te.__file__).parent
    files = {f"{ENGINE_PACKAGE}/{f.name}": f for f in sorted(pkg.glob("*.py"))}
    for mod in (bench_stats, metrics):
        files[f"{ENGINE_PACKAGE}/{Path(mod.__file__).name}"] = Path(mod.__file__)
    return dict(sorted(files.items()))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An ``.npz`` with fixed zip timestamps, so rebuilding gives identical bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def _local_timing_cache(path: str | None) -> Path:
    """Timing cache of builds on this machine: ``--timing-cache`` or one in the user's cache folder.

    Not in the bundle: a cache is specific to a GPU and TensorRT version, and the bundle is
    rebuilt from scratch; the device keeps its own next to the bundle's engine.
    """
    if path:
        p = Path(path).expanduser().resolve()
    else:
        p = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgec" / "tensorrt-timing.cache"
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _options(spec: LowerSpec) -> dict[str, Any]:
    o = spec.options or {}
    dla = o.get("dla_core")
    if dla is not None:
        dla = int(dla)
        if dla < 0:
            raise ConfigError(f"--dla-core {dla}: give a DLA core index (0 or 1 on Orin AGX/NX)")
        if spec.precision == "fp32":
            raise ConfigError("--dla-core needs --precision fp16, int8 or best: DLA cores have no fp32")
    ws = o.get("workspace")
    if ws is not None and int(ws) <= 0:
        raise ConfigError(f"--workspace {ws}: give a positive size, e.g. 1G")
    return {"engine": bool(o.get("engine")), "workspace": int(ws) if ws is not None else None,
            "sparsity": bool(o.get("sparsity")), "dla_core": dla, "timing_cache": o.get("timing_cache")}


def _qdq_model(model, spec: LowerSpec, target) -> tuple[Any, dict, dict]:
    """The TensorRT-legal Q/DQ proto, its rule report and the accuracy-gate result."""
    quant = spec.quant_model or model
    if quant is None or quant.proto is None or not any(
            n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in quant.proto.graph.node):
        raise ConfigError(f"--precision {spec.precision} for jetson needs the Q/DQ model from calibration: "
                          "give --calib DATA (TensorRT 10+ builds INT8 only from explicit Q/DQ)")
    proto, changes = qdq_rules.legalize(quant.proto, float_weights=True)
    report = qdq_rules.check_qdq(proto, keep_float=spec.keep_float,
                                 quantize_add=target.quant_scheme.quantize_add)
    if not report.ok:
        v = report.violations[0]
        more = len(report.violations) - 1
        rules = sorted({x.rule for x in report.violations})
        raise ConfigError(f"the Q/DQ model breaks TensorRT's quantization rules: {v}"
                          + (f" ({more} more: {', '.join(rules)})" if more else ""))
    gate: dict[str, Any] = {"checked": False, "reason": "no calibration samples"}
    if spec.calibration is not None and len(spec.calibration):
        gate = accuracy.accuracy_gate(spec.float_model.proto, proto, spec.calibration.samples,
                                      spec.float_model.inputs, [o.name for o in spec.float_model.outputs],
                                      bound=target.int8_error_bound, accept=spec.accept_low_accuracy)
    return proto, {"legalize": changes, "check": report.to_json()}, gate


def _reference(spec: LowerSpec, qdq_proto) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Reference inputs (first calibration samples) and float outputs; Q/DQ cosine per sample."""
    from edgec.runtimes import io as rio

    fm = spec.float_model
    if spec.calibration is not None and len(spec.calibration):
        feeds = accuracy.fit_batches(list(spec.calibration.samples), fm.inputs)[:REFERENCE_SAMPLES]
        source = "calibration"
    else:
        feeds = [rio.synthetic_feeds(fm.inputs, seed=i) for i in range(2)]
        source = "synthetic"
    outs = accuracy.run_model(fm.proto, feeds)
    arrays = {}
    for i, (f, o) in enumerate(zip(feeds, outs)):
        for n, a in f.items():
            arrays[f"input/{i}/{n}"] = np.asarray(a)
        for out in fm.outputs:
            arrays[f"output/{i}/{out.name}"] = np.asarray(o[out.name])
    info: dict[str, Any] = {"path": REFERENCE_FILE, "samples": len(feeds), "source": source,
                            "outputs_from": "float model, onnxruntime"}
    if qdq_proto is not None:
        q_outs = accuracy.run_model(qdq_proto, feeds)
        info["qdq_onnxruntime_cosine_min"] = float(min(
            te.cosine(q[out.name], o[out.name]) for q, o in zip(q_outs, outs) for out in fm.outputs))
    return arrays, info


def _readme(cfg: dict, plan: dict, spec: LowerSpec, engine_note: str, warnings: list[str]) -> str:
    build = te.trtexec_build_command(plan)
    bench = te.trtexec_bench_command(plan)
    prof_lines = "".join(f"- `{n}`: min {p['min']}, opt {p['opt']}, max {p['max']}\n"
                         for n, p in sorted(cfg["profiles"].items())) or "- none (static shapes)\n"
    q = ("`model.onnx` is explicitly quantized (Q/DQ, symmetric int8, per-channel weights) following TensorRT's "
         "Q/DQ rules; TensorRT takes the scales from it (no calibration on the device)."
         if cfg["explicit_quantization"] else "`model.onnx` is the float model; TensorRT lowers it to "
         f"{spec.precision} while building.")
    warn = "".join(f"- {w}\n" for w in warnings)
    return f"""# TensorRT bundle ({spec.precision})

TensorRT engines are specific to the GPU and TensorRT version that build them, so this
bundle builds its engine on the Jetson (JetPack 5.1.2+ / 6: TensorRT 8.6 or 10.x).
{q}

## On the device
```
python3 build_engine.py          # model.onnx -> model.engine (keeps {cfg['timing_cache']} for faster rebuilds)
python3 bench_trt.py             # time it; checks outputs against reference/io.npz; prints edgec.bench/1 JSON
python3 build_engine.py --dry-run    # what would be built (no TensorRT needed)
```
Needs: TensorRT's Python bindings (`python3-libnvinfer` on JetPack), numpy, and
cuda-python (`pip install cuda-python`) or pycuda for bench_trt.py.

## Same with trtexec
```
{build}
{bench}
```

## Build options (engine_config.json)
- precision: {spec.precision} (builder flags: {', '.join(plan['flags']) or 'none'})
- workspace: {cfg['workspace_bytes'] or "TensorRT's default"}
- 2:4 sparsity: {'on' if cfg['sparsity'] else 'off'}
- DLA core: {cfg['dla_core'] if cfg['dla_core'] is not None else 'none (GPU)'}{' with GPU fallback' if cfg['dla_core'] is not None else ''}
- optimization profiles:
{prof_lines}
## Engine here
{engine_note}
{(chr(10) + '## Warnings' + chr(10) + warn) if warn else ''}"""


def lower(target, model, spec: LowerSpec, out_dir: Path) -> LowerResult:
    from edgec.compiler.model import ModelHandle
    from edgec.runtimes.tensorrt_runner import NoGPUError

    if spec.precision not in target.supported_precisions:
        raise ConfigError(f"precision {spec.precision} is not supported by jetson "
                          f"({', '.join(target.supported_precisions)})")
    opts = _options(spec)
    availability = target.engine_availability()
    if opts["engine"] and availability is not None:
        if "not installed" in availability:
            raise MissingDependencyError("tensorrt", "tensorrt",
                                         "--engine builds the engine here and needs a CUDA GPU; without --engine "
                                         "the bundle's build_engine.py builds it on the device")
        raise NoGPUError("drop --engine: the bundle's build_engine.py builds the engine on the Jetson")
    out_dir.mkdir(parents=True, exist_ok=True)
    passes: list[dict[str, Any]] = []
    warnings: list[str] = []
    profiles, dynamic = prof.resolve(spec.float_model, spec.input_profiles)

    quantized = spec.precision in ("int8", "best")
    qdq_info: dict[str, Any] = {}
    gate: dict[str, Any] = {}
    if quantized:
        proto, qdq_info, gate = _qdq_model(model, spec, target)
        passes.append({"name": "trt-legalize-qdq", "config": qdq_info["legalize"]})
        warnings += [n for n in qdq_info["check"]["notes"] if "residual Add" in n]
        if gate.get("accepted_below_bound"):
            warnings.append(f"accepted with --accept-low-accuracy: {gate['accepted_below_bound']}")
    else:
        proto = (spec.float_model.proto if spec.float_model is not None else model.proto)
    if dynamic:
        proto = prof.make_dynamic(proto, dynamic)
        passes.append({"name": "trt-dynamic-dims", "config": {n: {str(a): d for a, d in dims.items()}
                                                               for n, dims in sorted(dynamic.items())}})
    data = proto.SerializeToString(deterministic=True)
    handle = ModelHandle.from_onnx(proto, model.source_path, model.source_sha256)
    if dynamic:
        prof.check_runs_at(data, handle.inputs, profiles)
    (out_dir / MODEL_FILE).write_bytes(data)

    sp_rows = sparsity.sparsity_report(proto)
    sp_info, sp_warn = sparsity.summarize(sp_rows, opts["sparsity"])
    warnings += sp_warn

    arrays, ref_info = _reference(spec, proto if quantized else None)
    write_npz(out_dir / REFERENCE_FILE, arrays)
    min_cos = te.MIN_COSINE[spec.precision]
    if quantized and "qdq_onnxruntime_cosine_min" in ref_info:
        min_cos = round(max(0.5, min(min_cos, ref_info["qdq_onnxruntime_cosine_min"] - 0.01)), 4)

    timing_name = Path(opts["timing_cache"]).name if opts["timing_cache"] else TIMING_CACHE
    cfg = {
        "schema": te.ENGINE_CONFIG_SCHEMA,
        "target": target.name,
        "precision": spec.precision,
        "onnx": MODEL_FILE,
        "engine": ENGINE_FILE,
        "explicit_quantization": quantized,
        "workspace_bytes": opts["workspace"],
        "sparsity": opts["sparsity"],
        "dla_core": opts["dla_core"],
        "gpu_fallback": True,
        "profiles": profiles,
        "timing_cache": timing_name,
        "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in handle.inputs],
        "outputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in handle.outputs],
        "reference": REFERENCE_FILE,
        "min_cosine": min_cos,
        "tensorrt_min_version": "8.6",
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    for rel, src in engine_package_files().items():
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out_dir / rel)
    for script, tmpl in (("build_engine.py", "build_engine.py.in"), ("bench_trt.py", "bench_trt.py.in")):
        (out_dir / script).write_text((TEMPLATES / tmpl).read_text())
        (out_dir / script).chmod(0o755)
    plan = te.build_plan(cfg, ".")
    plan_rel = dict(plan, timing_cache=timing_name)

    engine_info = None
    if opts["engine"]:
        local = dict(te.build_plan(cfg, out_dir))
        local["timing_cache"] = str(_local_timing_cache(opts["timing_cache"]))
        if spec.progress:
            spec.progress.message("building the TensorRT engine")
        try:
            engine_info = te.build_engine(local, log=(spec.progress.message if spec.progress else None))
        except te.EngineError as exc:
            raise ConfigError(str(exc)) from None
        engine_note = (f"`model.engine` was built on this machine with TensorRT {engine_info['tensorrt']}; it runs "
                       "only on this GPU model: rebuild on the Jetson with build_engine.py.")
    else:
        engine_note = ("No engine was built on the build machine"
                       + (f" ({availability})." if availability else " (pass --engine to build one here)."))
    (out_dir / "README.md").write_text(_readme(cfg, plan_rel, spec, engine_note, warnings))

    artifacts = [
        Artifact(MODEL_FILE, "onnx-qdq" if quantized else "onnx", "model"),
        Artifact(CONFIG_FILE, "json", "harness"),
        Artifact("build_engine.py", "python", "harness"),
        Artifact("bench_trt.py", "python", "harness"),
        *(Artifact(rel, "python", "harness") for rel in engine_package_files()),
        Artifact(REFERENCE_FILE, "npz", "reference"),
        Artifact("README.md", "markdown", "doc"),
    ]
    if engine_info is not None:
        artifacts.append(Artifact(ENGINE_FILE, "tensorrt-engine", "engine"))
    measured = ("onnxruntime on the Q/DQ ONNX (model.onnx): the TensorRT engine itself is checked on the device by "
                "bench_trt.py against reference/io.npz") if quantized else (
                "onnxruntime on the float ONNX (model.onnx): the "
                f"{spec.precision} TensorRT engine is checked on the device by bench_trt.py")
    if engine_info is not None:
        measured = "TensorRT engine built here (model.engine)"
    manifest = {
        "onnx": MODEL_FILE,
        "engine": ENGINE_FILE,
        "engine_built": engine_info is not None,
        "engine_config": CONFIG_FILE,
        "builder_flags": plan["flags"],
        "explicit_quantization": quantized,
        "profiles": profiles,
        "dla_core": opts["dla_core"],
        "workspace_bytes": opts["workspace"],
        "timing_cache": timing_name,
        "sparsity": {k: v for k, v in sp_info.items() if k != "weights"},
        "reference": ref_info,
        "trtexec": te.trtexec_build_command(plan_rel),
        "tensorrt_min_version": "8.6",
    }
    if quantized:
        manifest["qdq"] = {"legalize": qdq_info["legalize"], "per_channel_weights": len(
            qdq_info["check"]["per_channel_weights"]), "quantized_nodes": qdq_info["check"]["quantized_nodes"],
            "float_weighted_nodes": qdq_info["check"]["float_weighted_nodes"]}
    report = {
        "accuracy_measured_with": measured,
        "engine": engine_info,
        "engine_availability": availability,
        "sparsity": sp_info,
        "warnings": warnings,
    }
    if quantized:
        report["int8_gate"] = gate
        report["qdq_notes"] = qdq_info["check"]["notes"]
    return LowerResult(artifacts=artifacts, inputs=handle.inputs, outputs=handle.outputs,
                       manifest=manifest, report=report, passes=passes)
