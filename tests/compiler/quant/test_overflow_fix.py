"""`QuantScheme.overflow_fix` ``pairs``: weight scales bounded by the pairs of products x86 kernels add in int16.

CPUs without VNNI (AVX2, AVX-512F) add each pair of u8 x s8 products in saturating int16 in OpenVINO's and
onnxruntime's int8 kernels. The native checks below run those kernels: on such a CPU a pair the bound
misses saturates and the output moves away from the Q/DQ graph run as written; on a VNNI CPU they agree
anyway (the static checks carry the test there).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.calibration.types import TensorRange
from edgec.compiler.model import ModelHandle
from edgec.compiler.overflow_fix import PAIRS_IM2COL, fit_pairs, pair_indices, pair_scales, pairs_fit
from edgec.compiler.quality import run_exact_qdq
from edgec.compiler.quantize import quantize_qdq
from edgec.targets.base import QuantScheme

CONV = helper.make_node("Conv", ["x", "w"], ["y"])


def test_pairs_are_adjacent_channels_per_tap_and_nhwc_neighbours_for_odd_channel_counts():
    even, out = pair_indices((2, 4, 1, 1), CONV, 1)
    assert out == 0
    assert even.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    # [O, C, kh, kw]: flat index c * 2 + tap; per tap channels (0, 1) and (2, padding), as OpenVINO pads them
    assert pair_indices((1, 3, 1, 2), CONV, 1)[0].tolist() == [[0, 2], [4, -1], [1, 3], [5, -1]]
    # onnxruntime's NHWC im2col also pairs ch0 t0, ch1 t0, ch2 t0, ch0 t1, ...: (0, 2), (4, 1), (3, 5)
    odd, _ = pair_indices((1, 3, 1, 2), CONV, 1, PAIRS_IM2COL)
    assert odd.tolist() == [[0, 2], [4, -1], [1, 3], [5, -1], [0, 2], [4, 1], [3, 5]]
    gemm = helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)  # [N, K]: pairs along K
    assert pair_indices((2, 4), gemm, 1)[0].tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    matmul = helper.make_node("MatMul", ["x", "w"], ["y"])  # [K, N]: pairs along K, N = 2 columns
    assert pair_indices((4, 2), matmul, 1)[0].tolist() == [[0, 2], [4, 6], [1, 3], [5, 7]]


@pytest.mark.parametrize("node, shape, axis", [
    (CONV, (16, 24, 1, 1), 0), (CONV, (16, 5, 3, 3), 0), (CONV, (8, 3, 3, 3), 0),
    (helper.make_node("Gemm", ["x", "w"], ["y"], transB=1), (32, 64), 0),
    (helper.make_node("MatMul", ["x", "w"], ["y"]), (64, 32), 1),
    (helper.make_node("MatMul", ["x", "w"], ["y"]), (64, 32), None)])
def test_pair_scales_fit_int16_and_sit_between_the_8_and_7_bit_grids(node, shape, axis):
    w = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    s = pair_scales(w, node, 1, axis, 1e-12, PAIRS_IM2COL)
    red = tuple(i for i in range(w.ndim) if i != axis) if axis is not None else None
    absmax = np.abs(w).max(axis=red)
    view = [1] * w.ndim
    if axis is not None:
        view[axis] = -1
    q = np.clip(np.round(w / s.reshape(view)), -127, 127).astype(np.int8)
    assert pairs_fit(q, node, 1, PAIRS_IM2COL)
    assert np.all(s >= absmax / 127 * (1 - 1e-6))  # never finer than the 8-bit grid
    assert np.all(s <= absmax * 2 / 127 * (1 + 1e-6))  # never coarser than a pair of the largest weight
    assert float(np.mean(s / (absmax / 63))) < 0.85  # on random rows, clearly finer than the 7-bit grid


def test_fit_pairs_moves_only_pairs_over_the_bound():
    q = np.random.default_rng(1).integers(-127, 128, (4, 5, 3, 3)).astype(np.int8)
    fitted = fit_pairs(q, CONV, 1, PAIRS_IM2COL)
    assert not pairs_fit(q, CONV, 1, PAIRS_IM2COL) and pairs_fit(fitted, CONV, 1, PAIRS_IM2COL)
    assert np.all(np.abs(fitted.astype(np.int32)) <= np.abs(q.astype(np.int32)))
    assert np.array_equal(fit_pairs(fitted, CONV, 1, PAIRS_IM2COL), fitted)


def _adversarial(kind: str) -> tuple[onnx.ModelProto, list[int]]:
    """A layer reading the model's input whose rows hold pairs of large same-sign weights (8 bits overflow), then
    an identity layer: its Q/DQ input lets onnxruntime fuse the layer into its int8 kernel too."""
    rng = np.random.default_rng(2)
    if kind == "fc":
        w = (rng.standard_normal((16, 8)) * 0.05).astype(np.float32)  # MatMul B [K, N]
        w += 1.0
        shape = [4, 16]
        nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="layer"),
                 helper.make_node("MatMul", ["h", "eye"], ["y"], name="tail")]
        eye = np.eye(8, dtype=np.float32)
    else:
        c, k = {"conv-odd": (5, 3), "conv-even": (16, 1), "depthwise-x2": (1, 3)}[kind]
        w = (rng.standard_normal((8, c, k, k)) * 0.05).astype(np.float32)
        if kind == "depthwise-x2":  # 4 groups of one input channel, 2 outputs each: im2col pairs its taps
            w += 1.0
        elif kind == "conv-odd":  # onnxruntime's NHWC im2col pairs the last channel of a tap with the next's first
            w[:, c - 1, 0, 0] += 1.0
            w[:, 0, 0, 1] += 1.0
        else:
            w[:, :, 0, 0] += 1.0
        groups = 4 if kind == "depthwise-x2" else 1
        shape = [1, c * groups, 6, 6]
        nodes = [helper.make_node("Conv", ["x", "w"], ["h"], name="layer", pads=[k // 2] * 4, group=groups),
                 helper.make_node("Conv", ["h", "eye"], ["y"], name="tail")]
        eye = np.eye(8, dtype=np.float32).reshape(8, 8, 1, 1)
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(eye, "eye")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), shape


def _quantized(proto, shape, fix):
    from onnxruntime import InferenceSession

    sess = InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    top = float(sess.run(None, {"x": np.ones(shape, np.float32)})[0].max()) * 1.05
    ranges = {"x": TensorRange(0.0, 1.0), "h": TensorRange(0.0, top), "y": TensorRange(0.0, top)}
    q, summary = quantize_qdq(ModelHandle.from_onnx(proto, "t", "0" * 64), ranges,
                              QuantScheme(placement="weighted", overflow_fix=fix))
    return q.proto, summary


def _layer_weight(qproto) -> np.ndarray:
    inits = {t.name: numpy_helper.to_array(t) for t in qproto.graph.initializer}
    producer = {o: n for n in qproto.graph.node for o in n.output}
    layer = next(n for n in qproto.graph.node if n.name == "layer")
    return inits[producer[layer.input[1]].input[0]]


@pytest.mark.parametrize("kind", ["conv-even", "conv-odd", "depthwise-x2", "fc"])
def test_pair_bounded_layers_run_natively_as_written(kind):
    """On inputs at the top of their range, OpenVINO's (``pairs``) and onnxruntime's (``pairs-im2col``) fused int8
    kernels give what the Q/DQ graph computes; the 8-bit grid's pairs would not fit int16 (on a CPU without VNNI
    they saturate)."""
    import openvino as ov
    from onnxruntime import GraphOptimizationLevel, InferenceSession, SessionOptions

    from edgec.compiler.overflow_fix import layer_grid

    proto, shape = _adversarial(kind)
    eight, _ = _quantized(proto, shape, None)
    layer = next(n for n in proto.graph.node if n.name == "layer")
    inits = {t.name: t for t in proto.graph.initializer}
    assert not pairs_fit(_layer_weight(eight), layer, 1, PAIRS_IM2COL)
    x = {"x": np.ones(shape, np.float32)}
    opts = SessionOptions()
    opts.graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_ALL
    core = ov.Core()
    runtimes = {
        "pairs": lambda m: core.compile_model(core.read_model(m.SerializeToString(), b""), "CPU",
                                              {"INFERENCE_PRECISION_HINT": "f32"})(x)[0],
        "pairs-im2col": lambda m: InferenceSession(m.SerializeToString(), opts,
                                                   providers=["CPUExecutionProvider"]).run(None, x)[0]}
    for fix, run in runtimes.items():
        bounded, summary = _quantized(proto, shape, fix)
        assert summary["pair_bounded_weights"] == 2
        assert pairs_fit(_layer_weight(bounded), layer, 1, layer_grid(layer, inits, fix))
        exact = run_exact_qdq(bounded, [x])[0]["y"]
        assert float(np.abs(run(bounded) - exact).max()) <= 0.02 * float(np.abs(exact).max()), fix


def test_intel_cpu_and_onnxruntime_bound_the_pairs_their_kernels_add():
    from edgec.targets.onnxruntime import ONNXRuntimeTarget
    from edgec.targets.openvino import OpenVINOTarget

    assert OpenVINOTarget.quant_scheme.overflow_fix == "pairs"
    assert ONNXRuntimeTarget.quant_scheme.overflow_fix == "pairs-im2col"
