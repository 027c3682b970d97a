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
    assert deny == ["qk", "rmin", "fill", "masked", "p", "p_ok", "pv"] and counts["SOFTMAX"] == 1
    # A SOFTMAX that no matmul feeds (a classifier's head) is no attention.
    head = [_op("FULLY_CONNECTED", ["x", "w", "b"], ["logits"]), _op("SOFTMAX", ["logits"], ["prob"])]
    assert find_islands(head)["attention-scores"] == []


def test_every_rung_with_the_score_path_keeps_p_v_float():
    """A float score path feeding an int8 P·V is requantized to the SOFTMAX's fixed 1/256 step in between, which
    absorbed it on whisper-tiny (outputs bit-identical to full-integer)."""
    for name, kinds in ISLAND_RUNGS:
        assert ("attention-scores" in kinds) == ("attention-values" in kinds), name


def _attention_model(scale: float, seq: int = SEQ):
    """One attention head, ``Softmax(q kᵀ · scale) v``: a large ``scale`` gives peaky scores whose int8 step
    moves the softmax."""
    rng = np.random.default_rng(0)
    w = [numpy_helper.from_array(rng.standard_normal((WIDTH, WIDTH)).astype(np.float32) / 4, n) for n in "qkv"]
    nodes = [helper.make_node("MatMul", ["x", n], [f"{n}x"]) for n in "qkv"] + [
        helper.make_node("Transpose", ["kx"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["qx", "kt"], ["qk"]), helper.make_node("Mul", ["qk", "scale"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "vx"], ["y"])]
    g = helper.make_graph(nodes, "attention", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, WIDTH])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, WIDTH])],
                          [*w, numpy_helper.from_array(np.array(scale, np.float32), "scale")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _samples(n: int, seq: int = SEQ) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{"x": rng.standard_normal((1, seq, WIDTH)).astype(np.float32)} for _ in range(n)]


@pytest.mark.slow  # TensorFlow conversions (onnx2tf, TFLite converter)
def test_ladder_ships_the_attention_rung(tmp_session, monkeypatch):
    """Peaky attention: full-integer scores 0.977, the score path float 0.988 (16x8: 0.999). With the bar
    between the two, the attention rung ships: its ops run float and the README names them."""
    from edgec.calibration.types import CalibrationData
    from edgec.targets.tflite import int8_floor
    from edgec.targets.tflite.quant_modes import float_ops_in

    from .conftest import handle_from_proto, lower

    monkeypatch.setattr(int8_floor, "TRANSFORMER_BAR", 0.985)
    built = lower(handle_from_proto(_attention_model(8.0), "attention.onnx"), CalibrationData(_samples(16), "test"),
                  "int8", tmp_session / "attention")
    q = built.result.manifest["quantization"]
    fb = q["fallback"]
    assert fb["chosen"] == "attention" and q["float_islands"] == ["attention-scores", "attention-values"], fb
    assert fb["full_integer_worst_cosine"] < 0.985 <= q["check_worst_cosine"], fb
    assert fb["16x8_worst_cosine"] is None and q["float_op_counts"] == {"BATCH_MATMUL": 2, "MUL": 1, "SOFTMAX": 1}
    assert {"BATCH_MATMUL", "SOFTMAX"} <= set(float_ops_in((built.bundle / "model.tflite").read_bytes()))
    assert "attention-scores + attention-values islands: BATCH_MATMUL x2, MUL x1, SOFTMAX x1" in \
        (built.bundle / "README.md").read_text()
    # The ladder judges a transformer on its calibration samples, so `--ranges auto` scores there too.
    assert q["ranges"]["auto_scored_on"] == "calibration samples", q["ranges"]


