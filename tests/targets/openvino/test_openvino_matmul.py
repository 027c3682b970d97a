"""intel-cpu: a transformer's 3-D MatMul + Add stays a MatMul (no Reshapes to a 2-D Gemm and back).

onnxslim's Gemm fusion wraps each such MatMul in two Reshapes; OpenVINO's CPU plugin then runs the
element-wise ops after each int8 FullyConnected as separate f32 kernels (mobilebert 2.17x -> 2.53x
ORT fp32 without it; benchmarks/quant_quality.py).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec import api
from edgec.compiler.config import BuildConfig

ov = pytest.importorskip("openvino", reason="the intel-cpu target needs openvino (pip install 'edgec[openvino]')")


def test_transformer_matmuls_keep_three_dims_and_run_int8(tmp_path):
    rng = np.random.default_rng(0)
    f = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"]),
         helper.make_node("Relu", ["a1"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["m2"]), helper.make_node("Add", ["m2", "b2"], ["y"]),
         # attention's activation x activation MatMuls: int8 only without zero points, on a signed first
         # input (Q @ K^T) as on a non-negative one (softmax probabilities @ V)
         helper.make_node("Transpose", ["a1"], ["at"], perm=[0, 2, 1]), helper.make_node("MatMul", ["r", "at"], ["s"]),
         helper.make_node("MatMul", ["a1", "at"], ["q"])],
        "mlp", [f("x", [1, 8, 16])], [f("y", [1, 8, 16]), f("s", [1, 8, 8]), f("q", [1, 8, 8])],
        [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, n)
         for n, s in (("w1", (16, 32)), ("b1", (32,)), ("w2", (32, 16)), ("b2", (16,)))])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "mlp.onnx")
    np.savez(tmp_path / "data.npz", x=rng.standard_normal((8, 1, 8, 16)).astype(np.float32))
    result = api.build(BuildConfig(model=str(tmp_path / "mlp.onnx"), output=tmp_path / "out", target="intel-cpu",
                                   precision="int8", calib=str(tmp_path / "data.npz")))
    assert result.report["accuracy"]["cosine"] > 0.99
    ir = ov.Core().read_model(str(tmp_path / "out" / "model.xml"))
    kinds = {op.get_type_name() for op in ir.get_ops()}
    assert "Reshape" not in kinds and "MatMul" in kinds
    compiled = ov.Core().compile_model(ir, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    layers = [(op.get_rt_info()["layerType"].astype(str), op.get_rt_info()["runtimePrecision"].astype(str))
              for op in compiled.get_runtime_model().get_ordered_ops()]
    matmuls = [p for kind, p in layers if kind in ("FullyConnected", "MatMul")]
    assert len(matmuls) == 4 and all(p in ("u8", "i8") for p in matmuls), layers
    # the non-negative first input keeps all 256 levels (unsigned), the signed one is symmetric
    assert sorted(p for kind, p in layers if kind == "MatMul") == ["i8", "u8"], layers


def _fc_input_zero_points(path) -> dict[str, int]:
    """Zero point of the dequantized activation input of each MatMul with a constant weight, by MatMul output."""
    m = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    out = {}
    for n in m.graph.node:
        dq = producer.get(n.input[0])
        if n.op_type == "MatMul" and dq is not None and dq.op_type == "DequantizeLinear":
            out[n.output[0]] = int(inits[dq.input[2]].ravel()[0])
    return out


def test_balanced_fully_connected_inputs_are_symmetric(tmp_path):
    """A FullyConnected whose input range is about as negative as positive reads signed int8 without a zero
    point (the plugin's u8 + zero-point path costs a compensation per inference); a skewed signed range keeps
    its zero point, where a symmetric grid would double the step."""
    rng = np.random.default_rng(1)
    f = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["balanced"]),
         helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "shift"], ["skewed_in"]),
         helper.make_node("MatMul", ["skewed_in", "w2"], ["skewed"])],
        "fc", [f("x", [1, 8, 16])], [f("balanced", [1, 8, 32]), f("skewed", [1, 8, 32])],
        [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, n)
         for n, s in (("w1", (16, 32)), ("w2", (16, 32)))] + [numpy_helper.from_array(np.float32([-0.3]), "shift")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "fc.onnx")
    np.savez(tmp_path / "data.npz", x=rng.standard_normal((8, 1, 8, 16)).astype(np.float32))
    result = api.build(BuildConfig(model=str(tmp_path / "fc.onnx"), output=tmp_path / "out", target="intel-cpu",
                                   precision="int8", calib=str(tmp_path / "data.npz")))
    assert result.report["accuracy"]["cosine"] > 0.99
    zero_points = _fc_input_zero_points(tmp_path / "out" / "reference" / "quantized.onnx")
    assert zero_points["balanced"] == 0
    assert zero_points["skewed"] not in (0, -128), zero_points  # asymmetric: neither symmetric nor unsigned
    compiled = ov.Core().compile_model(str(tmp_path / "out" / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    fcs = [op.get_rt_info()["runtimePrecision"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops()
           if op.get_rt_info()["layerType"].astype(str) == "FullyConnected"]
    assert sorted(fcs) == ["i8", "u8"], fcs
