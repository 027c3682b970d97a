"""TensorRTRunner without TensorRT, and GPU tests that skip where there is none."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .trt_models import handle, spec_for
from edgec.errors import MissingDependencyError
from edgec.runtimes import harness
from edgec.runtimes.registry import create_runner
from edgec.targets.registry import get_target
from edgec.targets.tensorrt import trt_engine as te

GPU_REASON = "needs a CUDA GPU and TensorRT (not available on this machine)"
has_engine_support = get_target("jetson").engine_availability() is None


def manifest_for(res, model, precision):
    h = handle(model)
    return {"runner": "tensorrt", "target": "jetson", "precision": precision,
            "artifact": {"path": "model.onnx", "kind": res.model_artifact.kind},
            "model_inputs": [x.to_json() for x in h.inputs], "model_outputs": [x.to_json() for x in h.outputs],
            "inputs": [x.to_json() for x in res.inputs], "outputs": [x.to_json() for x in res.outputs],
            "target_info": res.manifest}


@pytest.fixture
def int8_bundle(tmp_path, cnn_qdq, request):
    m, q, s = cnn_qdq
    opts = {"engine": getattr(request, "param", False)}
    res = get_target("jetson").lower(handle(q), spec_for(m, "int8", qdq=q, samples=s, options=opts), tmp_path)
    return tmp_path, manifest_for(res, m, "int8"), m, s


@pytest.mark.skipif(has_engine_support, reason="TensorRT and a GPU are present")
def test_runner_without_tensorrt_names_the_fix(int8_bundle):
    bundle, manifest, _, s = int8_bundle
    runner = create_runner("tensorrt", bundle, manifest)
    assert runner.engine_path == bundle / "model.engine"
    with pytest.raises(MissingDependencyError) as exc:
        runner.infer(s[0])
    msg = str(exc.value)
    assert "tensorrt is not installed: pip install 'edgec[tensorrt]'" in msg and "GPU" in msg


@pytest.mark.gpu
@pytest.mark.skipif(not has_engine_support, reason=GPU_REASON)
@pytest.mark.parametrize("int8_bundle", [True], indirect=True)
def test_engine_built_here_and_benched(int8_bundle):
    bundle, manifest, m, s = int8_bundle
    assert (bundle / "model.engine").exists()
    with create_runner("tensorrt", bundle, manifest) as runner:
        from edgec.targets.tensorrt import accuracy

        want = accuracy.run_model(m, s[:4])
        got = [runner.infer(x) for x in s[:4]]
        assert te.check_outputs(got, want, 0.98)["passed"]
        result = harness.bench(runner, iters=20, warmup=5)
    harness.validate_bench_result(result)
    assert result["runtime"]["name"] == "tensorrt"


@pytest.mark.gpu
@pytest.mark.skipif(not has_engine_support, reason=GPU_REASON)
def test_bundle_scripts_on_gpu(int8_bundle):
    import subprocess
    import sys

    bundle, _, _, _ = int8_bundle
    p = subprocess.run([sys.executable, str(bundle / "bench_trt.py"), "--build", "--iters", "20"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    harness.validate_bench_result(result)
    assert result["extra"]["reference_check"]["passed"]
    assert (bundle / "timing.cache").exists()


def test_reference_file_roundtrip(tmp_path):
    from edgec.targets.tensorrt.bundle import write_npz

    write_npz(tmp_path / "io.npz", {"input/0/x": np.ones((1, 2), np.float32), "output/0/onnx::y_1": np.zeros(3),
                                    "input/1/x": np.full((1, 2), 2, np.float32), "output/1/onnx::y_1": np.ones(3)})
    ref = te.load_reference(tmp_path / "io.npz")
    assert [sorted(i) for i, _ in ref] == [["x"], ["x"]] and list(ref[1][1]) == ["onnx::y_1"]
    assert ref[1][0]["x"][0, 0] == 2
