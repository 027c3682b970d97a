"""TensorRT engine building and running, shared by edgec and the bundle's scripts.

This module is the single source of the on-device logic: ``edgec`` imports it (the
`TensorRTRunner`, ``edgec build --target jetson --engine``), and the bundle's
``build_engine.py`` / ``bench_trt.py`` are generated from it (its source is pasted
into ``templates/*.py.in``), so the scripts run on a Jetson with nothing but TensorRT's
Python API, numpy and the CUDA binding TensorRT's samples use (cuda-python; pycuda as a
fallback). Rules that keep that possible:

* import only the standard library and numpy at module level; ``tensorrt`` and the CUDA
  binding are imported lazily, after argument parsing (``--help`` and ``--dry-run``
  work without them);
* no ``edgec`` imports;
* one API for TensorRT 8.6 and 10.x: named I/O tensors (``set_input_shape``,
  ``set_tensor_address``, ``execute_async_v3``, all present since 8.5), the memory-pool
  workspace limit, ``build_serialized_network``; ``EXPLICIT_BATCH`` only before 10;
  precision builder flags only where the TensorRT version still has them.

The bench output follows edgec's ``edgec.bench/1`` schema (see
``edgec/runtimes/harness.py``); `latency_summary` repeats the harness's statistics.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

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


# ---------------------------------------------------------------------------------
# Configuration (pure Python: usable without TensorRT)
# ---------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------
# Bench result (edgec.bench/1) and reference checks (pure numpy)
# ---------------------------------------------------------------------------------
def latency_summary(times_s) -> dict:
    """Latency statistics in ms, as ``edgec.runtimes.harness.latency_summary``."""
    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99)), "min": float(ms.min()), "max": float(ms.max())}


def peak_rss_bytes():
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError, ValueError):
        return None
    return int(r if sys.platform == "darwin" else r * 1024)


def bench_result(*, runtime_version, target, precision, device, warmup, iters, batch, times_s,
                 extra=None, runner="tensorrt", threads=None) -> dict:
    """A bench result in the ``edgec.bench/1`` schema."""
    lat = latency_summary(times_s)
    return {
        "schema": BENCH_SCHEMA,
        "runner": runner,
        "runtime": {"name": "tensorrt", "version": runtime_version},
        "target": target,
        "precision": precision,
        "device": device,
        "threads": threads,
        "warmup": int(warmup),
        "iters": int(iters),
        "batch": int(batch),
        "latency_ms": lat,
        "throughput_per_s": batch * 1e3 / lat["mean"] if lat["mean"] > 0 else float("inf"),
        "peak_rss_bytes": peak_rss_bytes(),
        "extra": dict(extra or {}),
    }


def load_reference(path) -> list:
    """``reference/io.npz`` -> ``[(inputs, outputs)]`` per sample.

    Keys are ``input/<i>/<name>`` and ``output/<i>/<name>``; ``<i>`` is the sample index.
    """
    samples: dict = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            kind, _, rest = key.partition("/")
            idx, _, name = rest.partition("/")
            if kind not in ("input", "output") or not idx.isdigit():
                continue
            samples.setdefault(int(idx), ({}, {}))[0 if kind == "input" else 1][name] = z[key]
    return [samples[i] for i in sorted(samples)]


def cosine(a, b) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def check_outputs(got: list, want: list, min_cosine: float) -> dict:
    """Compare per-sample outputs (lists of ``{name: array}``) against the reference."""
    max_abs, cos = {}, {}
    for g, w in zip(got, want):
        for name, ref in w.items():
            if name not in g:
                raise EngineError(f"the engine has no output '{name}' (it has {sorted(g)})")
            out = np.asarray(g[name], np.float64).reshape(np.shape(ref))
            max_abs[name] = max(max_abs.get(name, 0.0), float(np.abs(out - ref).max(initial=0.0)))
            cos.setdefault(name, []).append(cosine(out, ref))
    per_out = {n: {"max_abs_err": max_abs[n], "cosine_min": float(min(c))} for n, c in cos.items()}
    worst = min((v["cosine_min"] for v in per_out.values()), default=1.0)
    return {"samples": len(want), "min_cosine": min_cosine, "passed": bool(worst >= min_cosine), "outputs": per_out}


# ---------------------------------------------------------------------------------
# TensorRT and CUDA (lazy)
# ---------------------------------------------------------------------------------
def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTMissing(
            f"tensorrt is not importable ({exc}): on a Jetson it comes with JetPack "
            "(sudo apt install python3-libnvinfer); elsewhere pip install tensorrt; "
            "engines need an NVIDIA GPU") from None
    return trt


def trt_major(trt) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:
        return 0


class _Cuda:
    """Device memory and streams over cuda-python (TensorRT's samples) or pycuda."""

    def __init__(self):
        self.kind = None
        try:
            try:
                from cuda.bindings import runtime as cudart  # cuda-python >= 12.8
            except ImportError:
                from cuda import cudart  # cuda-python 11.x/12.x (TensorRT 8.6/10 samples)
            self.rt = cudart
            self.kind = "cuda-python"
        except ImportError:
            try:
                import pycuda.autoinit  # noqa: F401
                import pycuda.driver as drv
            except ImportError:
                raise TensorRTMissing("no CUDA binding: pip install cuda-python (or pycuda)") from None
            self.drv = drv
            self.kind = "pycuda"
        self.stream = self._new_stream()

    def _check(self, res):
        err = res[0] if isinstance(res, tuple) else res
        if int(err) != 0:
            raise EngineError(f"CUDA error {err}")
        return res[1] if isinstance(res, tuple) and len(res) > 1 else None

    def _new_stream(self):
        if self.kind == "pycuda":
            return self.drv.Stream()
        return self._check(self.rt.cudaStreamCreate())

    @property
    def stream_handle(self) -> int:
        return self.stream.handle if self.kind == "pycuda" else int(self.stream)

    def malloc(self, nbytes: int):
        nbytes = max(int(nbytes), 1)
        if self.kind == "pycuda":
            return self.drv.mem_alloc(nbytes)
        return self._check(self.rt.cudaMalloc(nbytes))

    def ptr(self, buf) -> int:
        return int(buf)

    def free(self, buf) -> None:
        if self.kind == "pycuda":
            buf.free()
        else:
            self.rt.cudaFree(buf)

    def htod(self, buf, arr: np.ndarray) -> None:
        if self.kind == "pycuda":
            self.drv.memcpy_htod_async(buf, arr, self.stream)
        else:
            self._check(self.rt.cudaMemcpyAsync(buf, arr.ctypes.data, arr.nbytes,
                                                self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))

    def dtoh(self, arr: np.ndarray, buf) -> None:
        if self.kind == "pycuda":
            self.drv.memcpy_dtoh_async(arr, buf, self.stream)
        else:
            self._check(self.rt.cudaMemcpyAsync(arr.ctypes.data, buf, arr.nbytes,
                                                self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))

    def sync(self) -> None:
        if self.kind == "pycuda":
            self.stream.synchronize()
        else:
            self._check(self.rt.cudaStreamSynchronize(self.stream))

    def device_name(self):
        try:
            if self.kind == "pycuda":
                return self.drv.Context.get_device().name()
            props = self._check(self.rt.cudaGetDeviceProperties(0))
            name = props.name
            return (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).strip("\x00 ")
        except Exception:  # noqa: BLE001 - the name is informative only
            return None


def gpu_available() -> bool:
    """Whether a CUDA GPU can be seen without importing TensorRT (device nodes or nvidia-smi)."""
    if os.environ.get("EDGEC_TRT_NO_GPU"):
        return False
    for dev in ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu", "/dev/nvgpu/igpu0/ctrl"):
        if os.path.exists(dev):
            return True
    return False


def _parser_errors(parser) -> str:
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = None
        for attr in ("node_name", "node"):
            fn = getattr(err, attr, None)
            if fn is not None:
                try:
                    node = fn()
                except Exception:  # noqa: BLE001
                    node = None
                if node not in (None, "", -1):
                    break
        op = getattr(err, "node_operator", lambda: None)()
        where = f"node {node!r}" + (f" ({op})" if op else "") if node not in (None, "", -1) else "model"
        lines.append(f"{where}: {err.desc()}")
    return "; ".join(lines) or "unknown parser error"


def build_engine(plan: dict, log=None, trt=None) -> dict:
    """Build ``plan['onnx']`` into ``plan['engine']``; returns facts about the build."""
    trt = trt or import_tensorrt()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    major = trt_major(trt)
    if major and (major, int(str(trt.__version__).split(".")[1])) < (8, 6):
        raise EngineError(f"TensorRT {trt.__version__} is too old: 8.6 or newer is needed (JetPack 5.1.2+/6)")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    net_flags = 0
    if major < 10 and hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        net_flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(net_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan["onnx"])):
        raise EngineError(f"TensorRT {trt.__version__} cannot parse {plan['onnx']}: {_parser_errors(parser)}")
    config = builder.create_builder_config()
    notes = []
    for flag in plan["flags"]:
        member = getattr(trt.BuilderFlag, flag, None)
        if member is None:
            if flag == "INT8" and plan.get("explicit_quantization"):
                notes.append("INT8 flag absent in this TensorRT: Q/DQ nodes set the precision (strong typing)")
                continue
            raise EngineError(f"TensorRT {trt.__version__} has no builder flag {flag}: "
                              "build with --precision fp32, or use a TensorRT 10.x (JetPack 6)")
        config.set_flag(member)
    if plan.get("workspace_bytes"):
        if hasattr(config, "set_memory_pool_limit"):
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(plan["workspace_bytes"]))
        else:
            config.max_workspace_size = int(plan["workspace_bytes"])
    if plan.get("dla_core") is not None:
        n = getattr(builder, "num_DLA_cores", 0)
        if plan["dla_core"] >= n:
            raise EngineError(f"--dla-core {plan['dla_core']}: this device has {n} DLA core(s) "
                              "(Orin AGX/NX have 2, Orin Nano none): drop --dla-core")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(plan["dla_core"])
    # Optimization profiles: every dynamic input needs one.
    dynamic = []
    for i in range(network.num_inputs):
        t = network.get_input(i)
        if any(d < 0 for d in tuple(t.shape)):
            dynamic.append((t.name, tuple(t.shape)))
    profiles = plan.get("profiles") or {}
    missing = [(n, s) for n, s in dynamic if n not in profiles]
    if missing:
        name, shape = missing[0]
        lo, hi = ("x".join(v if d < 0 else str(d) for d in shape) for v in ("1", "8"))
        raise EngineError(f"input '{name}' has dynamic shape {list(shape)} and no optimization profile: "
                          f"pass --shape {name}=MIN:OPT:MAX, e.g. {name}={lo}:{hi}:{hi}")
    if profiles:
        profile = builder.create_optimization_profile()
        for name, p in profiles.items():
            profile.set_shape(name, tuple(p["min"]), tuple(p["opt"]), tuple(p["max"]))
        config.add_optimization_profile(profile)
    cache_path = plan.get("timing_cache")
    if cache_path:
        blob = Path(cache_path).read_bytes() if Path(cache_path).exists() else b""
        cache = config.create_timing_cache(blob)
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            notes.append(f"timing cache {cache_path} is from another device/TensorRT: starting a new one")
            config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if serialized is None:
        raise EngineError("TensorRT failed to build the engine (see its log above); "
                          "try a larger --workspace or --precision fp16")
    Path(plan["engine"]).parent.mkdir(parents=True, exist_ok=True)
    with open(plan["engine"], "wb") as fh:
        fh.write(serialized)
    if cache_path:
        with open(cache_path, "wb") as fh:
            fh.write(config.get_timing_cache().serialize())
    for n in notes:
        log(f"note: {n}")
    return {"engine": str(plan["engine"]), "tensorrt": str(trt.__version__), "build_seconds": round(seconds, 3),
            "notes": notes}


