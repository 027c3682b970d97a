"""Precisions and I/O dtypes: fp16 / int8-dynamic sizes, int8 with uint8 / float32 I/O."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.calibration.types import CalibrationData
from edgec.runtimes.harness import compare
from edgec.runtimes.litert_runner import LiteRTRunner

from .conftest import handle_from_proto, lower
from .test_tflite_cnn import _OrtReference

pytestmark = pytest.mark.slow  # TensorFlow conversions (Keras, TFLite converter, onnx2tf)


@pytest.fixture(scope="session")
def mlp():
    """[1, 64] -> Gemm 64x512 -> Relu -> Gemm 512x10: weights dominate the file size."""
    rng = np.random.default_rng(3)
    w1 = (rng.standard_normal((64, 512)) / 8).astype(np.float32)
    w2 = (rng.standard_normal((512, 10)) / 22).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Gemm", ["r", "w2", "b2"], ["y"])],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(np.zeros(512, np.float32), "b1"),
         numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(np.zeros(10, np.float32), "b2")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(proto)
    model = handle_from_proto(proto, "mlp.onnx")
    calib = CalibrationData([{"x": rng.standard_normal((1, 64)).astype(np.float32)} for _ in range(16)], "synthetic")
    return model, calib


@pytest.mark.parametrize("precision,max_ratio", [("fp16", 0.55), ("int8-dynamic", 0.30)])
def test_weight_precisions_shrink_and_match(mlp, tmp_session, precision, max_ratio):
    model, calib = mlp
    built = lower(model, calib, precision, tmp_session / f"mlp_{precision}")
    r = built.result
    assert r.report["size_ratio_vs_float_tflite"] <= max_ratio
    assert [(s.dtype, s.scale) for s in (*r.inputs, *r.outputs)] == [("float32", None)] * 2
    assert r.manifest["io_dtype"] == "float32"
    with LiteRTRunner(built.bundle, built.manifest, threads=1) as runner:
        acc = compare(runner, _OrtReference(model), calib.samples[:8])
    assert acc["cosine"] > 0.999


@pytest.mark.parametrize("io_dtype", ["uint8", "float32"])
def test_int8_io_dtypes(cnn, cnn_int8, tmp_session, io_dtype):
    model, calib, evals = cnn
    built = lower(model, calib, "int8", tmp_session / f"cnn_int8_{io_dtype}", io_dtype=io_dtype)
    r = built.result
    (inp,), (out,) = r.inputs, r.outputs
    assert inp.dtype == out.dtype == io_dtype
    assert inp.layout == "NHWC"
    if io_dtype == "uint8":
        assert inp.scale > 0 and 0 <= inp.zero_point <= 255
        # Same real-valued grid as the int8 file, shifted by 128.
        i8 = cnn_int8.result.inputs[0]
        assert inp.scale == pytest.approx(i8.scale) and inp.zero_point == i8.zero_point + 128
    else:
        assert inp.scale is None and out.scale is None
        assert "QUANTIZE" in r.report["ops"]  # float in, int8 inside
    assert r.manifest["io_dtype"] == io_dtype
    with LiteRTRunner(built.bundle, built.manifest, threads=1) as runner:
        acc = compare(runner, _OrtReference(model), evals)
    assert acc["cosine"] > 0.99
