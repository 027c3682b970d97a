"""Build plans from ``engine_config.json`` and the trtexec lines for them (pure Python, no TensorRT)."""

from __future__ import annotations

import json
from pathlib import Path


ENGINE_CONFIG_SCHEMA = "edgec.trt-engine-config/1"
BENCH_SCHEMA = "edgec.bench/1"
NO_TENSORRT_EXIT = 3
CHECK_FAILED_EXIT = 2
# Default minimum cosine similarity between engine outputs and the float reference.
MIN_COSINE = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.98, "best": 0.98}


class EngineError(RuntimeError):
    """A TensorRT build or run failure, with a one-line message naming the fix."""


class TensorRTMissing(EngineError):
    """TensorRT (or the CUDA binding) cannot be imported here."""


def load_config(path) -> dict:
    """Read ``engine_config.json`` and check its schema."""
    path = Path(path)
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise EngineError(f"{path} not found: run from the bundle folder or pass --config") from None
    if cfg.get("schema") != ENGINE_CONFIG_SCHEMA:
        raise EngineError(f"{path} has schema {cfg.get('schema')!r}, expected {ENGINE_CONFIG_SCHEMA!r}")
    return cfg


def parse_shape(text: str) -> tuple:
    """``1x3x224x224`` -> (1, 3, 224, 224)."""
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise EngineError(f"bad shape {text!r}: write dimensions joined by 'x', e.g. 1x3x224x224") from None
    if not dims or any(d <= 0 for d in dims):
        raise EngineError(f"bad shape {text!r}: every dimension must be a positive integer")
    return dims


def parse_shape_arg(text: str) -> tuple:
    """``name=1x3x224x224`` or ``name=MIN:OPT:MAX`` -> (name, (min, opt, max))."""
    name, sep, spec = text.rpartition("=")
    if not sep or not name:
        raise EngineError(f"bad --shape {text!r}: write NAME=1x3x224x224 or NAME=MIN:OPT:MAX")
    parts = [parse_shape(p) for p in spec.split(":")]
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        raise EngineError(f"bad --shape {text!r}: give one shape or three (min:opt:max)")
    if len({len(p) for p in parts}) != 1:
        raise EngineError(f"bad --shape {text!r}: min, opt and max must have the same rank")
    lo, opt, hi = parts
    if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
        raise EngineError(f"bad --shape {text!r}: need min <= opt <= max in every dimension")
    return name, (lo, opt, hi)


def shape_str(shape) -> str:
    return "x".join(str(int(d)) for d in shape)


def builder_flags(precision: str, sparsity: bool = False, dla_core=None, gpu_fallback: bool = True) -> list:
    """Names of the ``trt.BuilderFlag`` members a precision/option set needs."""
    flags = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8"], "best": ["FP16", "INT8"]}.get(precision)
    if flags is None:
        raise EngineError(f"unknown precision {precision!r} (fp32, fp16, int8, best)")
    flags = list(flags)
    if sparsity:
        flags.append("SPARSE_WEIGHTS")
    if dla_core is not None and gpu_fallback:
        flags.append("GPU_FALLBACK")
    return flags


def build_plan(cfg: dict, bundle_dir=".", onnx=None, engine=None, timing_cache=None, precision=None,
               workspace=None, sparsity=None, dla_core=None, profiles=None) -> dict:
    """Resolve the engine config and command-line overrides into one build plan."""
    bundle_dir = Path(bundle_dir)
    precision = precision or cfg["precision"]
    sparsity = cfg.get("sparsity", False) if sparsity is None else sparsity
    dla = cfg.get("dla_core") if dla_core is None else (None if dla_core < 0 else dla_core)
    if dla is not None and precision == "fp32":
        raise EngineError("DLA cores run fp16 or int8 only: use --precision fp16/int8/best or drop --dla-core")
    prof = {k: {kk: list(vv) for kk, vv in v.items()} for k, v in cfg.get("profiles", {}).items()}
    specs = {s["name"]: s["shape"] for s in cfg.get("inputs", [])}
    for name, (lo, opt, hi) in (profiles or {}).items():
        if specs and name not in specs:
            raise EngineError(f"--shape names unknown input '{name}' (the model takes {sorted(specs)})")
        if name in specs:
            want = specs[name]
            if len(want) != len(opt):
                raise EngineError(f"--shape {name}: rank {len(opt)}, but input '{name}' has shape {want}")
            for i, d in enumerate(want):
                if isinstance(d, int) and not (lo[i] == opt[i] == hi[i] == d):
                    raise EngineError(f"--shape {name}: axis {i} is fixed to {d} in the model ({want})")
        prof[name] = {"min": list(lo), "opt": list(opt), "max": list(hi)}
    cache = timing_cache if timing_cache is not None else cfg.get("timing_cache")

    def rel(p):
        return None if p is None else str(p if Path(p).is_absolute() else bundle_dir / p)

    return {
        "onnx": rel(onnx or cfg["onnx"]),
        "engine": rel(engine or cfg["engine"]),
        "precision": precision,
        "flags": builder_flags(precision, sparsity, dla, cfg.get("gpu_fallback", True)),
        "workspace_bytes": workspace if workspace is not None else cfg.get("workspace_bytes"),
        "sparsity": bool(sparsity),
        "dla_core": dla,
        "gpu_fallback": bool(cfg.get("gpu_fallback", True)) if dla is not None else False,
        "profiles": prof,
        "timing_cache": rel(cache) if cache else None,
        "explicit_quantization": bool(cfg.get("explicit_quantization", False)),
    }


def trtexec_build_command(plan: dict, onnx="model.onnx", engine="model.engine") -> str:
    """The ``trtexec`` line that builds the same engine as `build_engine` with ``plan``."""
    args = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}"]
    flags = plan["flags"]
    if "FP16" in flags:
        args.append("--fp16")
    if "INT8" in flags:
        args.append("--int8")
    if plan.get("workspace_bytes"):
        args.append(f"--memPoolSize=workspace:{plan['workspace_bytes'] / 2**20:g}")
    if plan.get("sparsity"):
        args.append("--sparsity=enable")
    if plan.get("dla_core") is not None:
        args.append(f"--useDLACore={plan['dla_core']}")
        if plan.get("gpu_fallback"):
            args.append("--allowGPUFallback")
    profiles = plan.get("profiles") or {}
    if profiles:
        for key, flag in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes")):
            args.append(flag + "=" + ",".join(f"{n}:{shape_str(p[key])}" for n, p in sorted(profiles.items())))
    if plan.get("timing_cache"):
        args.append(f"--timingCacheFile={Path(plan['timing_cache']).name}")
    args.append("--skipInference")
    return " ".join(args)


def trtexec_bench_command(plan: dict, engine="model.engine", iters=100) -> str:
    args = ["trtexec", f"--loadEngine={engine}"]
    profiles = plan.get("profiles") or {}
    if profiles:
        args.append("--shapes=" + ",".join(f"{n}:{shape_str(p['opt'])}" for n, p in sorted(profiles.items())))
    if plan.get("dla_core") is not None:
        args.append(f"--useDLACore={plan['dla_core']}")
    args += [f"--iterations={iters}", "--avgRuns=1", "--useSpinWait"]
    return " ".join(args)
