"""The Q/DQ quantizer: placement, weight/bias numerics, and accuracy against the float model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.calibration.types import TensorRange
from edgec.compiler.model import ModelHandle
from edgec.compiler.quantize import activation_qparams, quantize_qdq, quantize_weight
from edgec.runtimes.onnxruntime_runner import make_session
from edgec.targets.base import QuantScheme


def _conv_model(seed: int = 0) -> onnx.ModelProto:
    """x[1,3,8,8] -> Conv(8) -> Relu -> Conv(4) -> Add(residual-free) -> GlobalAveragePool -> Flatten -> Gemm(5)."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "w1"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b1"),
        numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.2, "w2"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b2"),
        numpy_helper.from_array(rng.standard_normal((5, 8)).astype(np.float32), "wg"),
        numpy_helper.from_array(rng.standard_normal(5).astype(np.float32) * 0.1, "bg"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["a"], name="residual"),
        helper.make_node("Relu", ["a"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _samples(n: int = 16, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.random((1, 3, 8, 8), dtype=np.float32)} for _ in range(n)]


def _minmax_ranges(proto: onnx.ModelProto, samples) -> dict[str, TensorRange]:
    """Reference ranges: every tensor made a graph output, min/max over the samples."""
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    names = ["x"] + [o for n in m.graph.node for o in n.output]
    existing = {o.name for o in m.graph.output}
    m.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names if n not in existing and n != "x")
    sess = make_session(m.SerializeToString())
    outs = [o.name for o in sess.get_outputs()]
    lo, hi = {}, {}
    for s in samples:
        vals = dict(zip(outs, sess.run(outs, s)))
        vals["x"] = s["x"]
        for k, v in vals.items():
            lo[k] = min(lo.get(k, np.inf), float(v.min()))
            hi[k] = max(hi.get(k, -np.inf), float(v.max()))
    return {k: TensorRange(lo[k], hi[k]) for k in lo}


def _run(proto, samples):
    # the Q/DQ graph as written: onnxruntime's fused int8 kernels saturate on x86 CPUs without VNNI
    sess = make_session(proto.SerializeToString(), optimize=False)
    return np.concatenate([sess.run(None, s)[0] for s in samples])


@pytest.fixture(scope="module")
def model_and_ranges():
    proto = _conv_model()
    samples = _samples()
    return ModelHandle.from_onnx(proto, "test", "0" * 64), _minmax_ranges(proto, samples), samples