class EngineSession:
    """A deserialized engine with an execution context and device buffers."""

    def __init__(self, engine_path, trt=None):
        self.trt = trt = trt or import_tensorrt()
        self.cuda = _Cuda()
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise EngineError(f"cannot load {engine_path}: it was built by another TensorRT version or GPU; "
                              "rebuild it on this device with build_engine.py")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self._bufs: dict = {}

    def _buffer(self, name, nbytes):
        buf, size = self._bufs.get(name, (None, 0))
        if buf is None or size < nbytes:
            if buf is not None:
                self.cuda.free(buf)
            buf = self.cuda.malloc(nbytes)
            self._bufs[name] = (buf, nbytes)
        return buf

    def dtype(self, name):
        return np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))

    def set_inputs(self, feeds: dict) -> dict:
        """Copy inputs to the device and bind all tensors; returns host output arrays."""
        for name in self.inputs:
            if name not in feeds:
                raise EngineError(f"input '{name}' is missing (the engine takes {self.inputs})")
            arr = np.ascontiguousarray(feeds[name], dtype=self.dtype(name))
            if not self.context.set_input_shape(name, arr.shape):
                raise EngineError(f"input '{name}' shape {list(arr.shape)} is outside the engine's profile")
            buf = self._buffer(name, arr.nbytes)
            self.cuda.htod(buf, arr)
            self.context.set_tensor_address(name, self.cuda.ptr(buf))
        host = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = np.empty(shape, dtype=self.dtype(name))
            buf = self._buffer(name, out.nbytes)
            self.context.set_tensor_address(name, self.cuda.ptr(buf))
            host[name] = out
        return host

    def execute(self) -> None:
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise EngineError("TensorRT execution failed (see its log)")

    def fetch(self, host: dict) -> dict:
        for name, out in host.items():
            self.cuda.dtoh(out, self._bufs[name][0])
        self.cuda.sync()
        return host

    def run(self, feeds: dict) -> dict:
        host = self.set_inputs(feeds)
        self.execute()
        return self.fetch(host)

    def close(self) -> None:
        for buf, _ in self._bufs.values():
            self.cuda.free(buf)
        self._bufs.clear()