@pytest.mark.slow  # a TFLite conversion
def test_litert_probe_counts_aborts_not_a_kernels_error_on_zero_inputs():
    """An int8 DIV raises on a divisor at its zero point, which the probe's zero feed gives (MiniLM's pooling
    divides by the mask's sum): that is no abort, so the rungs are scored on the real samples."""
    import tensorflow as tf

    from edgec.targets.tflite.ranges import litert_accepts
    from edgec.targets.tflite.tflite_io import interpreter_class

    spec = tf.TensorSpec([1, 4], tf.float32)
    fn = tf.function(lambda x, y: x / y, input_signature=[spec, spec])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    rng = np.random.default_rng(0)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, 4)).astype(np.float32),
                                            rng.uniform(0.5, 2, (1, 4)).astype(np.float32)] for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    data = conv.convert()
    interp = interpreter_class()[0](model_content=data)
    interp.allocate_tensors()
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    with pytest.raises(RuntimeError, match="zero_point"):
        interp.invoke()
    assert litert_accepts(data)


def test_a_large_transformer_calibrates_the_converter_on_two_samples(monkeypatch):
    """The converter's own calibration (5x slower than LiteRT) is cut to 2 samples only for a transformer under
    `--ranges auto` whose float activations per sample exceed the bound (whisper-tiny: 210M elements)."""
    from types import SimpleNamespace

    import tensorflow as tf

    from edgec.targets.tflite import quant_modes

    fn = tf.function(lambda x: tf.matmul(x, tf.ones([WIDTH, 8])),
                     input_signature=[tf.TensorSpec([1, SEQ, WIDTH], tf.float32)])
    float_model = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert()
    # the input and the matmul's output; the weights are a buffer, no activation
    assert quant_modes.activation_elements(float_model) == SEQ * WIDTH + SEQ * 8
    calib = _samples(5)
    transformer = SimpleNamespace(model=SimpleNamespace(proto=_attention_model(1.0)))
    assert quant_modes.converter_calibration(transformer, calib, "auto", float_model) == calib
    monkeypatch.setattr(quant_modes, "LARGE_ACTIVATION_ELEMENTS", SEQ * WIDTH)
    assert quant_modes.converter_calibration(transformer, calib, "auto", float_model) == calib[:2]
    assert quant_modes.converter_calibration(transformer, calib, "minmax", float_model) == calib  # the final ranges
    cnn = _attention_model(1.0)
    del cnn.graph.node[-2]  # no Softmax: no transformer
    assert quant_modes.converter_calibration(SimpleNamespace(model=SimpleNamespace(proto=cnn)), calib, "auto",
                                             float_model) == calib


@pytest.mark.slow  # TensorFlow conversions (onnx2tf, TFLite converter)
def test_attention_rung_keeps_a_long_sequences_softmax_output_float(tmp_session):
    """Near-uniform attention over 512 positions (whisper's 1500 frames in small): P's values (~1/512) are under
    int8's fixed SOFTMAX output step (1/256), so an int8 P·V reads them rounded to 0-2 steps. The attention rung
    keeps P float up to P·V (LiteRT: the SOFTMAX's output is a float tensor the BATCH_MATMUL reads) and holds."""
    from edgec.calibration.types import CalibrationData
    from edgec.targets.tflite.tflite_io import interpreter_class

    from .conftest import handle_from_proto, lower

    seq = 512
    built = lower(handle_from_proto(_attention_model(0.05, seq), "long.onnx"),
                  CalibrationData(_samples(8, seq), "test"), "int8", tmp_session / "long-attention")
    fb = built.result.manifest["quantization"]["fallback"]
    assert fb["full_integer_worst_cosine"] < 0.99 <= fb["rungs"][1]["worst_cosine"], fb
    assert fb["chosen"] == "attention", fb
    interp = interpreter_class()[0](model_content=(built.bundle / "model.tflite").read_bytes())
    dtype = {d["index"]: d["dtype"] for d in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # noqa: SLF001 - LiteRT's only per-op view
    softmax_out = next(op["outputs"][0] for op in ops if op["op_name"] == "SOFTMAX")
    readers = [op for op in ops if softmax_out in op["inputs"]]
    assert dtype[softmax_out] == np.float32 and [op["op_name"] for op in readers] == ["BATCH_MATMUL"], readers
