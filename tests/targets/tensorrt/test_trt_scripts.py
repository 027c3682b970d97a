"""The bundle's build_engine.py / bench_trt.py without TensorRT: argument parsing, plans,
the bench schema, reference checks; and build_engine() against a recording fake TensorRT."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pytest

from .trt_models import cnn, handle, samples_for, spec_for
from edgec.compiler.model import TensorSpec
from edgec.runtimes import harness
from edgec.targets.registry import get_target
from edgec.targets.tensorrt import trt_engine as te


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, cnn_qdq):
    m, q, s = cnn_qdq
    static = tmp_path_factory.mktemp("static")
    spec = spec_for(m, "int8", qdq=q, samples=s, options={"sparsity": True})
    res = get_target("jetson").lower(handle(q), spec, static)
    dyn = tmp_path_factory.mktemp("dynamic")
    m2 = cnn(batch=2)
    spec = spec_for(m2, "fp16", samples=samples_for(m2, 4),
                    input_profiles={"x": ((1, 3, 8, 8), (2, 3, 8, 8), (8, 3, 8, 8))})
    spec.float_model.meta["source_inputs"] = [TensorSpec("x", ("batch", 3, 8, 8), "float32").to_json()]
    get_target("jetson").lower(handle(m2), spec, dyn)
    return static, dyn, res


def run(script, *args):
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=60)


def test_help_without_tensorrt(bundles):
    static, _, _ = bundles
    for script, word in (("build_engine.py", "--dla-core"), ("bench_trt.py", "--iters")):
        p = run(static / script, "--help")
        assert p.returncode == 0 and word in p.stdout and "--dry-run" in p.stdout


def test_build_dry_run_and_trtexec(bundles):
    static, dyn, res = bundles
    plan = json.loads(run(static / "build_engine.py", "--dry-run").stdout)
    assert plan["precision"] == "int8" and plan["flags"] == ["INT8", "SPARSE_WEIGHTS"]
    assert plan["onnx"] == str(static / "model.onnx") and plan["timing_cache"] == str(static / "timing.cache")
    assert run(static / "build_engine.py", "--print-trtexec").stdout.strip() == res.manifest["trtexec"]
    p = run(dyn / "build_engine.py", "--dry-run", "--precision", "fp32", "--workspace", "2G", "--no-sparsity",
            "--shape", "x=1x3x8x8:4x3x8x8:16x3x8x8", "--timing-cache", "/tmp/t.cache")
    plan = json.loads(p.stdout)
    assert plan["flags"] == [] and plan["workspace_bytes"] == 2 * 2**30 and plan["timing_cache"] == "/tmp/t.cache"
    assert plan["profiles"] == {"x": {"min": [1, 3, 8, 8], "opt": [4, 3, 8, 8], "max": [16, 3, 8, 8]}}


def test_build_argument_errors(bundles):
    static, dyn, _ = bundles
    p = run(dyn / "build_engine.py", "--dry-run", "--precision", "int8")
    assert p.returncode == 1 and "Q/DQ model.onnx" in p.stderr
    p = run(static / "build_engine.py", "--dry-run", "--precision", "fp32", "--dla-core", "0")
    assert p.returncode == 1 and "DLA cores run fp16 or int8 only" in p.stderr
    p = run(static / "build_engine.py", "--dry-run", "--shape", "x=1x3")
    assert p.returncode == 1 and "rank 2, but input 'x' has shape [1, 3, 8, 8]" in p.stderr
    p = run(dyn / "build_engine.py", "--dry-run", "--shape", "x=1x3x8x8:2x3x8x8:4x3x9x8")
    assert p.returncode == 1 and "axis 2 is fixed to 8" in p.stderr
    p = run(dyn / "build_engine.py", "--dry-run", "--shape", "y=1x3")
    assert p.returncode == 1 and "unknown input 'y'" in p.stderr
    p = run(static / "build_engine.py", "--precision", "int4")
    assert p.returncode == 2 and "invalid choice" in p.stderr
    p = run(static / "build_engine.py", "--config", str(static / "nope.json"), "--dry-run")
    assert p.returncode == 1 and "not found" in p.stderr


def test_missing_tensorrt_is_one_clear_line(bundles):
    static, _, _ = bundles
    for script in ("build_engine.py", "bench_trt.py"):
        p = run(static / script)
        assert p.returncode == te.NO_TENSORRT_EXIT
        assert p.stderr.count("\n") == 1 and "tensorrt is not importable" in p.stderr and "JetPack" in p.stderr


def test_bench_dry_run(bundles):
    static, dyn, _ = bundles
    plan = json.loads(run(dyn / "bench_trt.py", "--dry-run", "--iters", "7").stdout)
    assert plan["shapes"] == {"x": [2, 3, 8, 8]} and plan["iters"] == 7
    assert plan["reference"] == str(dyn / "reference" / "io.npz") and plan["min_cosine"] == 0.999
    plan = json.loads(run(dyn / "bench_trt.py", "--dry-run", "--shape", "x=8x3x8x8", "--no-check").stdout)
    assert plan["shapes"] == {"x": [8, 3, 8, 8]} and plan["reference"] is None
    p = run(static / "bench_trt.py", "--dry-run", "--iters", "0")
    assert p.returncode == 1 and "--iters must be >= 1" in p.stderr
    p = run(static / "bench_trt.py", "--warmup", "-1")
    assert p.returncode == 2


def test_bench_result_follows_edgec_schema():
    times = [0.001, 0.002, 0.004, 0.003]
    r = te.bench_result(runtime_version="10.3.0", target="jetson", precision="int8", device="host", warmup=2,
                        iters=4, batch=8, times_s=times, extra={"gpu_compute_ms": te.latency_summary(times)})
    harness.validate_bench_result(r)
    assert tuple(r) == tuple(sorted(harness.BENCH_KEYS, key=list(r).index))
    assert set(r) == set(harness.BENCH_KEYS)
    assert r["latency_ms"] == harness.latency_summary(times)
    assert r["throughput_per_s"] == pytest.approx(8 * 1e3 / 2.5)
    assert r["runner"] == "tensorrt" and r["runtime"] == {"name": "tensorrt", "version": "10.3.0"}
    assert json.loads(json.dumps(r)) == r


def test_check_outputs():
    ref = [{"y": np.array([1.0, 2.0, 3.0])}]
    ok = te.check_outputs([{"y": np.array([1.0, 2.0, 3.01])}], ref, 0.999)
    assert ok["passed"] and ok["outputs"]["y"]["max_abs_err"] == pytest.approx(0.01)
    bad = te.check_outputs([{"y": np.array([3.0, 2.0, 1.0])}], ref, 0.999)
    assert not bad["passed"]
    with pytest.raises(te.EngineError, match="no output 'y'"):
        te.check_outputs([{"z": np.zeros(3)}], ref, 0.9)


# ---- build_engine() against a fake TensorRT that records the API calls ----------------
class _Obj(types.SimpleNamespace):
    pass


def fake_trt(version="10.3.0", dynamic=True, parse_ok=True, dla_cores=2):
    calls = []
    flag_names = ["FP16", "INT8", "SPARSE_WEIGHTS", "GPU_FALLBACK"]
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.BuilderFlag = _Obj(**{n: n for n in flag_names})
    trt.MemoryPoolType = _Obj(WORKSPACE="WORKSPACE")
    trt.DeviceType = _Obj(DLA="DLA", GPU="GPU")
    trt.NetworkDefinitionCreationFlag = _Obj(EXPLICIT_BATCH=0)
    trt.Logger = type("Logger", (), {"WARNING": 1, "__init__": lambda self, *a: None})

    class Config:
        def set_flag(self, f): calls.append(("flag", f))
        def set_memory_pool_limit(self, pool, n): calls.append(("pool", pool, n))
        def add_optimization_profile(self, p): calls.append(("profile", p.shapes))
        def create_timing_cache(self, blob): calls.append(("cache-in", bytes(blob))); return "cache"
        def set_timing_cache(self, c, ignore_mismatch): return True
        def get_timing_cache(self): return _Obj(serialize=lambda: b"CACHE")
        def __setattr__(self, k, v): calls.append(("set", k, v))

    class Profile:
        def __init__(self): self.shapes = {}
        def set_shape(self, name, lo, opt, hi): self.shapes[name] = (lo, opt, hi)

    shape = (-1, 3, 8, 8) if dynamic else (1, 3, 8, 8)
    network = _Obj(num_inputs=1, get_input=lambda i: _Obj(name="x", shape=shape))

    class Builder:
        num_DLA_cores = dla_cores
        def __init__(self, logger): pass
        def create_network(self, flags): calls.append(("network", flags)); return network
        def create_builder_config(self): return Config()
        def create_optimization_profile(self): return Profile()
        def build_serialized_network(self, net, cfg): return b"ENGINE"

    class Parser:
        def __init__(self, net, logger): pass
        def parse_from_file(self, path): calls.append(("parse", path)); return parse_ok
        num_errors = 1
        def get_error(self, i):
            return _Obj(node_name=lambda: "uniq", node_operator=lambda: "Unique",
                        desc=lambda: "No importer registered for op: Unique")

    trt.Builder, trt.OnnxParser = Builder, Parser
    return trt, calls


def plan_for(tmp_path, **kw):
    cfg = {"schema": te.ENGINE_CONFIG_SCHEMA, "precision": "best", "onnx": "model.onnx", "engine": "model.engine",
           "workspace_bytes": 2**30, "sparsity": True, "dla_core": 0, "gpu_fallback": True,
           "profiles": {"x": {"min": [1, 3, 8, 8], "opt": [2, 3, 8, 8], "max": [4, 3, 8, 8]}},
           "timing_cache": "timing.cache", "explicit_quantization": True}
    cfg.update(kw)
    return te.build_plan(cfg, tmp_path)


def test_build_engine_applies_every_option(tmp_path):
    trt, calls = fake_trt()
    (tmp_path / "timing.cache").write_bytes(b"OLD")
    info = te.build_engine(plan_for(tmp_path), trt=trt, log=lambda m: None)
    assert (tmp_path / "model.engine").read_bytes() == b"ENGINE"
    assert (tmp_path / "timing.cache").read_bytes() == b"CACHE"  # kept for the next build
    assert ("network", 0) in calls  # no EXPLICIT_BATCH on TensorRT 10
    assert [c[1] for c in calls if c[0] == "flag"] == ["FP16", "INT8", "SPARSE_WEIGHTS", "GPU_FALLBACK"]
    assert ("pool", "WORKSPACE", 2**30) in calls
    assert ("set", "default_device_type", "DLA") in calls and ("set", "DLA_core", 0) in calls
    assert ("profile", {"x": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))}) in calls
    assert ("cache-in", b"OLD") in calls
    assert info["tensorrt"] == "10.3.0"


def test_build_engine_on_tensorrt_86_uses_explicit_batch(tmp_path):
    trt, calls = fake_trt("8.6.2")
    te.build_engine(plan_for(tmp_path), trt=trt, log=lambda m: None)
    assert ("network", 1) in calls


def test_build_engine_errors(tmp_path):
    trt, _ = fake_trt()
    with pytest.raises(te.EngineError, match="no optimization profile: pass --shape x=MIN:OPT:MAX, e.g. x=1x3x8x8:8x3x8x8:8x3x8x8"):
        te.build_engine(plan_for(tmp_path, profiles={}), trt=trt)
    with pytest.raises(te.EngineError, match="node 'uniq' \\(Unique\\): No importer"):
        te.build_engine(plan_for(tmp_path), trt=fake_trt(parse_ok=False)[0])
    with pytest.raises(te.EngineError, match="has 0 DLA core"):
        te.build_engine(plan_for(tmp_path), trt=fake_trt(dla_cores=0)[0])
    with pytest.raises(te.EngineError, match="too old"):
        te.build_engine(plan_for(tmp_path), trt=fake_trt("8.4.1")[0])
    trt11, _ = fake_trt("11.0.0")
    del trt11.BuilderFlag.FP16
    with pytest.raises(te.EngineError, match="no builder flag FP16"):
        te.build_engine(plan_for(tmp_path), trt=trt11)
