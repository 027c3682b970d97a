"""TensorRT's Q/DQ rules: the checker on good and deliberately bad graphs, and legalization."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from .trt_models import qdq_residual, qdq_weighted
from edgec.targets.tensorrt import accuracy
from edgec.targets.tensorrt.qdq_rules import check_qdq, expected_weight_axis, legalize


def rules(model, **kw):
    return sorted({v.rule for v in check_qdq(model, **kw).violations})


@pytest.mark.parametrize("op,trans_b", [("Conv", 0), ("ConvTranspose", 0), ("MatMul", 0), ("Gemm", 0), ("Gemm", 1)])
def test_good_placement_passes(op, trans_b):
    r = check_qdq(qdq_weighted(op, trans_b=trans_b))
    assert r.ok, [str(v) for v in r.violations]
    assert r.quantized_nodes == ["layer"]
    assert r.per_channel_weights == {"w_q": expected_weight_axis(helper.make_node(op, [], [], transB=trans_b), 1,
                                                                 4 if "Conv" in op else 2)}


@pytest.mark.parametrize("op,trans_b,bad_axis", [("Conv", 0, 1), ("ConvTranspose", 0, 0), ("MatMul", 0, 0),
                                                 ("Gemm", 0, 0), ("Gemm", 1, 1)])
def test_per_channel_weight_on_wrong_axis(op, trans_b, bad_axis):
    r = check_qdq(qdq_weighted(op, w_axis=bad_axis, trans_b=trans_b))
    (v,) = r.violations
    assert v.rule == "weight-axis" and v.node == "w_dq"
    assert f"axis {bad_axis}" in v.message and "output-channel" in v.message


def test_expected_axes():
    mk = helper.make_node
    assert expected_weight_axis(mk("Conv", [], []), 1, 4) == 0
    assert expected_weight_axis(mk("ConvTranspose", [], []), 1, 4) == 1
    assert expected_weight_axis(mk("MatMul", [], []), 1, 2) == 1
    assert expected_weight_axis(mk("MatMul", [], []), 1, 3) == 2  # batched weight [B, K, N]
    assert expected_weight_axis(mk("MatMul", [], []), 0, 2) == 0  # weight as first operand [M, K]
    assert expected_weight_axis(mk("Gemm", [], [], transB=0), 1, 2) == 1
    assert expected_weight_axis(mk("Gemm", [], [], transB=1), 1, 2) == 0


def test_nonzero_activation_zero_point():
    r = check_qdq(qdq_weighted(act_zp=3))
    assert {v.rule for v in r.violations} == {"zero-point"}
    assert {v.node for v in r.violations} == {"x_q", "x_dq"}
    assert "not 0" in r.violations[0].message


def test_uint8_activation():
    assert rules(qdq_weighted(act_zp=0, act_zp_type=np.uint8)) == ["dtype"]


def test_missing_zero_point_means_uint8():
    m = qdq_weighted()
    for n in m.graph.node:
        if n.name in ("x_q", "x_dq"):
            del n.input[2]
    r = check_qdq(m)
    assert {(v.rule, v.node) for v in r.violations} == {("zero-point", "x_q"), ("zero-point", "x_dq")}


def _set_init(m, name, value):
    idx = [t.name for t in m.graph.initializer].index(name)
    m.graph.initializer[idx].CopyFrom(numpy_helper.from_array(value, name))


def test_per_channel_activation_scale():
    m = qdq_weighted()
    _set_init(m, "x_s", np.array([0.05, 0.05], np.float32))
    _set_init(m, "x_z", np.zeros(2, np.int8))
    assert "activation-axis" in rules(m)


@pytest.mark.parametrize("op", ["Conv", "MatMul", "Gemm"])
def test_unquantized_activation_input_is_named(op):
    r = check_qdq(qdq_weighted(op, quantize_act=False))
    (v,) = r.violations
    assert (v.rule, v.node) == ("missing-qdq", "layer")
    assert "input 'x'" in v.message and "--keep-float layer" in v.message


def test_keep_float_node_may_skip_qdq():
    assert check_qdq(qdq_weighted(quantize_act=False), keep_float=("layer",)).ok


def test_unquantized_weight_of_quantized_layer():
    assert rules(qdq_weighted(quantize_weight=False)) == ["weight-not-quantized"]


def test_float_layer_without_any_qdq_is_only_a_note():
    r = check_qdq(qdq_weighted(quantize_act=False, quantize_weight=False))
    assert r.ok and r.float_weighted_nodes == ["layer"] and "runs it in float" in r.notes[0]


def test_residual_add_both_or_neither():
    assert check_qdq(qdq_residual(True, True)).ok
    r = check_qdq(qdq_residual(True, False))
    (v,) = r.violations
    assert (v.rule, v.node) == ("add-mixed", "residual_add") and "'skip'" in v.message
    r = check_qdq(qdq_residual(False, False))
    assert r.ok and any("residual Add 'residual_add'" in n for n in r.notes)


def test_quantize_without_dequantize():
    m = qdq_residual()
    # Feed the Q output straight into the Add.
    for n in m.graph.node:
        if n.name == "residual_add":
            n.input[1] = "sq"
    assert "q-without-dq" in rules(m)


def test_dq_scale_must_match_its_q():
    m = qdq_residual()
    for n in m.graph.node:
        if n.name == "s_dq":
            n.input[1] = "a_s"
    _set_init(m, "a_s", np.asarray(0.2, np.float32))
    assert "scale-mismatch" in rules(m)


def test_onnxruntime_qdq_needs_legalizing_then_passes(cnn_qdq):
    _, qdq, samples = cnn_qdq
    raw = check_qdq(qdq)
    assert {v.rule for v in raw.violations} == {"dtype"}  # int32 biases
    assert all("int32" in v.message for v in raw.violations)
    fixed, changes = legalize(qdq)
    assert changes == {"bias_folded": 3, "weights_requantized": 3}
    r = check_qdq(fixed)
    assert r.ok, [str(v) for v in r.violations]
    assert r.per_channel_weights == {"w1": 0, "w2": 0, "wf": 0}  # Gemm transB=1 -> axis 0
    assert sorted(r.quantized_nodes) == ["conv1", "conv2", "fc"]
    # Legalization is lossless in onnxruntime.
    a, b = accuracy.run_model(qdq, samples), accuracy.run_model(fixed, samples)
    assert all(np.array_equal(x["y"], y["y"]) for x, y in zip(a, b))


def test_legalized_model_has_only_int8_symmetric_qdq(mlp_qdq):
    _, qdq, _ = mlp_qdq
    fixed, _ = legalize(qdq)
    inits = {t.name: t for t in fixed.graph.initializer}
    from onnx import TensorProto

    for n in fixed.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = inits[n.input[2]]
            assert zp.data_type == TensorProto.INT8
            assert not numpy_helper.to_array(zp).any()
    r = check_qdq(fixed)
    assert r.ok and r.per_channel_weights == {"w1": 1, "w2": 1}  # MatMul [K, N] -> axis 1


def test_qdq_through_shape_ops_counts():
    """DQ -> Transpose -> MatMul (tied weights, attention K^T): TensorRT moves Q/DQ across Transpose."""
    m = qdq_weighted("MatMul")
    for n in m.graph.node:
        if n.name == "layer":
            n.input[0] = "xt"
    m.graph.node.insert(2, helper.make_node("Identity", ["xd"], ["xt"], name="ident"))
    r = check_qdq(m)
    assert r.ok and r.quantized_nodes == ["layer"]
