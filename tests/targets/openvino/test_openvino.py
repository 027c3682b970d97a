"""The intel-cpu target: real OpenVINO conversion and CPU runs, checked against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from edgec import api
from edgec.compiler.config import BuildConfig, InputShape

pytest.importorskip("openvino", reason="the intel-cpu target needs openvino (pip install 'edgec[openvino]')")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, tiny_cnn_onnx, tiny_calib):
    root = tmp_path_factory.mktemp("ov")
    out = {}
    for p in ("fp32", "fp16", "int8"):
        out[p] = api.build(BuildConfig(model=str(tiny_cnn_onnx), output=root / p, target="openvino", precision=p,
                                       calib=str(tiny_calib) if p == "int8" else None))
    return out


def test_fp32_ir_matches_onnxruntime(bundles):
    r = bundles["fp32"].report
    assert r["accuracy"]["reference"] == "onnxruntime"
    assert r["accuracy"]["max_abs_err"] < 1e-4
    assert bundles["fp32"].manifest["target_info"]["inference_precision_hint"] == "f32"


def test_fp16_ir_halves_the_weights(bundles):
    b32 = next(f["bytes"] for f in bundles["fp32"].manifest["files"] if f["path"] == "model.bin")
    b16 = next(f["bytes"] for f in bundles["fp16"].manifest["files"] if f["path"] == "model.bin")
    assert b16 < 0.6 * b32
    assert bundles["fp16"].report["accuracy"]["max_abs_err"] < 1e-2


def test_int8_ir_is_quantized_and_close_to_float(bundles):
    b = bundles["int8"]
    ops = b.report["target"]["ir_ops"]
    assert ops.get("FakeQuantize", 0) >= 2, ops  # Q/DQ pairs became FakeQuantize
    acc = b.report["accuracy"]
    assert acc["cosine"] > 0.99 and acc["top1_agreement"] >= 0.9
    assert 0 < acc["max_abs_err"] < 0.15
    q = next(p for p in b.manifest["passes"] if p["name"] == "quantize")["config"]
    assert q["scheme"]["placement"] == "weighted" and q["quantized_weights"] == 3


def test_int8_runs_int8_kernels_in_the_cpu_plugin(bundles):
    import openvino as ov

    compiled = ov.Core().compile_model(str(bundles["int8"].bundle / "model.xml"), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    precisions = {op.get_rt_info()["layerType"].astype(str): op.get_rt_info()["runtimePrecision"].astype(str)
                  for op in compiled.get_runtime_model().get_ordered_ops()}
    assert precisions["Convolution"] in ("u8", "i8")


def test_runner_threads_and_bench(bundles):
    from edgec.runtimes.harness import validate_bench_result

    res = api.bench(bundles["int8"].bundle, iters=5, warmup=1, threads=1)
    validate_bench_result(res)
    assert res["threads"] == 1 and res["runtime"]["name"] == "openvino"


def test_verify_reports_label_accuracy(bundles, tmp_path):
    rng = np.random.default_rng(5)
    data = tmp_path / "eval.npz"
    np.savez(data, image=rng.random((10, 1, 8, 8), dtype=np.float32), labels=rng.integers(0, 10, 10))
    v = api.verify(bundles["int8"].bundle, str(data))
    assert v["samples"] == 10 and set(v["label_accuracy"]) == {"artifact", "reference"}


def test_batched_torch_model(tiny_cnn_factory, tiny_calib, tmp_path):
    res = api.build(BuildConfig(model=tiny_cnn_factory, output=tmp_path / "b", target="intel-cpu",
                                calib=str(tiny_calib), input_shapes={"image": InputShape((4, 1, 8, 8))}))
    assert res.manifest["inputs"][0]["shape"] == [4, 1, 8, 8]
    assert res.report["accuracy"]["cosine"] > 0.99


@pytest.mark.slow  # two full PyTorch builds
def test_rebuild_from_pytorch_is_byte_identical(tiny_cnn_factory, tiny_calib, tmp_path):
    trees = []
    for name in ("a", "b"):
        out = tmp_path / name
        api.build(BuildConfig(model=tiny_cnn_factory, output=out, target="intel-cpu", calib=str(tiny_calib)))
        trees.append({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert trees[0].keys() == trees[1].keys()
    assert [k for k in trees[0] if trees[0][k] != trees[1][k]] == []
