"""The calibrated int4 default: better than round to nearest where activations have outliers, honest
about its size, and the same bytes twice."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.calibration.types import CalibrationData
from edgec.compiler.int4 import Int4Quantizer, most_sensitive
from edgec.compiler.model import ModelHandle, TensorSpec
from edgec.compiler.quality import ort_session

SEQ, D, FF = 16, 64, 128


def _outlier_inputs(rng: np.random.Generator, n: int) -> list[dict[str, np.ndarray]]:
    """Token rows from a low-rank subspace with a few channels 20x the rest (as a transformer's residual)."""
    basis = rng.standard_normal((8, D)).astype(np.float32)
    gain = np.ones(D, np.float32)
    gain[[3, 17, 40]] = 20.0
    out = []
    for _ in range(n):
        x = rng.standard_normal((SEQ, 8)).astype(np.float32) @ basis + 0.1 * rng.standard_normal((SEQ, D))
        out.append({"x": (x * gain).astype(np.float32)[None]})
    return out


@pytest.fixture(scope="module")
def tiny_block():
    """A transformer MLP block built in code: y = x + Relu(x @ w1) @ w2."""
    rng = np.random.default_rng(7)
    w1 = (rng.standard_normal((D, FF)) / np.sqrt(D)).astype(np.float32)
    w2 = (rng.standard_normal((FF, D)) / np.sqrt(FF)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="up"),
             helper.make_node("Relu", ["h"], ["a"], name="act"),
             helper.make_node("MatMul", ["a", "w2"], ["d"], name="down"),
             helper.make_node("Add", ["x", "d"], ["y"], name="residual")]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, SEQ, D])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, SEQ, D])],
                          [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    handle = ModelHandle(proto=proto, source_path="mlp.onnx", source_sha256="0",
                         inputs=[TensorSpec("x", (1, SEQ, D), "float32")],
                         outputs=[TensorSpec("y", (1, SEQ, D), "float32")])
    calib = CalibrationData(_outlier_inputs(rng, 16), "test")
    held_out = _outlier_inputs(rng, 8)
    return handle, calib, held_out


def _error(handle, quant, feeds) -> float:
    ref, got = ort_session(handle.proto), ort_session(quant.proto, optimize=False)
    num = sum(float(np.sum((got.run(None, f)[0] - ref.run(None, f)[0]) ** 2)) for f in feeds)
    return num / sum(float(np.sum(ref.run(None, f)[0] ** 2)) for f in feeds)


def test_calibrated_default_beats_round_to_nearest_on_outliers(tiny_block):
    handle, calib, held_out = tiny_block
    rtn_q, rtn_summary = Int4Quantizer(handle, None, 64, "asym", "auto").quantize()
    cal_q, cal_summary = Int4Quantizer(handle, calib, 64, "asym", "auto").quantize()
    assert rtn_summary["recipe"] == "rtn" and cal_summary["recipe"] == "calibrated"
    # measured on samples the calibration did not see
    assert _error(handle, cal_q, held_out) < 0.7 * _error(handle, rtn_q, held_out)
    # 4-bit values, a float32 scale and a 4-bit zero point per 64 weights
    assert rtn_summary["bits_per_weight"] == pytest.approx(4 + 36 / 64, abs=1e-3)
    assert cal_summary["bits_per_weight"] >= rtn_summary["bits_per_weight"]


def test_calibrated_default_is_deterministic(tiny_block):
    handle, calib, _ = tiny_block
    a = Int4Quantizer(handle, calib, None, "asym", "auto").quantize()[0].serialize()
    b = Int4Quantizer(handle, calib, None, "asym", "auto").quantize()[0].serialize()
    assert a == b
    onnx.checker.check_model(onnx.load_from_string(a))


def test_int8_share_takes_the_most_sensitive_layers_within_budget():
    errors = {"a": 0.5, "b": 0.9, "c": 0.1, "d": 0.7}
    sizes = {"a": 10, "b": 30, "c": 10, "d": 10}
    # b (largest error) does not fit 20 % of 60 = 12; d does, then a no longer fits
    assert most_sensitive(errors, sizes, 0.2) == ("d",)
    assert most_sensitive(errors, sizes, 0.0) == ()
    assert most_sensitive(errors, sizes, 1.0) == ("b", "d", "a", "c")
