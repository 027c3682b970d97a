"""The exact ONNX rewrites (`edgec.compiler.rewrites`) keep every value onnxruntime computes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.compiler import rewrites


def _model(nodes, inputs, outputs, inits=()):
    f = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    g = helper.make_graph(nodes, "m", [f(n, s) for n, s in inputs], [f(n, s) for n, s in outputs], list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def _run(m, feeds):
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _same_after(m, rewrite, feeds, atol=0.0, **kw):
    want = _run(m, feeds)
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    n = rewrite(m2, **kw)
    onnx.checker.check_model(m2, full_check=True)
    got = _run(m2, feeds)
    for w, g in zip(want, got):
        assert w.shape == g.shape
        np.testing.assert_allclose(g, w, rtol=0, atol=atol)
    return n, m2


@pytest.mark.parametrize("arithmetic", [False, True])
def test_pad_with_runtime_value_becomes_where(arithmetic):
    pads = numpy_helper.from_array(np.array([0, 1, 2, 0, 0, 3, 1, 1], np.int64), "pads")
    m = _model([helper.make_node("Pad", ["x", "pads", "v"], ["y"], mode="constant")],
               [("x", [1, 3, 4, 5]), ("v", [])], [("y", [1, 7, 7, 6])], [pads])
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 5)).astype(np.float32)
    n, m2 = _same_after(m, rewrites.pad_value_as_where, {"x": x, "v": np.array(2.5, np.float32)},
                        atol=1e-6 if arithmetic else 0.0, arithmetic=arithmetic)
    assert n == 1 and ("Where" in [nd.op_type for nd in m2.graph.node]) != arithmetic


def test_pad_with_constant_value_is_left_alone():
    inits = [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
             numpy_helper.from_array(np.array(2.5, np.float32), "v")]
    m = _model([helper.make_node("Pad", ["x", "pads", "v"], ["y"], mode="constant")],
               [("x", [1, 3, 4, 4])], [("y", [1, 3, 6, 6])], inits)
    assert rewrites.pad_value_as_where(m) == 0


def test_clip_with_runtime_bounds_becomes_min_max():
    m = _model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [("x", [2, 8]), ("lo", []), ("hi", [])],
               [("y", [2, 8])])
    x = np.linspace(-3, 3, 16, dtype=np.float32).reshape(2, 8)
    n, _ = _same_after(m, rewrites.clip_bounds_as_minmax, {"x": x, "lo": np.array(-1.5, np.float32),
                                                           "hi": np.array(0.7, np.float32)})
    assert n == 1


@pytest.mark.parametrize("ctm", ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"])
@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
@pytest.mark.parametrize("in_hw,out_hw", [((8, 8), (4, 4)), ((5, 5), (12, 12)), ((9, 6), (4, 10))])
def test_resize_nearest_becomes_index_selection(ctm, nearest_mode, in_hw, out_hw):
    sizes = numpy_helper.from_array(np.array([1, 2, *out_hw], np.int64), "sizes")
    m = _model([helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest",
                                 coordinate_transformation_mode=ctm, nearest_mode=nearest_mode)],
               [("x", [1, 2, *in_hw])], [("y", [1, 2, *out_hw])], [sizes])
    x = np.random.default_rng(1).standard_normal((1, 2, *in_hw)).astype(np.float32)
    n, m2 = _same_after(m, rewrites.resize_nearest_as_gather, {"x": x}, upsample_too=True)
    assert n == 1 and "Resize" not in [nd.op_type for nd in m2.graph.node]


def test_resize_downsample_by_scales_is_a_strided_slice():
    scales = numpy_helper.from_array(np.array([1, 1, 0.5, 0.5], np.float32), "scales")
    m = _model([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")],
               [("x", [1, 2, 8, 8])], [("y", [1, 2, 4, 4])], [scales])
    x = np.random.default_rng(2).standard_normal((1, 2, 8, 8)).astype(np.float32)
    n, m2 = _same_after(m, rewrites.resize_nearest_as_gather, {"x": x})
    assert n == 1 and [nd.op_type for nd in m2.graph.node] == ["Slice", "Slice"]


@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_l2_becomes_sqrt_of_sum_square(keepdims):
    """onnx2tf hands ReduceL2's axes to tf.norm as a list, which tf.norm refuses (MiniLM's L2 norm)."""
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    m = _model([helper.make_node("ReduceL2", ["x", "axes"], ["y"], keepdims=keepdims)], [("x", [2, 6, 3])],
               [("y", [2, 1, 3] if keepdims else [2, 3])], [axes])
    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    n, m2 = _same_after(m, rewrites.reduce_l2_as_sqrt_sum_square, {"x": x}, atol=1e-6)
    assert n == 1 and [nd.op_type for nd in m2.graph.node] == ["ReduceSumSquare", "Sqrt"]


@pytest.mark.parametrize("pads", [[1, 1, 1, 1], [0, 1, 2, 1]])
def test_padded_maxpool_of_relu_becomes_zero_pad(pads):
    pool = dict(kernel_shape=[3, 3], strides=[2, 2], pads=pads)
    m = _model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("MaxPool", ["r"], ["y"], **pool)],
               [("x", [1, 2, 9, 9])], [("y", [1, 2, 5, 5])])
    x = np.random.default_rng(0).normal(size=(1, 2, 9, 9)).astype(np.float32)
    n, m2 = _same_after(m, rewrites.maxpool_pads_as_zero_pad, {"x": x})
    assert n == 1 and [node.op_type for node in m2.graph.node] == ["Relu", "Pad", "MaxPool"]


def test_padded_maxpool_of_signed_values_is_left_alone():
    m = _model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
               [("x", [1, 2, 9, 9])], [("y", [1, 2, 9, 9])])
    assert rewrites.maxpool_pads_as_zero_pad(m) == 0


@pytest.mark.parametrize("last", ["Div", "Mul"])
def test_decomposed_hardswish_becomes_one_op(last):
    """paddle2onnx's ``x * Clip(x + 3, 0, 6) / 6`` (opset 13) -> ``HardSwish`` (opset 14)."""
    c = lambda n, v: numpy_helper.from_array(np.array(v, np.float32), n)  # noqa: E731
    nodes = [helper.make_node("Add", ["x", "three"], ["a"]), helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
             helper.make_node("Mul", ["c", "x"], ["m"]),
             helper.make_node(last, ["m", "six" if last == "Div" else "sixth"], ["y"])]
    m = _model(nodes, [("x", [1, 2, 4, 4])], [("y", [1, 2, 4, 4])],
               [c("three", 3.0), c("zero", 0.0), c("six", 6.0), c("sixth", 1 / 6)])
    m.opset_import[0].version = 13
    x = np.linspace(-8, 8, 32, dtype=np.float32).reshape(1, 2, 4, 4)
    n, m2 = _same_after(m, rewrites.hardswish_pattern_as_op, {"x": x}, atol=1e-6)
    assert n == 1 and [node.op_type for node in m2.graph.node] == ["HardSwish"] and m2.opset_import[0].version == 14


def test_hardswish_pattern_with_a_shared_intermediate_is_left_alone():
    c = lambda n, v: numpy_helper.from_array(np.array(v, np.float32), n)  # noqa: E731
    nodes = [helper.make_node("Add", ["x", "three"], ["a"]), helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
             helper.make_node("Mul", ["x", "c"], ["m"]), helper.make_node("Div", ["m", "six"], ["y"])]
    m = _model(nodes, [("x", [1, 4])], [("y", [1, 4]), ("c", [1, 4])], [c("three", 3.0), c("zero", 0.0), c("six", 6.0)])
    assert rewrites.hardswish_pattern_as_op(m) == 0
