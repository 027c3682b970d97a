"""ONNX passes before onnx2tf (no TensorFlow): every association of the Erf-GELU fuses into one ``Gelu``."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.targets.tflite.graph_passes import fuse_erf_gelu


def _gelu_graph(order: str):
    """``x -> Erf-GELU -> y`` with the three Mul associations exporters write."""
    consts = [numpy_helper.from_array(np.array(v, np.float32), n)
              for n, v in (("sqrt2", 2 ** 0.5), ("one", 1.0), ("half", 0.5))]
    nodes = [helper.make_node("Div", ["x", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"])]
    if order == "x_then_half":  # (x * (1 + erf)) * 0.5: TorchScript export
        nodes += [helper.make_node("Mul", ["x", "a"], ["m"]), helper.make_node("Mul", ["m", "half"], ["y"])]
    elif order == "half_x_first":  # (x * 0.5) * (1 + erf)
        nodes += [helper.make_node("Mul", ["x", "half"], ["h"]), helper.make_node("Mul", ["h", "a"], ["y"])]
    else:  # x * ((1 + erf) * 0.5): torch's dynamo exporter (DeiT, DistilBERT, Whisper)
        nodes += [helper.make_node("Mul", ["a", "half"], ["m"]), helper.make_node("Mul", ["x", "m"], ["y"])]
    g = helper.make_graph(nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], consts)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)], ir_version=9)


@pytest.mark.parametrize("order", ["x_then_half", "half_x_first", "x_times_half_sum"])
def test_every_erf_gelu_association_fuses_and_keeps_the_function(order):
    """An unfused Erf becomes onnx2tf's pseudo-Erf, an int8 DIV LiteRT refuses on wide MLPs."""
    import onnxruntime as ort

    proto = _gelu_graph(order)
    x = np.linspace(-4, 4, 16, dtype=np.float32).reshape(2, 8)
    want = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": x})[0]
    assert fuse_erf_gelu(proto) == 1
    assert [n.op_type for n in proto.graph.node] == ["Gelu"]
    got = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_erf_gelu_with_a_wrong_constant_is_left_alone():
    proto = _gelu_graph("x_times_half_sum")
    proto.graph.initializer[2].CopyFrom(numpy_helper.from_array(np.array(0.25, np.float32), "half"))
    assert fuse_erf_gelu(proto) == 0
    assert "Gelu" not in {n.op_type for n in proto.graph.node}
