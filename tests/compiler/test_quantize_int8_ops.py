"""`QuantScheme.int8_input_ops` / `unified_scale_ops`: which element-wise, pooling and Concat inputs get Q/DQ.

The placement rules a runtime like OpenVINO's CPU plugin needs: Concat parts share one scale (and
the Concat output needs no pair of its own), a squeeze-excite gate is quantized but a decomposed
activation (x * Sigmoid(x)) is not, and a transformer's residual Add stays float.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgec.calibration.types import TensorRange
from edgec.compiler.model import ModelHandle
from edgec.compiler.quantize import quantize_qdq
from edgec.runtimes.onnxruntime_runner import make_session
from edgec.targets.base import QuantScheme

SCHEME = QuantScheme(placement="weighted", int8_input_ops=frozenset({"Add", "Mul", "GlobalAveragePool"}),
                     unified_scale_ops=frozenset({"Concat"}))


def _model(nodes, inits, out_shape, in_shape=(1, 3, 8, 8)) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _w(rng, name, *shape):
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)


def _ranges(proto, samples) -> dict[str, TensorRange]:
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    m.graph.output.extend(helper.make_empty_tensor_value_info(o) for n in m.graph.node for o in n.output if o != "y")
    sess = make_session(m.SerializeToString())
    names = [o.name for o in sess.get_outputs()]
    vals: dict[str, list] = {"x": [s["x"] for s in samples]}
    for s in samples:
        for k, v in zip(names, sess.run(names, s)):
            vals.setdefault(k, []).append(v)
    return {k: TensorRange(float(np.min(v)), float(np.max(v))) for k, v in vals.items()}


def _quantize(proto, scheme: QuantScheme = SCHEME):
    rng = np.random.default_rng(1)
    shape = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    samples = [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(8)]
    q, _ = quantize_qdq(ModelHandle.from_onnx(proto, "t", "0" * 64), _ranges(proto, samples), scheme)
    return q.proto, samples


def _dq_inputs(qproto, node_name):
    producer = {o: n for n in qproto.graph.node for o in n.output}
    node = next(n for n in qproto.graph.node if n.name == node_name)
    return [producer[i] if i in producer and producer[i].op_type == "DequantizeLinear" else None for i in node.input]


def test_concat_parts_share_one_scale_and_the_concat_output_has_no_pair():
    rng = np.random.default_rng(0)
    inits = [_w(rng, "wa", 4, 3, 1, 1), _w(rng, "wb", 4, 3, 1, 1), _w(rng, "wc", 2, 8, 1, 1)]
    inits[1] = numpy_helper.from_array(numpy_helper.to_array(inits[1]) * 20, "wb")  # a much wider part
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="ca"),
             helper.make_node("Conv", ["x", "wb"], ["b"], name="cb"),
             helper.make_node("Concat", ["a", "b"], ["cat"], name="concat", axis=1),
             helper.make_node("Conv", ["cat", "wc"], ["y"], name="cc")]
    proto = _model(nodes, inits, (1, 2, 8, 8))
    q, samples = _quantize(proto)
    inits_q = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    dqa, dqb = _dq_inputs(q, "concat")
    assert dqa is not None and dqb is not None
    assert float(inits_q[dqa.input[1]]) == float(inits_q[dqb.input[1]])
    assert int(inits_q[dqa.input[2]]) == int(inits_q[dqb.input[2]])
    assert _dq_inputs(q, "cc")[0] is None  # reads the concatenated int8 parts, no second pair
    ref = make_session(proto.SerializeToString())
    got = make_session(q.SerializeToString())
    for s in samples:
        r, g = ref.run(None, s)[0].ravel(), got.run(None, s)[0].ravel()
        assert float(r @ g / np.linalg.norm(r) / np.linalg.norm(g)) > 0.99


def test_squeeze_excite_gate_is_quantized_but_a_decomposed_swish_is_not():
    rng = np.random.default_rng(0)
    inits = [_w(rng, "w1", 8, 3, 3, 3), _w(rng, "wse", 8, 8, 1, 1), _w(rng, "w2", 2, 8, 1, 1)]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv", pads=[1] * 4),
             helper.make_node("Sigmoid", ["c"], ["sig"], name="sigmoid"),
             helper.make_node("Mul", ["c", "sig"], ["swish"], name="swish_mul"),
             helper.make_node("GlobalAveragePool", ["swish"], ["gap"], name="gap"),
             helper.make_node("Conv", ["gap", "wse"], ["se"], name="se_conv"),
             helper.make_node("HardSigmoid", ["se"], ["gate"], name="gate"),
             helper.make_node("Mul", ["swish", "gate"], ["gated"], name="se_mul"),
             helper.make_node("Conv", ["gated", "w2"], ["y"], name="out")]
    q, _ = _quantize(_model(nodes, inits, (1, 2, 8, 8)))
    assert _dq_inputs(q, "swish_mul") == [None, None]
    assert all(_dq_inputs(q, "se_mul")) and all(_dq_inputs(q, "gap"))


def test_transformer_residual_add_stays_float():
    rng = np.random.default_rng(0)
    inits = [_w(rng, "wq", 16, 16)]
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["h"], name="proj"),
             helper.make_node("Add", ["h", "x"], ["y"], name="residual")]
    q, _ = _quantize(_model(nodes, inits, (1, 4, 16), in_shape=(1, 4, 16)))
    assert _dq_inputs(q, "residual") == [None, None]


def test_a_concat_nothing_quantized_reads_stays_float():
    rng = np.random.default_rng(0)
    inits = [_w(rng, "wbox", 4, 3, 1, 1), _w(rng, "wcls", 2, 3, 1, 1)]
    nodes = [helper.make_node("Conv", ["x", "wbox"], ["box"], name="box"),
             helper.make_node("Conv", ["x", "wcls"], ["logit"], name="cls"),
             helper.make_node("Sigmoid", ["logit"], ["score"], name="sigmoid"),
             helper.make_node("Concat", ["box", "score"], ["y"], name="head", axis=1)]
    q, _ = _quantize(_model(nodes, inits, (1, 6, 8, 8)))
    # boxes (wide range) and scores (0..1) sharing one int8 scale would wipe out the scores
    assert _dq_inputs(q, "head") == [None, None]


def test_residual_maxpool_reads_the_pair_its_sibling_conv_reads():
    """A BlazeBlock's stride-2 residual: MaxPool(r) + Conv(Conv(r)). With ``hoist_shared_sources`` the
    pool reads r's pair (one Q/DQ, shared with the conv; OpenVINO pools in int8), and the Add's pool
    input gets no second pair; without it the pool runs in float and its output is requantized."""
    import dataclasses

    rng = np.random.default_rng(0)
    inits = [_w(rng, "w1", 8, 3, 3, 3), _w(rng, "w2", 8, 8, 3, 3), _w(rng, "w3", 2, 8, 1, 1)]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="c1", pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["c2"], name="c2", pads=[1] * 4, strides=[2, 2]),
             helper.make_node("MaxPool", ["r"], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Add", ["c2", "pool"], ["res"], name="res_add"),
             helper.make_node("Conv", ["res", "w3"], ["y"], name="c3")]
    proto = _model(nodes, inits, (1, 2, 4, 4))
    q, samples = _quantize(proto, dataclasses.replace(SCHEME, hoist_through=("MaxPool",), hoist_shared_sources=True))
    before, _ = _quantize(proto, dataclasses.replace(SCHEME, hoist_through=("MaxPool",)))
    pool_dq, conv_dq = _dq_inputs(q, "pool")[0], _dq_inputs(q, "c2")[0]
    assert pool_dq is not None and pool_dq is conv_dq  # one pair on r, read by both
    assert _dq_inputs(q, "res_add")[1] is None  # the pool's int8 output, no requantize
    assert _dq_inputs(before, "pool")[0] is None and _dq_inputs(before, "res_add")[1] is not None
    ref, got = make_session(proto.SerializeToString()), make_session(q.SerializeToString())
    for s in samples:
        r, g = ref.run(None, s)[0].ravel(), got.run(None, s)[0].ravel()
        assert float(r @ g / np.linalg.norm(r) / np.linalg.norm(g)) > 0.99


def _weight_levels(qproto, node_name) -> int:
    """The largest |int8 weight| of a quantized node."""
    inits = {t.name: numpy_helper.to_array(t) for t in qproto.graph.initializer}
    return int(np.abs(inits[_dq_inputs(qproto, node_name)[1].input[0]].astype(np.int32)).max())


def test_overflow_fix_puts_the_first_layers_weights_on_a_7_bit_grid():
    """`QuantScheme.overflow_fix`: ``first-layer`` narrows the weights of the layers that read the model's input
    (through a Pad: no weighted op between) to [-63, 63], where CPUs without VNNI sum pairs of u8 x s8 products in
    int16 (2 * 255 * 63 fits); deeper layers keep [-127, 127]; ``all`` narrows every layer but depthwise convs."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Pad", ["x", "pads"], ["xp"]),
             helper.make_node("Conv", ["xp", "w1"], ["c1"], name="first", kernel_shape=[3, 3]),
             helper.make_node("Conv", ["x", "w3"], ["c3"], name="also_first", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w4"], ["d1"], name="depthwise", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                              group=4),
             helper.make_node("Conv", ["d1", "w2"], ["c2"], name="second", kernel_shape=[1, 1]),
             helper.make_node("Add", ["c2", "c3"], ["y"])]
    inits = [_w(rng, "w1", 4, 3, 3, 3), _w(rng, "w2", 4, 4, 1, 1), _w(rng, "w3", 4, 3, 3, 3), _w(rng, "w4", 4, 1, 3, 3),
             numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")]
    proto = _model(nodes, inits, (1, 4, 8, 8))
    levels = {fix: {n: _weight_levels(_quantize(proto, QuantScheme(placement="weighted", overflow_fix=fix))[0], n)
                    for n in ("first", "also_first", "depthwise", "second")}
              for fix in (None, "first-layer", "all", "all-with-depthwise")}
    assert levels[None] == {"first": 127, "also_first": 127, "depthwise": 127, "second": 127}
    assert levels["first-layer"] == {"first": 63, "also_first": 63, "depthwise": 127, "second": 127}
    # depthwise kernels widen each product to int32: no pair sums to saturate
    assert levels["all"] == {"first": 63, "also_first": 63, "depthwise": 127, "second": 63}
    assert levels["all-with-depthwise"] == {"first": 63, "also_first": 63, "depthwise": 63, "second": 63}
