"""intel-cpu int8 attention as torch exports scaled_dot_product_attention (ViT/DeiT): every MatMul runs int8.

Q and K reach their MatMul through the heads' Reshape/Transpose and a scalar ``d**-0.25`` Mul. OpenVINO's
CPU plugin runs ``Q @ K^T`` in int8 only when neither input has a zero point, and the head reshapes in
int8 only when the projections emit int8 (the pair sits above the scalar Mul). Counted in OpenVINO's
runtime model (layer type and runtime precision), never timed.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec import api
from edgec.compiler.config import BuildConfig

ov = pytest.importorskip("openvino", reason="the intel-cpu target needs openvino (pip install 'edgec[openvino]')")

SEQ, WIDTH, HEADS = 8, 16, 2


def _attention_block(path) -> None:
    rng = np.random.default_rng(0)
    inits = []

    def const(name, value, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def proj(x, name):  # a projection with a bias whose output is not centred on zero (asymmetric Q)
        return [helper.make_node("MatMul", [x, const(f"w{name}", rng.standard_normal((WIDTH, WIDTH)) * 0.3)],
                                 [f"{name}_mm"]),
                helper.make_node("Add", [f"{name}_mm", const(f"b{name}", rng.standard_normal(WIDTH) * 0.3 + 0.5)],
                                 [name])]

    def heads(x, name, perm):
        return [helper.make_node("Reshape", [x, "heads_shape"], [f"{name}_r"]),
                helper.make_node("Transpose", [f"{name}_r"], [f"{name}_h"], perm=perm)]

    scale = const("scale", (WIDTH // HEADS) ** -0.25)
    const("heads_shape", [1, SEQ, HEADS, WIDTH // HEADS], np.int64)
    nodes = [helper.make_node("LayerNormalization", ["x", const("gamma", np.ones(WIDTH)), const("beta", np.zeros(WIDTH))],
                              ["ln"], axis=-1),
             *proj("ln", "q"), *proj("ln", "k"), *proj("ln", "v"),
             *heads("q", "q", [0, 2, 1, 3]), helper.make_node("Mul", ["q_h", scale], ["qs"]),
             # K^T as torch.onnx exports it: heads, then [-1, SEQ, D] -> transposed -> [1, HEADS, D, SEQ]
             *heads("k", "k", [0, 2, 1, 3]),
             helper.make_node("Reshape", ["k_h", const("flat_shape", [-1, SEQ, WIDTH // HEADS], np.int64)], ["k_f"]),
             helper.make_node("Transpose", ["k_f"], ["k_ft"], perm=[0, 2, 1]),
             helper.make_node("Reshape", ["k_ft", const("kt_shape", [1, HEADS, WIDTH // HEADS, SEQ], np.int64)],
                              ["k_t"]),
             helper.make_node("Mul", ["k_t", scale], ["ks"]),
             *heads("v", "v", [0, 2, 1, 3]),
             helper.make_node("MatMul", ["qs", "ks"], ["scores"]),
             # torch's export guards fully masked rows: Where(IsNaN(p), 0, p) (keeps the plugin's fused MHA away)
             helper.make_node("Softmax", ["scores"], ["p0"], axis=-1),
             helper.make_node("IsNaN", ["p0"], ["p_nan"]),
             helper.make_node("Where", ["p_nan", const("zero", 0.0), "p0"], ["p"]),
             helper.make_node("MatMul", ["p", "v_h"], ["ctx_h"]),
             helper.make_node("Transpose", ["ctx_h"], ["ctx_t"], perm=[0, 2, 1, 3]),
             helper.make_node("Reshape", ["ctx_t", const("merged_shape", [1, SEQ, WIDTH], np.int64)], ["ctx"]),
             *proj("ctx", "o"),
             helper.make_node("Add", ["o", "x"], ["y"])]
    f = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, SEQ, WIDTH])  # noqa: E731
    model = helper.make_model(helper.make_graph(nodes, "attention", [f("x")], [f("y")], inits),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.write_bytes(model.SerializeToString())


def test_sdpa_attention_runs_every_matmul_and_head_reshape_in_int8(tmp_path):
    _attention_block(tmp_path / "attention.onnx")
    np.savez(tmp_path / "data.npz", x=np.random.default_rng(1).standard_normal((8, 1, SEQ, WIDTH)).astype(np.float32))
    result = api.build(BuildConfig(model=str(tmp_path / "attention.onnx"), output=tmp_path / "out",
                                   target="intel-cpu", precision="int8", calib=str(tmp_path / "data.npz")))
    assert result.report["accuracy"]["cosine"] > 0.99
    compiled = ov.Core().compile_model(str(tmp_path / "out" / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    constant, layers = set(), []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind, precision = info["layerType"].astype(str), info["runtimePrecision"].astype(str)
        sources = [op.input_value(i).get_node().get_friendly_name() for i in range(op.get_input_size())]
        if kind == "Const" or (sources and all(s in constant for s in sources)):
            constant.add(op.get_friendly_name())  # weight transposes: run once, at load
        else:
            layers.append((kind, precision))
    matmuls = [p for kind, p in layers if kind in ("FullyConnected", "MatMul")]
    assert len(matmuls) == 6 and all(p in ("u8", "i8") for p in matmuls), layers
    assert not [k for k, p in layers if k in ("Transpose", "Reshape") and p == "f32"], layers
