"""Which arm int8 builds the automatic 16x8 fallback judges, and on what score (`targets/tflite/int8_floor.py`).

The fallback itself (a CNN under the floor ships 16x8) is built end to end in
test_tflite_quant_modes.py::test_arm_gate_improves_a_planted_outlier_model.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from onnx import TensorProto, helper, numpy_helper

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
    for o in ({"ranges": "minmax"}, {"activations": "int8"}, {"float_ops": 2}, {"float_prefix": 0.6},
              {"io_dtype": "int8"}):
        assert pinned(spec(**o)), o


def test_held_out_score_is_the_chosen_ranges_fold_score():
    q = {"ranges": {"method": "percentile", "auto_scores": {"minmax": 0.91, "percentile": 0.95},
                    "auto_scored_on": "held-out, 2 folds of 16"}}
    assert _held_out_score(q) == 0.95
    q["ranges"]["auto_scored_on"] = "calibration samples"  # under 4 samples: in-sample, no extra evidence
    assert _held_out_score(q) is None
    assert _held_out_score({"ranges": {"method": "minmax"}}) is None


def _dead_input_tap_cnn():
    """x (2 channels, the second always 0) -> Conv -> LeakyRelu -> Conv -> LeakyRelu -> Conv.

    Output channel 0 of the first conv has one tap of 1000 on the dead input channel: its int8
    per-channel weight step (1000/127) rounds every other weight of that channel to 0, so the
    channel is lost in any int8-weight model (full-integer and 16x8 alike), and the debugger's
    per-op error ranks that conv first. Keeping it float restores the channel."""
    from edgec.calibration.types import CalibrationData

    from .conftest import handle_from_proto

    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.5, (8, 2, 3, 3)).astype(np.float32)
    w1[0, 1, 1, 1] = 1000.0
    w2 = rng.normal(0, 0.5, (8, 8, 1, 1)).astype(np.float32)
    w3 = rng.normal(0, 0.5, (4, 8, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h1"], pads=[1, 1, 1, 1]),
             helper.make_node("LeakyRelu", ["h1"], ["r1"]), helper.make_node("Conv", ["r1", "w2"], ["h2"]),
             helper.make_node("LeakyRelu", ["h2"], ["r2"]), helper.make_node("Conv", ["r2", "w3"], ["y"])]
    g = helper.make_graph(nodes, "dead_tap", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (w2, "w2"), (w3, "w3"))])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    xs = rng.normal(0, 1, (16, 1, 2, 8, 8)).astype(np.float32)
    xs[:, :, 1] = 0.0
    return handle_from_proto(proto, "dead_tap.onnx"), CalibrationData([{"x": x} for x in xs], "synthetic")


def test_ladder_ships_the_float_ops_rung_when_it_holds_the_bar(tmp_session):
    """Full-integer misses the CNN bar; the debugger's worst op kept float holds it, so 16x8 is never built."""
    from .conftest import lower

    model, calib = _dead_input_tap_cnn()
    built = lower(model, calib, "int8", tmp_session / "dead_tap")
    q = built.result.manifest["quantization"]
    fb = q["fallback"]
    assert q["mode"] == "full-integer with float ops" and fb["chosen"].startswith("float-ops"), fb
    assert [r["rung"] for r in fb["rungs"]][0] == "full-integer" and fb["16x8_worst_cosine"] is None, fb
    assert fb["full_integer_worst_cosine"] < 0.99 <= q["check_worst_cosine"] == fb["rungs"][-1]["worst_cosine"], fb
    assert 0 < len(q["float_nodes"]) <= 2, q  # at most half the 5 ranked ops