def time_session(session: EngineSession, feeds: dict, iters: int, warmup: int):
    """Per-iteration wall times (copies included) and GPU-only times (enqueue + sync)."""
    for _ in range(warmup):
        session.run(feeds)
    total, compute = [], []
    for _ in range(iters):
        t0 = time.perf_counter()
        host = session.set_inputs(feeds)
        t1 = time.perf_counter()
        session.execute()
        session.cuda.sync()
        t2 = time.perf_counter()
        session.fetch(host)
        t3 = time.perf_counter()
        total.append(t3 - t0)
        compute.append(t2 - t1)
    return total, compute


def synthetic_inputs(specs: list, shapes: dict, seed: int = 0) -> dict:
    """Deterministic inputs from engine_config input specs (like edgec's synthetic feeds)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for s in specs:
        shape = shapes.get(s["name"]) or tuple(d if isinstance(d, int) else 1 for d in s["shape"])
        dt = np.dtype(s["dtype"])
        feeds[s["name"]] = rng.standard_normal(shape).astype(dt) if dt.kind == "f" else np.ones(shape, dt)
    return feeds


# ---------------------------------------------------------------------------------
# Command lines of the bundle scripts
# ---------------------------------------------------------------------------------
def _nonneg_int(text):
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


def _bytes(text):
    t = text.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if mult > 1 else t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 512M, 2G)") from None


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="build_engine.py",
        description="Build the TensorRT engine of this edgec bundle on this device (TensorRT 8.6 or 10.x).")
    p.add_argument("--config", default=None, help="engine_config.json (default: next to this script)")
    p.add_argument("--onnx", default=None, help="ONNX model (default: the config's, model.onnx)")
    p.add_argument("--engine", default=None, help="engine file to write (default: model.engine)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8", "best"), default=None,
                   help="override the bundle's precision (int8/best need the Q/DQ model.onnx of an int8 bundle)")
    p.add_argument("--workspace", type=_bytes, default=None, help="workspace memory pool limit, e.g. 1G")
    sp = p.add_mutually_exclusive_group()
    sp.add_argument("--sparsity", dest="sparsity", action="store_true", default=None,
                    help="let TensorRT use 2:4 sparse weights (SPARSE_WEIGHTS)")
    sp.add_argument("--no-sparsity", dest="sparsity", action="store_false")
    p.add_argument("--dla-core", type=int, default=None, help="build for this DLA core (-1: GPU only)")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=MIN:OPT:MAX",
                   help="optimization profile for a dynamic input (repeatable)")
    p.add_argument("--timing-cache", default=None, help="timing cache file kept between builds")
    p.add_argument("--dry-run", action="store_true", help="print the build plan as JSON; TensorRT is not needed")
    p.add_argument("--print-trtexec", action="store_true", help="print the equivalent trtexec line and exit")
    return p


def bench_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench_trt.py",
        description="Time this bundle's TensorRT engine and check it against the bundled reference outputs; "
                    "prints one edgec.bench/1 JSON object.")
    p.add_argument("--config", default=None, help="engine_config.json (default: next to this script)")
    p.add_argument("--engine", default=None, help="engine file (default: model.engine)")
    p.add_argument("--build", action="store_true", help="build the engine first when it is missing")
    p.add_argument("--iters", type=int, default=100, help="timed iterations (>= 1)")
    p.add_argument("--warmup", type=_nonneg_int, default=10, help="untimed iterations first")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=1x3x224x224",
                   help="input shape for a dynamic input (default: the profile's opt)")
    p.add_argument("--reference", default=None, help="reference inputs/outputs (default: reference/io.npz)")
    p.add_argument("--no-check", action="store_true", help="skip the check against the reference outputs")
    p.add_argument("--min-cosine", type=float, default=None,
                   help="lowest cosine similarity to the float reference that passes (default by precision)")
    p.add_argument("--output", default=None, help="also write the JSON here")
    p.add_argument("--dry-run", action="store_true", help="print what would run as JSON; TensorRT is not needed")
    return p


def _config_path(args, script_dir) -> Path:
    return Path(args.config) if args.config else Path(script_dir) / "engine_config.json"


def build_main(argv=None, script_dir=None) -> int:
    args = build_arg_parser().parse_args(argv)
    script_dir = Path(script_dir or ".")
    try:
        cfg_path = _config_path(args, script_dir)
        cfg = load_config(cfg_path)
        profiles = dict(parse_shape_arg(s) for s in args.shape)
        plan = build_plan(cfg, cfg_path.parent, onnx=args.onnx, engine=args.engine, timing_cache=args.timing_cache,
                          precision=args.precision, workspace=args.workspace, sparsity=args.sparsity,
                          dla_core=args.dla_core, profiles=profiles)
        if plan["precision"] in ("int8", "best") and not cfg.get("explicit_quantization"):
            raise EngineError("int8/best needs the Q/DQ model.onnx of an int8 bundle (TensorRT 10+/11 build "
                              "INT8 only from explicit Q/DQ): rebuild the bundle with edgec --precision int8")
        if args.print_trtexec:
            print(trtexec_build_command(plan, Path(plan["onnx"]).name, Path(plan["engine"]).name))
            return 0
        if args.dry_run:
            print(json.dumps(plan, indent=2, sort_keys=True))
            return 0
        info = build_engine(plan)
    except TensorRTMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return NO_TENSORRT_EXIT
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info, sort_keys=True))
    return 0


def bench_main(argv=None, script_dir=None) -> int:
    args = bench_arg_parser().parse_args(argv)
    script_dir = Path(script_dir or ".")
    try:
        if args.iters < 1:
            raise EngineError("--iters must be >= 1")
        cfg_path = _config_path(args, script_dir)
        cfg = load_config(cfg_path)
        bundle = cfg_path.parent
        plan = build_plan(cfg, bundle, engine=args.engine)
        shapes = {n: p["opt"] for n, p in plan["profiles"].items()}
        for s in args.shape:
            name, (_, opt, _) = parse_shape_arg(s)
            shapes[name] = list(opt)
        ref_path = Path(args.reference) if args.reference else bundle / cfg.get("reference", "reference/io.npz")
        min_cos = args.min_cosine if args.min_cosine is not None else cfg.get(
            "min_cosine", MIN_COSINE.get(plan["precision"], 0.98))
        check = not args.no_check and ref_path.exists()
        if args.dry_run:
            print(json.dumps({"engine": plan["engine"], "iters": args.iters, "warmup": args.warmup,
                              "shapes": shapes, "reference": str(ref_path) if check else None,
                              "min_cosine": min_cos, "build_if_missing": args.build}, indent=2, sort_keys=True))
            return 0
        trt = import_tensorrt()
        if not Path(plan["engine"]).exists():
            if not args.build:
                raise EngineError(f"{plan['engine']} does not exist: run build_engine.py first, or pass --build")
            build_engine(plan, trt=trt)
        session = EngineSession(plan["engine"], trt=trt)
        extra = {"engine": Path(plan["engine"]).name, "gpu": session.cuda.device_name(),
                 "dla_core": plan["dla_core"], "cuda_binding": session.cuda.kind,
                 "latency_includes": "host-to-device copy, execution, device-to-host copy"}
        if check:
            samples = load_reference(ref_path)
            got = [session.run(inp) for inp, _ in samples]
            extra["reference_check"] = check_outputs(got, [out for _, out in samples], min_cos)
        feeds = synthetic_inputs(cfg["inputs"], {k: tuple(v) for k, v in shapes.items()})
        total, compute = time_session(session, feeds, args.iters, args.warmup)
        extra["gpu_compute_ms"] = latency_summary(compute)
        first = next(iter(feeds.values()), None)
        batch = int(first.shape[0]) if first is not None and first.ndim else 1
        result = bench_result(runtime_version=str(trt.__version__), target=cfg.get("target", "jetson"),
                              precision=plan["precision"], device="host", warmup=args.warmup, iters=args.iters,
                              batch=batch, times_s=total, extra=extra)
        session.close()
    except TensorRTMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return NO_TENSORRT_EXIT
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    rc = extra.get("reference_check", {}).get("passed", True)
    if not rc:
        print(f"error: engine outputs differ from the float reference (cosine below {min_cos}); "
              "see extra.reference_check", file=sys.stderr)
        return CHECK_FAILED_EXIT
    return 0