@pytest.mark.parametrize("placement", ["weighted", "full"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_qdq_model_runs_and_stays_close_to_float(model_and_ranges, placement, symmetric):
    handle, ranges, samples = model_and_ranges
    q, summary = quantize_qdq(handle, ranges, QuantScheme(activation_symmetric=symmetric, placement=placement))
    onnx.checker.check_model(q.proto)
    ref, got = _run(handle.proto, samples), _run(q.proto, samples)
    err = np.abs(ref - got).max()
    cos = float((ref * got).sum() / np.linalg.norm(ref) / np.linalg.norm(got))
    # int8 with calibrated ranges: a bug (wrong axis, wrong bias scale) breaks these by far.
    assert cos > 0.995, cos
    assert err < 0.05 * np.abs(ref).max(), err
    assert summary["quantized_weights"] == 3


def test_weights_per_channel_and_bias_int32(model_and_ranges):
    handle, ranges, _ = model_and_ranges
    q, _ = quantize_qdq(handle, ranges, QuantScheme(placement="weighted"))
    inits = {t.name: numpy_helper.to_array(t) for t in q.proto.graph.initializer}
    dq = {n.output[0]: n for n in q.proto.graph.node if n.op_type == "DequantizeLinear"}
    conv1 = next(n for n in q.proto.graph.node if n.name == "conv1")
    wdq, bdq = dq[conv1.input[1]], dq[conv1.input[2]]
    w_q, w_s = inits[wdq.input[0]], inits[wdq.input[1]]
    assert w_q.dtype == np.int8 and w_s.shape == (8,)
    assert next(a.i for a in wdq.attribute if a.name == "axis") == 0
    assert np.abs(w_q).max() <= 127
    b_q, b_s = inits[bdq.input[0]], inits[bdq.input[1]]
    assert b_q.dtype == np.int32
    x_dq = dq[conv1.input[0]]
    s_in = float(inits[x_dq.input[1]])
    np.testing.assert_allclose(b_s, s_in * w_s, rtol=1e-6)
    fc = next(n for n in q.proto.graph.node if n.name == "fc")
    # Gemm with transB=1 stores W as [N, K]: the output channel axis is 0.
    assert next(a.i for a in dq[fc.input[1]].attribute if a.name == "axis") == 0


def test_weighted_placement_quantizes_only_weighted_inputs_and_residual_add(model_and_ranges):
    handle, ranges, _ = model_and_ranges
    q, _ = quantize_qdq(handle, ranges, QuantScheme(placement="weighted"))
    g = q.proto.graph
    producers = {o: n for n in g.node for o in n.output}
    for name in ("conv1", "conv2", "fc", "residual"):
        node = next(n for n in g.node if n.name == name)
        acts = [i for i in node.input[:2 if name != "residual" else 2]]
        assert all(producers[i].op_type == "DequantizeLinear" for i in acts if i in producers), name
    relu2 = next(n for n in g.node if n.name == "relu2")
    assert producers[relu2.input[0]].op_type == "Add"  # float between quantized ops


def test_full_placement_fuses_relu_and_quantizes_outputs(model_and_ranges):
    handle, ranges, _ = model_and_ranges
    q, _ = quantize_qdq(handle, ranges, QuantScheme(placement="full"))
    g = q.proto.graph
    producers = {o: n for n in g.node for o in n.output}
    relu1 = next(n for n in g.node if n.name == "relu1")
    assert producers[relu1.input[0]].name == "conv1"  # no Q/DQ between Conv and its Relu
    assert producers["y"].op_type == "DequantizeLinear"  # graph output keeps its name, quantized
    flatten = next(n for n in g.node if n.name == "flatten")
    gap_out_q = producers[flatten.input[0]]
    flat_out_q = producers["f"]
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    # Flatten is scale-preserving: same parameters in and out.
    assert float(inits[gap_out_q.input[1]]) == float(inits[flat_out_q.input[1]])


def test_symmetric_activations_have_zero_zero_points(model_and_ranges):
    handle, ranges, _ = model_and_ranges
    q, _ = quantize_qdq(handle, ranges, QuantScheme(activation_symmetric=True))
    inits = {t.name: numpy_helper.to_array(t) for t in q.proto.graph.initializer}
    for n in q.proto.graph.node:
        if n.op_type == "QuantizeLinear":
            assert int(inits[n.input[2]]) == 0


def test_keep_float_leaves_the_node_in_float(model_and_ranges):
    handle, ranges, _ = model_and_ranges
    q, summary = quantize_qdq(handle, ranges, QuantScheme(placement="weighted"), keep_float=("fc",))
    fc = next(n for n in q.proto.graph.node if n.name == "fc")
    assert fc.input[1] == "wg" and summary["keep_float"] == ["fc"]


def test_keep_float_unknown_node_is_a_clear_error(model_and_ranges):
    from edgec.errors import ConfigError

    handle, ranges, _ = model_and_ranges
    with pytest.raises(ConfigError, match="unknown node"):
        quantize_qdq(handle, ranges, QuantScheme(), keep_float=("nope",))


def test_qparams_cover_range_and_zero():
    p = activation_qparams(-1.0, 3.0, symmetric=False)
    assert -128 <= p.zero_point <= 127
    lo = (-128 - p.zero_point) * p.scale
    hi = (127 - p.zero_point) * p.scale
    assert lo <= -1.0 + p.scale and hi >= 3.0 - p.scale
    assert activation_qparams(0.0, 6.0, symmetric=True).zero_point == 0


def test_weight_quantization_roundtrip_error_is_half_a_step():
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    q, s = quantize_weight(w, 0)
    back = q.astype(np.float32) * s.reshape(-1, 1, 1, 1)
    assert np.all(np.abs(back - w) <= s.reshape(-1, 1, 1, 1) / 2 + 1e-7)
