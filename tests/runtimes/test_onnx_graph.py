"""The shared ONNX helpers: intermediate outputs marked on a copy, run in onnxruntime."""

from __future__ import annotations

import numpy as np


def test_onnx_graph_marks_intermediate_outputs():
    import onnx
    from onnx import TensorProto, helper

    from edgec.runtimes.onnx_graph import MARK_ALL, float_tensors, make_session, run, with_outputs

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["h"], name="relu"),
                           helper.make_node("Neg", ["h"], ["y"], name="neg")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    assert float_tensors(model) == {"x", "h", "y"}
    marked = with_outputs(model, MARK_ALL)
    x = np.array([-1.0, 2.0], np.float32)
    (out,) = run(marked, [{"x": x, "extra": x}], session=make_session(marked, optimize=False))
    np.testing.assert_array_equal(out["h"], [0.0, 2.0])
    np.testing.assert_array_equal(out["y"], [0.0, -2.0])
    assert [o.name for o in model.graph.output] == ["y"]  # the original is untouched
