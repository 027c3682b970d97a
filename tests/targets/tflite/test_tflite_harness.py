"""The bundle's standalone ``bench_tflite.py`` in minimal virtual environments (no edgec, no TF)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgec.runtimes.harness import validate_bench_result

pytestmark = pytest.mark.slow  # TFLite bundles, runtimes pip-installed into fresh venvs

PIP_TIMEOUT = 300


def _make_venv(path: Path, *packages: str) -> Path | str:
    """A fresh venv (no system site-packages) with ``packages``; the python path or a failure reason."""
    py = path / "bin" / "python"
    if py.exists():
        return py
    r = subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], capture_output=True, text=True)
    if r.returncode:
        return f"venv failed: {r.stderr.strip()[-200:]}"
    try:
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages],
                           capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"pip install {' '.join(packages)} took over {PIP_TIMEOUT}s"
    if r.returncode:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
        return f"pip install {' '.join(packages)} failed: {(lines or ['?'])[-1][:200]}"
    return py


@pytest.fixture(scope="session")
def litert_venv(tmp_path_factory):
    got = _make_venv(tmp_path_factory.mktemp("venv") / "litert", "numpy", "ai-edge-litert")
    if isinstance(got, str):
        pytest.fail(got)  # ai-edge-litert is the supported runtime: its absence is a real failure
    return got


@pytest.fixture(scope="session")
def tflite_runtime_venv(tmp_path_factory):
    got = _make_venv(tmp_path_factory.mktemp("venv") / "tflite_runtime", "numpy<2", "tflite-runtime")
    if isinstance(got, str):
        pytest.skip(got)
    return got


def _bundle(built) -> Path:
    """A copy of the built bundle with the manifest the pipeline would write."""
    (built.bundle / "manifest.json").write_text(json.dumps(built.manifest))
    return built.bundle


def _bench(py: Path, bundle: Path, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    r = subprocess.run([str(py), "bench_tflite.py", "model.tflite", *args], cwd=bundle, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_venv_is_minimal(litert_venv):
    for mod in ("edgec", "tensorflow", "onnx"):
        r = subprocess.run([str(litert_venv), "-c", f"import {mod}"], capture_output=True, text=True,
                           cwd=litert_venv.parent)
        assert r.returncode != 0, f"{mod} is importable in the minimal venv"


def test_standalone_bench_with_ai_edge_litert(litert_venv, cnn_int8):
    res = _bench(litert_venv, _bundle(cnn_int8), "--iters", "20", "--threads", "2")
    validate_bench_result(res)
    assert res["runtime"]["name"] == "ai-edge-litert"
    assert (res["target"], res["precision"], res["threads"], res["iters"], res["batch"]) == ("arm", "int8", 2, 20, 1)
    assert res["extra"]["standalone"] and res["extra"]["xnnpack"]
    assert 0 < res["latency_ms"]["min"] <= res["latency_ms"]["p50"] <= res["latency_ms"]["max"]


def test_standalone_bench_reference_kernels(litert_venv, cnn_fp32):
    res = _bench(litert_venv, _bundle(cnn_fp32), "--iters", "3", "--warmup", "0", "--reference-kernels")
    validate_bench_result(res)
    assert res["extra"]["op_resolver"] == "BUILTIN_REF" and not res["extra"]["xnnpack"]


def test_standalone_bench_with_tflite_runtime(tflite_runtime_venv, cnn_int8):
    res = _bench(tflite_runtime_venv, _bundle(cnn_int8), "--iters", "10")
    validate_bench_result(res)
    assert res["runtime"]["name"] == "tflite-runtime"
    assert res["extra"]["numpy"].startswith("1.")
