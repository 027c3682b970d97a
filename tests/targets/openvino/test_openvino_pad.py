"""intel-cpu: a Pad whose value is computed at run time keeps that value.

OpenVINO's CPU plugin pads with 0 when the pad value is not a constant (the output was
off by exactly the value, cosine 0.44, and the build still succeeded); the target spells
such a Pad as ``Where(border, value, Pad(x))`` before conversion.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec import api
from edgec.compiler.config import BuildConfig

pytest.importorskip("openvino", reason="the intel-cpu target needs openvino (pip install 'edgec[openvino]')")


def test_runtime_pad_value_survives(tmp_path):
    f = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Pad", ["x", "pads", "value"], ["p"], mode="constant"),
         helper.make_node("Conv", ["p", "w"], ["y"])],
        "pad", [f("x", [1, 3, 8, 8]), f("value", [])], [f("y", [1, 4, 8, 10])],
        [numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 1, 2], np.int64), "pads"), numpy_helper.from_array(w, "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, tmp_path / "pad.onnx")
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "data.npz", x=rng.standard_normal((4, 1, 3, 8, 8)).astype(np.float32),
             value=np.array([2.5, -1.0, 7.0, 0.5], np.float32))
    result = api.build(BuildConfig(model=str(tmp_path / "pad.onnx"), output=tmp_path / "out", target="intel-cpu",
                                   precision="fp32", calib=str(tmp_path / "data.npz")))
    acc = result.report["accuracy"]
    assert acc["cosine"] > 0.99999
    assert acc["max_abs_err"] < 1e-4
