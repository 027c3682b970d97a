"""TensorRT and CUDA, imported lazily: building engines and running them."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from .plan import EngineError, TensorRTMissing


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
