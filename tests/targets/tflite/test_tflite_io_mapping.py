"""Several inputs/outputs of different kinds: the artifact's specs follow the ONNX order."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.calibration.types import CalibrationData
from edgec.runtimes.harness import compare
from edgec.runtimes.litert_runner import LiteRTRunner

from .conftest import handle_from_proto, lower
from .test_tflite_cnn import _OrtReference

pytestmark = pytest.mark.slow  # TensorFlow conversions (Keras, TFLite converter, onnx2tf)


@pytest.fixture(scope="session")
def two_io():
    """vec.1 [1, 5] and img [1, 3, 8, 8] in; feat [1, 4, 8, 8] (NCHW map) and score [1, 5] out."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) / 3
    nodes = [
        helper.make_node("Mul", ["vec.1", "two"], ["score"]),
        helper.make_node("Conv", ["img", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["feat"]),
    ]
    g = helper.make_graph(
        nodes, "two_io",
        [helper.make_tensor_value_info("vec.1", TensorProto.FLOAT, [1, 5]),
         helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("feat", TensorProto.FLOAT, [1, 4, 8, 8]),
         helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    model = handle_from_proto(proto, "two_io.onnx")
    samples = [{"vec.1": rng.standard_normal((1, 5)).astype(np.float32),
                "img": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(12)]
    return model, CalibrationData(samples, "synthetic")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_io_specs_follow_onnx_order(two_io, tmp_session, precision):
    model, calib = two_io
    built = lower(model, calib, precision, tmp_session / f"two_io_{precision}", io_dtype="int8" if precision == "int8" else None)
    r = built.result
    assert [(s.name, s.shape, s.layout) for s in r.inputs] == [("vec.1", (1, 5), None), ("img", (1, 8, 8, 3), "NHWC")]
    assert [(s.name, s.shape, s.layout) for s in r.outputs] == [("feat", (1, 8, 8, 4), "NHWC"), ("score", (1, 5), None)]
    assert r.report["float_tflite_max_abs_err"] < 1e-5
    with LiteRTRunner(built.bundle, built.manifest, threads=1) as runner:
        acc = compare(runner, _OrtReference(model), calib.samples)
    if precision == "fp32":
        assert acc["max_abs_err"] < 1e-5
    else:
        for name, err in acc["max_abs_err_per_output"].items():
            assert err < 0.1, name
