"""Which arm int8 builds the automatic 16x8 fallback judges, and on what score (`targets/tflite/int8_floor.py`).

The fallback itself (a CNN under the floor ships 16x8) is built end to end in
test_tflite_quant_modes.py::test_arm_gate_improves_a_planted_outlier_model.
"""

from __future__ import annotations

from types import SimpleNamespace

from onnx import TensorProto, helper

from edgec.targets.tflite.int8_floor import CNN_BAR, FLOOR_BAR, TRANSFORMER_BAR, _held_out_score, bar_for, pinned


def _model(*ops: str):
    nodes = [helper.make_node(op, ["x"], [f"y{i}"]) for i, op in enumerate(ops)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y0", TensorProto.FLOAT, [1, 4])])
    return SimpleNamespace(proto=helper.make_model(g))


def test_every_model_has_a_bar():
    assert bar_for(_model("Conv", "HardSwish")) == CNN_BAR == 0.99  # CNNs are judged too, with a margin
    assert bar_for(_model("Conv", "LSTM")) == FLOOR_BAR == 0.98
    assert bar_for(_model("MatMul", "Softmax")) == TRANSFORMER_BAR == 0.99


def test_explicit_int8_choices_pin_the_mode():
    def spec(**o):
        return SimpleNamespace(options=o)

    assert not pinned(spec()) and not pinned(spec(ranges="auto")) and not pinned(spec(io_dtype="float32"))
    for o in ({"ranges": "minmax"}, {"activations": "int8"}, {"float_ops": 2}, {"io_dtype": "int8"}):
        assert pinned(spec(**o)), o


def test_held_out_score_is_the_chosen_ranges_fold_score():
    q = {"ranges": {"method": "percentile", "auto_scores": {"minmax": 0.91, "percentile": 0.95},
                    "auto_scored_on": "held-out, 2 folds of 16"}}
    assert _held_out_score(q) == 0.95
    q["ranges"]["auto_scored_on"] = "calibration samples"  # under 4 samples: in-sample, no extra evidence
    assert _held_out_score(q) is None
    assert _held_out_score({"ranges": {"method": "minmax"}}) is None
