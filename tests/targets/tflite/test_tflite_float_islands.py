"""The arm int8 ladder's transformer float islands (`targets/tflite/float_islands.py`): found from the
graph's structure, and shipped when full-integer misses the transformer bar."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.targets.tflite.float_islands import ISLAND_RUNGS, find_islands, island_nodes

SEQ, WIDTH = 16, 16


def _op(op, inputs, outputs):
    return {"op": op, "inputs": inputs, "outputs": outputs}


def _layer():
    """One encoder layer as onnx2tf lowers it: LayerNorm, attention with the row-min mask, GELU FFN."""
    return [
        _op("ADD", ["emb", "pos"], ["x"]),  # the residual ADD that feeds the norm
        _op("MEAN", ["x", "ax"], ["mean"]), _op("SQUARED_DIFFERENCE", ["x", "mean"], ["sqd"]),
        _op("MEAN", ["sqd", "ax"], ["var"]), _op("ADD", ["var", "eps"], ["var_eps"]), _op("RSQRT", ["var_eps"], ["rs"]),
        _op("MUL", ["rs", "gamma"], ["g"]), _op("MUL", ["x", "g"], ["xg"]), _op("MUL", ["mean", "g"], ["mg"]),
        _op("SUB", ["beta", "mg"], ["b"]), _op("ADD", ["xg", "b"], ["ln"]),                        # 10
        _op("FULLY_CONNECTED", ["ln", "wq", "bq"], ["q"]), _op("FULLY_CONNECTED", ["ln", "wk", "bk"], ["k"]),
        _op("TRANSPOSE", ["k", "perm"], ["kt"]), _op("BATCH_MATMUL", ["q", "kt"], ["qk"]),        # 14
        _op("REDUCE_MIN", ["qk", "ax"], ["rmin"]), _op("SUB", ["rmin", "margin"], ["fill"]),
        _op("LOGICAL_AND", ["m0", "m1"], ["keep"]), _op("SELECT_V2", ["keep", "qk", "fill"], ["masked"]),
        _op("SOFTMAX", ["masked"], ["p"]), _op("NOT_EQUAL", ["p", "p"], ["nan"]),                 # 19, 20
        _op("SELECT_V2", ["nan", "zero", "p"], ["p_ok"]), _op("FULLY_CONNECTED", ["ln", "wv", "bv"], ["v"]),
        _op("BATCH_MATMUL", ["p_ok", "v"], ["pv"]), _op("FULLY_CONNECTED", ["pv", "wo", "bo"], ["o"]),  # 23, 24
        _op("FULLY_CONNECTED", ["o", "w1", "b1"], ["h"]), _op("GELU", ["h"], ["gh"]),              # 25, 26
        _op("FULLY_CONNECTED", ["gh", "w2", "b2"], ["y"]),
    ]


def test_islands_follow_the_graph_structure():
    """Score path (matmul, mask ops, SOFTMAX), P·V, GELU with its two matmuls, LayerNorm with its residual ADD."""
    found = find_islands(_layer())
    assert found["attention-scores"] == [14, 15, 16, 18, 19]  # not the mask's LOGICAL_AND
    assert found["attention-values"] == [21, 23]
    assert found["gelu-ffn"] == [25, 26, 27]
    assert found["residual-norm"] == list(range(11))
    deny, counts = island_nodes(_layer(), ISLAND_RUNGS[0][1])
    assert deny == ["qk", "rmin", "fill", "masked", "p"] and counts["SOFTMAX"] == 1
    # A SOFTMAX that no matmul feeds (a classifier's head) is no attention.
    head = [_op("FULLY_CONNECTED", ["x", "w", "b"], ["logits"]), _op("SOFTMAX", ["logits"], ["prob"])]
    assert find_islands(head)["attention-scores"] == []


def _attention_model(scale: float):
    """One attention head, ``Softmax(q kᵀ · scale) v`` plus a residual: a large ``scale`` gives scores whose
    int8 step moves the softmax (the whisper encoder's failure)."""
    rng = np.random.default_rng(0)
    w = [numpy_helper.from_array(rng.standard_normal((WIDTH, WIDTH)).astype(np.float32) / 4, n) for n in "qkv"]
    consts = [numpy_helper.from_array(np.array(scale, np.float32), "scale")]
    nodes = [helper.make_node("MatMul", ["x", n], [f"{n}x"]) for n in "qkv"] + [
        helper.make_node("Transpose", ["kx"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["qx", "kt"], ["qk"]), helper.make_node("Mul", ["qk", "scale"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "vx"], ["y"])]
    g = helper.make_graph(nodes, "attention", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, SEQ, WIDTH])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, SEQ, WIDTH])], [*w, *consts])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.slow  # TensorFlow conversions (onnx2tf, TFLite converter)
def test_ladder_ships_the_attention_rung(tmp_session):
    """Full-integer misses the transformer bar on peaky attention; the score path float holds it (no 16x8)."""
    from edgec.calibration.types import CalibrationData

    from .conftest import handle_from_proto, lower

    model = handle_from_proto(_attention_model(4.0), "attention.onnx")
    rng = np.random.default_rng(1)
    calib = CalibrationData([{"x": rng.standard_normal((1, SEQ, WIDTH)).astype(np.float32)} for _ in range(16)],
                            "synthetic")
    built = lower(model, calib, "int8", tmp_session / "attention")
    q = built.result.manifest["quantization"]
    fb = q["fallback"]
    print(fb)
    assert fb["chosen"] == "attention" and q["float_islands"] == ["attention-scores"], fb
    assert fb["full_integer_worst_cosine"] < 0.99 <= q["check_worst_cosine"], fb
    assert fb["16x8_worst_cosine"] is None and q["float_op_counts"]["SOFTMAX"] == 1, q
    assert "attention-scores islands: " in (built.bundle / "README.md").read_text()
