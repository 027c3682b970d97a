"""The gate never ships worse than no gate; without a gate, a build below the accuracy floor fails."""

from __future__ import annotations

import numpy as np
import pytest

DIGITS: dict = {}


@pytest.fixture(autouse=True)
def _digits(digits_models):
    DIGITS.update(digits_models)


def _build(cli, model, out, *extra):
    return cli("build", model, "--calib", DIGITS["calib"], "--eval", DIGITS["eval"], "-o", out, "--force", "--json",
               *extra)


def test_gate_only_keeps_fallbacks_that_help_and_ends_no_worse(cli, tmp_path):
    r = _build(cli, DIGITS["outlier"], tmp_path / "ov", "--max-accuracy-drop", "1")
    assert r.code == 0, r.err
    gate = r.json()["report"]["accuracy_gate"]
    plain = gate["steps"][0]["target_drop"]
    assert gate["drop"] <= min(plain, 1.0)
    kept = [s["onnxruntime_drop"] for s in gate["steps"][1:] if s.get("kept")]
    assert kept and all(b < a for a, b in zip([gate["onnxruntime_drop"], *kept], kept))  # each kept move helped
    assert all(s["onnxruntime_drop"] >= gate["onnxruntime_drop"] - 1e-9 or s.get("kept") is not False
               for s in gate["steps"][1:])


def test_gate_that_cannot_meet_the_budget_writes_nothing_and_says_why(cli, tmp_path, monkeypatch):
    from edgec.targets.onnxruntime import ONNXRuntimeTarget

    monkeypatch.setattr(ONNXRuntimeTarget, "accuracy_fallbacks", ("calib-method",))
    r = _build(cli, DIGITS["outlier"], tmp_path / "x", "--target", "ort", "--metric", "cosine",
               "--max-accuracy-drop", "0.0001")
    assert r.code == 1 and r.err.count("\n") == 1
    assert "best drop" in r.err and ("the error comes" in r.err or "no single layer" in r.err)
    assert not (tmp_path / "x").exists()


def test_build_below_the_floor_fails_with_the_layers_and_the_flag(cli, tmp_path):
    # The outlier CNN's plain int8 build is really broken (cosine ~0.9, conv3's input keeps one level).
    r = _build(cli, DIGITS["outlier"], tmp_path / "b", "--target", "ort")
    assert r.code == 1 and r.err.count("\n") == 1
    assert "below the accuracy floor" in r.err and "cosine" in r.err
    assert "edgec debug layers" in r.err and "SQNR" in r.err
    assert "--max-accuracy-drop" in r.err and "--accept-low-accuracy" in r.err
    assert not (tmp_path / "b").exists()
    ok = _build(cli, DIGITS["outlier"], tmp_path / "b", "--target", "ort", "--accept-low-accuracy")
    assert ok.code == 0, ok.err
    assert ok.json()["manifest"]["config"]["accept_low_accuracy"] is True


def test_real_build_passes_the_floor_and_random_calibration_says_accuracy_is_unknown(cli, tmp_path):
    r = _build(cli, DIGITS["plain"], tmp_path / "b", "--target", "ort")
    assert r.code == 0, r.err
    acc = r.json()["report"]["accuracy"]
    assert acc["cosine"] >= 0.98 and acc["top1_agreement"] >= 0.9
    rnd = cli("build", DIGITS["plain"], "--calib", "random", "-o", tmp_path / "r", "--target", "ort", "--json")
    assert rnd.code == 0, rnd.err
    assert any(w.startswith("accuracy unknown") for w in rnd.json()["report"]["warnings"])


def test_mean_cosine_scores_empty_outputs_by_their_error():
    """A detector's map of an image without objects is ~1e-8 noise: its cosine says nothing."""
    from edgec.runtimes.harness import cosine_stats, mean_cosine

    rng = np.random.default_rng(0)
    full = rng.random(100)
    empty = rng.random(100) * 1e-9
    noisy = empty + rng.random(100) * 1e-9  # cosine vs `empty` is ~0.75, but both are empty
    assert mean_cosine([cosine_stats(full, full), cosine_stats(noisy, empty)]) > 0.999
    invented = empty + full  # the artifact reports objects the float model does not see
    assert mean_cosine([cosine_stats(full, full), cosine_stats(invented, empty)]) == pytest.approx(0.5)


