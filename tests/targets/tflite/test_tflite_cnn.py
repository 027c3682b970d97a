"""The arm target on a tiny CNN: fp32 parity, full-integer int8, the LiteRT runner."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.runtimes.harness import bench, compare, validate_bench_result
from edgec.runtimes.litert_runner import LiteRTRunner
from edgec.runtimes.onnxruntime_runner import make_session

pytestmark = pytest.mark.slow  # TensorFlow conversions (Keras, TFLite converter, onnx2tf)


class _OrtReference:
    """Reference in the model convention, as the pipeline's reference runner is."""

    def __init__(self, model):
        self.sess = make_session(model.proto.SerializeToString(), threads=1)
        self.names = [o.name for o in self.sess.get_outputs()]

    def infer(self, feeds):
        return dict(zip(self.names, self.sess.run(self.names, feeds)))

    def info(self):
        return {"name": "onnxruntime"}


def test_fp32_matches_onnx(cnn_fp32, cnn):
    _, _, evals = cnn
    r = cnn_fp32.result
    assert r.report["float_tflite_max_abs_err"] < 1e-4
    assert [a.role for a in r.artifacts] == ["model", "harness", "doc"]
    for a in r.artifacts:
        assert (cnn_fp32.bundle / a.path).is_file()
    (inp,), (out,) = r.inputs, r.outputs
    assert (inp.name, inp.shape, inp.dtype, inp.layout) == ("image", (1, 12, 12, 1), "float32", "NHWC")
    assert (out.name, out.shape, out.dtype, out.scale) == ("logits", (1, 10), "float32", None)
    with LiteRTRunner(cnn_fp32.bundle, cnn_fp32.manifest, threads=1) as runner:
        acc = compare(runner, _OrtReference(cnn_fp32.model), evals)
    assert acc["max_abs_err"] < 1e-4
    assert acc["top1_agreement"] == 1.0


def test_int8_is_full_integer(cnn_int8, cnn):
    _, _, evals = cnn
    r = cnn_int8.result
    (inp,), (out,) = r.inputs, r.outputs
    assert inp.dtype == "int8" and out.dtype == "int8"
    assert inp.layout == "NHWC" and inp.scale > 0 and -128 <= inp.zero_point <= 127
    assert out.scale > 0
    assert r.manifest["quantization"]["mode"] == "full-integer"
    assert r.manifest["io_dtype"] == "int8"
    # Only integer kernels between the I/O: no float compute op and no dequantize.
    assert "DEQUANTIZE" not in r.report["ops"]
    assert r.report["float_tflite_max_abs_err"] < 1e-4
    with LiteRTRunner(cnn_int8.bundle, cnn_int8.manifest, threads=1) as runner:
        acc = compare(runner, _OrtReference(cnn_int8.model), evals)
    assert acc["cosine"] > 0.99
    assert acc["top1_agreement"] >= 0.9


def test_runner_bench_schema_and_threads(cnn_int8):
    with LiteRTRunner(cnn_int8.bundle, cnn_int8.manifest, threads=2) as runner:
        res = bench(runner, iters=5, warmup=1)
    validate_bench_result(res)
    assert res["threads"] == 2 and res["runner"] == "litert"
    assert res["runtime"]["name"] == "ai-edge-litert" and res["runtime"]["version"]
    assert res["extra"]["xnnpack"] is True


def test_reference_kernels_agree_with_xnnpack(cnn_int8, cnn):
    _, calib, _ = cnn
    feeds = calib.samples[0]
    with LiteRTRunner(cnn_int8.bundle, cnn_int8.manifest, reference_kernels=True) as ref, \
            LiteRTRunner(cnn_int8.bundle, cnn_int8.manifest, threads=1) as fast:
        a = ref.run_native(ref.prepare(feeds))
        b = fast.run_native(fast.prepare(feeds))
        assert ref.info()["extra"]["op_resolver"] == "BUILTIN_REF"
    (qa,), (qb,) = a.values(), b.values()
    assert qa.dtype == np.int8
    # int8 kernels may differ by a rounding step between implementations.
    assert np.abs(qa.astype(int) - qb.astype(int)).max() <= 2


def test_runner_io_model_on_tflite_reference(cnn_int8, cnn):
    """The mcu target loads a .tflite as its reference with io="model"."""
    _, calib, _ = cnn
    r = cnn_int8.result
    manifest = dict(cnn_int8.manifest)
    # A .tflite source: its own (quantized, NHWC) I/O is the model convention.
    manifest["model_inputs"] = [s.to_json() for s in r.inputs]
    manifest["model_outputs"] = [dict(s.to_json(), dtype="float32", scale=None, zero_point=None)
                                 for s in r.outputs]
    x = calib.samples[0]["image"].transpose(0, 2, 3, 1)
    q = np.clip(np.round(x / r.inputs[0].scale) + r.inputs[0].zero_point, -128, 127).astype(np.int8)
    with LiteRTRunner(cnn_int8.bundle, manifest, model_path="model.tflite", io="model") as runner:
        out = runner.infer({"image": q})
        assert out["logits"].dtype == np.float32
    with LiteRTRunner(cnn_int8.bundle, cnn_int8.manifest) as runner:
        want = runner.infer(calib.samples[0])["logits"]
    np.testing.assert_allclose(out["logits"], want, atol=1e-6)


def test_bundle_readme_for_mobile_developers(cnn_int8):
    text = (cnn_int8.bundle / "README.md").read_text()
    (inp,), (out,) = cnn_int8.result.inputs, cnn_int8.result.outputs
    for needle in ("`image`", "`logits`", "[1, 12, 12, 1]", "NHWC", "int8", f"{inp.scale:.9g}",
                   str(inp.zero_point), f"{out.scale:.9g}", "runSignature", "Interpreter.Options",
                   "ai_edge_litert", "tflite_runtime", "bench_tflite.py", "Normalization"):
        assert needle in text, needle


def test_manifest_section(cnn_int8):
    m = cnn_int8.result.manifest
    assert m["versions"]["onnx2tf"] and m["versions"]["tensorflow"]
    assert m["layout"] == {"image": "NHWC"} and m["signature"] == "serving_default"
    assert m["input_names"] == {"image": "image"} and m["builtin_ops_only"] is True
    names = [p["name"] for p in cnn_int8.result.passes]
    assert "onnx2tf" in names and "onnxslim" in names


def test_rebuild_gives_identical_bytes(cnn, cnn_int8, tmp_session):
    from .conftest import lower

    model, calib, _ = cnn
    again = lower(model, calib, "int8", tmp_session / "cnn_int8_again")
    assert (again.bundle / "model.tflite").read_bytes() == (cnn_int8.bundle / "model.tflite").read_bytes()
    assert (again.bundle / "README.md").read_text() == (cnn_int8.bundle / "README.md").read_text()
    assert again.result.inputs == cnn_int8.result.inputs and again.result.manifest == cnn_int8.result.manifest
