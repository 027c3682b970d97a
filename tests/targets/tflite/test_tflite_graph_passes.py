"""ONNX rewrites before onnx2tf that decide which TFLite ops an int8 model gets."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.calibration.types import CalibrationData

from .conftest import handle_from_proto, lower

pytestmark = pytest.mark.slow  # TensorFlow conversions (onnx2tf, TFLite converter)


def test_decomposed_hardswish_becomes_one_int8_hard_swish(tmp_path):
    """paddle2onnx's ``x * Clip(x + 3, 0, 6) / 6`` after a conv: one HARD_SWISH in the int8 model, not
    ADD/MUL/MUL with an int8 tensor each (PicoDet: 95 ADD and 120 MUL)."""
    rng = np.random.default_rng(0)
    c = lambda n, v: numpy_helper.from_array(np.asarray(v, np.float32), n)  # noqa: E731
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"]),
             helper.make_node("Add", ["h", "three"], ["a"]), helper.make_node("Clip", ["a", "zero", "six"], ["cl"]),
             helper.make_node("Mul", ["h", "cl"], ["m"]), helper.make_node("Div", ["m", "six"], ["y"])]
    g = helper.make_graph(nodes, "hs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [c("w", rng.normal(0, 1, (4, 3, 1, 1))), c("three", 3.0), c("zero", 0.0), c("six", 6.0)])
    model = handle_from_proto(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), "hs.onnx")
    calib = CalibrationData([{"x": rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)} for _ in range(8)], "test")
    built = lower(model, calib, "int8", tmp_path / "hs")
    ops = built.result.report["ops"]
    assert ops.get("HARD_SWISH") == 1 and "MUL" not in ops and "ADD" not in ops, ops
    assert {"name": "hardswish-pattern-as-op", "config": {"rewritten": 1}} in built.result.passes