def test_constant_channel_bias_is_not_clipped_and_depthwise_inputs_get_channel_scales():
    """A channel with ~0 weights and a real bias (BN folding) keeps its int32 bias; depthwise inputs are per channel."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgec.calibration import collect_ranges
    from edgec.calibration.channels import collect_channel_absmax
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.quantize import depthwise_inputs, quantize_qdq
    from edgec.compiler.quality import run_onnx
    from edgec.targets.openvino import OpenVINOTarget

    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    w1[1] = 1e-9  # constant channel: its output is its bias
    b1 = np.array([0.1, 5.0, -0.2, 0.3], np.float32)
    wd = rng.normal(size=(4, 1, 3, 3)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Conv", ["h", "wd"], ["y"], name="dw", group=4, pads=[1, 1, 1, 1])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(wd, "wd")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    handle = ModelHandle.from_onnx(proto, "m.onnx", "0")
    samples = [{"x": rng.normal(size=(1, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    assert depthwise_inputs(proto) == ["h"]
    chan = collect_channel_absmax(proto, samples, ["h"])
    q, summary = quantize_qdq(handle, collect_ranges(proto, samples), OpenVINOTarget.quant_scheme, (), chan)
    assert summary["widened_weight_scales"] == 1 and summary["per_channel_activations"] == 1
    qh = next(n for n in q.proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "h")
    assert next(a.i for a in qh.attribute if a.name == "axis") == 1
    got, want = run_onnx(q.proto, samples), run_onnx(onnx.ModelProto.FromString(proto.SerializeToString()), samples)
    for o, r in zip(got, want):
        err = np.abs(o["y"] - r["y"]).max(axis=(0, 2, 3)) / np.abs(r["y"]).max(axis=(0, 2, 3))
        assert err[1] < 0.05  # a clipped bias made this channel ~0 (error 1.0)
        assert err.max() < 0.05  # per-channel ranges cover every sample: nothing clips


def test_depthwise_channel_ranges_cover_the_one_sample_that_peaks():
    """A channel whose peak comes from one image keeps it (a mean of per-sample maxima clipped it: PP-LCNet 0.97)."""
    from onnx import TensorProto, helper

    from edgec.calibration.channels import collect_channel_absmax

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["h"], name="r")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 2, 4, 4])])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    samples = [{"x": np.full((1, 2, 4, 4), 1.0, np.float32)} for _ in range(7)]
    samples[3]["x"][0, 1, 2, 2] = 8.0
    got = collect_channel_absmax(proto, samples, ["h", "x"])
    np.testing.assert_allclose(got["h"], [1.0, 8.0])
    np.testing.assert_allclose(got["x"], [1.0, 8.0])


def test_floor_checks_every_output_not_only_the_first():
    """A second output that collapsed (constant: an mcu int16 view once kept the wrong scale)
    fails the floor even when the first output is right."""
    from edgec.compiler.accuracy_floor import below_floor
    from edgec.runtimes.harness import compare

    class Fixed:  # outputs computed from the feeds: the artifact with a constant second output
        def __init__(self, collapse: bool):
            self.collapse = collapse

        def infer(self, feeds):
            x = feeds["x"]
            return {"boxes": 2 * x, "scores": np.full_like(x, 0.5) if self.collapse else x - 1}

        def info(self):
            return {"name": "fixed"}

    rng = np.random.default_rng(0)
    samples = [{"x": rng.normal(size=(1, 16)).astype(np.float32)} for _ in range(4)]
    acc = compare(Fixed(True), Fixed(False), samples, classification=False)
    assert acc["cosine"] > 0.999 and acc["cosine_per_output"]["scores"] < 0.9
    assert below_floor(acc, classifier=False) == [f"output 'scores' cosine {acc['cosine_per_output']['scores']:.4f} < 0.98"]
    assert below_floor(compare(Fixed(False), Fixed(False), samples, classification=False), classifier=False) == []


def test_floor_scores_a_one_value_output_over_all_samples():
    """A face-presence logit (1 value) has a per-sample cosine that is only its sign: one
    logit near 0 rounded across 0 must not fail a build whose logits agree (face-landmark)."""
    from edgec.compiler.accuracy_floor import below_floor
    from edgec.runtimes.harness import compare

    class Flag:
        def __init__(self, shift: float):
            self.shift = shift

        def infer(self, feeds):
            x = feeds["x"]
            return {"mesh": 2 * x, "flag": x[:, :1] * 10 + self.shift}

        def info(self):
            return {"name": "flag"}

    samples = [{"x": np.full((1, 16), v, np.float32)} for v in (0.01, 0.8, -0.9, 1.5, -1.2, 0.7, 2.0, -0.6)]
    acc = compare(Flag(-0.2), Flag(0.0), samples, classification=False)  # sample 0: 0.1 -> -0.1
    assert acc["cosine_per_output"]["flag"] > 0.99 and below_floor(acc, classifier=False) == []
    same = compare(Flag(0.0), Flag(0.0), samples, classification=False)
    assert same["cosine_per_output"]["flag"] == pytest.approx(1.0)
