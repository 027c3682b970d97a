"""--max-accuracy-drop: the accuracy gate on a digits CNN, on every target, and its failures."""

from __future__ import annotations

import json
import textwrap

import pytest
from tests.compiler.quant._quant_util import node_names

from edgec._deps import has_module

GATE_TARGETS = ["intel-cpu", "onnxruntime", "jetson", "mcu",
                pytest.param("arm", marks=[pytest.mark.slow,
                                           pytest.mark.skipif(not (has_module("tensorflow") and has_module("onnx2tf")),
                                                              reason="tflite extra not installed")])]


def _build(cli, model, out, *extra):
    return cli("build", model, "--calib", DIGITS["calib"], "--eval", DIGITS["eval"], "-o", out, "--force", "--json",
               *extra)


DIGITS: dict = {}


@pytest.fixture(autouse=True)
def _digits(digits_models):
    DIGITS.update(digits_models)


@pytest.mark.parametrize("target", GATE_TARGETS)
def test_gate_holds_digits_accuracy_on_every_target(cli, tmp_path, target):
    r = _build(cli, DIGITS["plain"], tmp_path / target, "--target", target, "--precision", "int8",
               "--max-accuracy-drop", "1")
    assert r.code == 0, r.err
    rep = r.json()["report"]
    la = rep["accuracy"]["label_accuracy"]
    assert la["reference"] - la["artifact"] <= 0.01
    gate = rep["accuracy_gate"]
    assert gate["passed"] and gate["metric"] == "top1" and gate["samples"] == 397
    assert gate["drop"] == pytest.approx(100 * (la["reference"] - la["artifact"]), abs=1e-3)


def test_gate_keeps_exactly_the_hard_layer_in_float(cli, tmp_path, monkeypatch):
    from edgec.targets.openvino import OpenVINOTarget

    # Only keep-float here (by default the gate may also fix this model by recalibrating one tensor).
    monkeypatch.setattr(OpenVINOTarget, "accuracy_fallbacks", ("keep-float",))
    conv3 = node_names(DIGITS["outlier"], "Conv")[2]
    r = _build(cli, DIGITS["outlier"], tmp_path / "ov", "--max-accuracy-drop", "1")
    assert r.code == 0, r.err
    rep = r.json()["report"]
    gate = rep["accuracy_gate"]
    assert gate["steps"][0]["target_drop"] > 3  # the plain int8 build loses several points
    assert gate["kept_float"] == [conv3]
    assert gate["fallbacks"][0]["why"].startswith("alone it lowers the onnxruntime drop")
    la = rep["accuracy"]["label_accuracy"]
    assert la["reference"] - la["artifact"] <= 0.01
    # The bundle is what was verified: its quantization pass kept that node in float.
    q = next(p for p in r.json()["manifest"]["passes"] if p["name"] == "quantize")
    assert q["config"]["keep_float"] == [conv3]


def test_gate_switches_calibration_on_integer_only_mcu(cli, tmp_path):
    r = _build(cli, DIGITS["outlier"], tmp_path / "mcu", "--target", "mcu", "--max-accuracy-drop", "1")
    assert r.code == 0, r.err
    gate = r.json()["report"]["accuracy_gate"]
    assert gate["kept_float"] == [] and gate["calib_method_overrides"]
    assert gate["drop"] <= 1


def test_gate_failure_names_best_result_and_layers(cli, tmp_path, monkeypatch):
    from edgec.targets.onnxruntime import ONNXRuntimeTarget

    monkeypatch.setattr(ONNXRuntimeTarget, "accuracy_fallbacks", ("calib-method",))
    r = _build(cli, DIGITS["outlier"], tmp_path / "x", "--target", "ort", "--metric", "cosine",
               "--max-accuracy-drop", "0.0001")
    assert r.code == 1
    assert r.err.count("\n") == 1 and r.err.startswith("error: --max-accuracy-drop 0.0001 not met on target "
                                                          "'onnxruntime': best drop")
    assert "cosine points" in r.err and "most sensitive:" in r.err and "try --precision fp16" in r.err
    assert not (tmp_path / "x").exists()


def test_gate_without_fallbacks_fails_clearly(cli, tmp_path, monkeypatch):
    from edgec.targets.onnxruntime import ONNXRuntimeTarget

    monkeypatch.setattr(ONNXRuntimeTarget, "accuracy_fallbacks", ())
    r = _build(cli, DIGITS["outlier"], tmp_path / "x", "--target", "ort", "--max-accuracy-drop", "1")
    assert r.code == 1
    assert "exceeds --max-accuracy-drop 1 and target onnxruntime cannot keep layers in float" in r.err


def test_custom_metric_file(cli, tmp_path, monkeypatch):
    from edgec.targets.onnxruntime import ONNXRuntimeTarget

    # Which fallback wins depends on the weights (recalibrating the outlier tensor can fix some
    # trainings alone); keep-float alone makes the expected result hold for any weights.
    monkeypatch.setattr(ONNXRuntimeTarget, "accuracy_fallbacks", ("keep-float",))
    f = tmp_path / "m.py"
    f.write_text(textwrap.dedent('''
        import json, numpy as np
        def score(outputs, reference_outputs, labels):
            assert isinstance(outputs, list) and isinstance(outputs[0], dict) and labels is not None
            out = next(iter(reference_outputs[0]))
            return 100.0 * float(np.mean([o[out].argmax() == l for o, l in zip(outputs, labels)]))
    '''))
    r = _build(cli, DIGITS["outlier"], tmp_path / "b", "--target", "ort", "--metric", f"{f}:score",
               "--max-accuracy-drop", "1")
    assert r.code == 0, r.err
    gate = r.json()["report"]["accuracy_gate"]
    assert gate["metric"] == f"{f}:score" and gate["passed"]
    assert gate["kept_float"] or gate["calib_method_overrides"] or gate["bias_correction"]
    bad = cli("build", DIGITS["plain"], "--calib", DIGITS["calib"], "-o", tmp_path / "c", "--metric", f"{f}:nope",
              "--max-accuracy-drop", "1")
    assert bad.code == 1 and "has no function 'nope'" in bad.err
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["config"]["max_accuracy_drop"] == 1


def test_screen_keeps_the_worst_layer_and_its_input(digits_models):
    """Large models: a one-run screen picks which fallbacks to measure; it must keep the culprit."""
    from edgec.calibration import collect_ranges, load_calibration_data
    from edgec.compiler.loaders import load_model
    from edgec.compiler.optimize import optimize
    from edgec.compiler.quant_stage import Int8Quantizer
    from edgec.compiler.sensitivity import screen
    from edgec.targets.openvino import OpenVINOTarget

    h, _ = optimize(load_model(str(digits_models["outlier"])))
    data = load_calibration_data(str(digits_models["calib"]), h.inputs, max_samples=16)
    q = Int8Quantizer(h, h, collect_ranges(h.proto, data.samples), OpenVINOTarget.quant_scheme, data)
    quant, _ = q.quantize()
    cands = q.candidates(quant, ("keep-float", "calib-method"))
    kept = screen(h.proto, quant.proto, cands, data.samples[:8])
    conv3 = node_names(digits_models["outlier"], "Conv")[2]
    assert kept[0].kind == "keep-float" and kept[0].key == conv3
    relu2 = next(n.output[0] for n in h.proto.graph.node if n.op_type == "Relu" and n.input[0] ==
                 next(c.output[0] for c in h.proto.graph.node if c.op_type == "Conv" and c.name ==
                      node_names(digits_models["outlier"], "Conv")[1]))
    assert relu2 in {c.key for c in kept[:4] if c.kind == "calib-method"}


def _digits_quantizer(digits_models, bias_correction=False):
    from edgec.calibration import collect_ranges, load_calibration_data
    from edgec.compiler.loaders import load_model
    from edgec.compiler.optimize import optimize
    from edgec.compiler.quant_stage import Int8Quantizer
    from edgec.targets.openvino import OpenVINOTarget

    h, _ = optimize(load_model(str(digits_models["outlier"])))
    data = load_calibration_data(str(digits_models["calib"]), h.inputs, max_samples=16)
    return Int8Quantizer(h, h, collect_ranges(h.proto, data.samples), OpenVINOTarget.quant_scheme, data,
                         bias_correction=bias_correction)


def test_rank_screens_on_few_samples_and_measures_each_state_once(digits_models):
    """The gate's ranking: a screen on a quarter of the samples keeps the culprit; no state runs twice."""
    import numpy as np

    from edgec.compiler.quality import resolve_metric, run_onnx
    from edgec.compiler.sensitivity import SCREEN_KEEP, Evaluator, FallbackState, rank

    q = _digits_quantizer(digits_models)
    ev_data = np.load(digits_models["eval"])
    samples = [{"image": ev_data["image"][i:i + 1]} for i in range(64)]
    labels = ev_data["labels"][:64]
    ev = Evaluator(q, samples, run_onnx(q.reference.proto, samples), labels,
                   resolve_metric("top1", has_labels=True, classifier=True))
    base, ranked = rank(ev, FallbackState(), ("keep-float", "calib-method"))
    conv3 = node_names(digits_models["outlier"], "Conv")[2]
    assert base > 3 and ranked and ranked[0].drop < base
    assert conv3 in {fb.key for fb in ranked[:2]}  # keep conv3 in float, or recalibrate its input
    full = sum(1 for (_, n) in ev._drops if n == len(samples))
    screened = len(ev._drops) - full
    assert screened > SCREEN_KEEP and full <= 1 + SCREEN_KEEP and ev.samples_run < ev.sessions * len(samples)
    assert ev.sessions == 1 + screened and not ev._kept  # the best screened keep their sessions, then free them
    runs = ev.sessions
    assert ev.drop(FallbackState().plus(ranked[0])) == ranked[0].drop and ev.sessions == runs  # measured once


def test_bias_correction_variants_share_the_float_outputs(digits_models):
    from edgec.compiler.bias_correction import correct_bias

    q = _digits_quantizer(digits_models, bias_correction=True)
    first, _ = q.quantize()
    assert q._bias_float_outputs  # filled by the first variant, reused by the next ones
    again, _ = q.quantize()
    plain, _ = q.quantize(bias_correction=False)
    fresh, _ = correct_bias(q.reference, plain, q.calibration.samples)
    assert first.proto.SerializeToString() == again.proto.SerializeToString() == fresh.proto.SerializeToString()


def test_frozen_bias_correction_measures_once_and_matches_the_measured_model(digits_models):
    """The gate's variants reuse the plain build's bias shifts: the same bytes on the state they were
    measured on, no model run after that, and no shift on a layer the gate then keeps in float."""
    from unittest import mock

    from edgec.compiler import bias_correction

    q = _digits_quantizer(digits_models, bias_correction=True)
    measured, _ = q.quantize()
    q.freeze_bias_correction()
    first, info = q.quantize()  # measures (the gate's plain state)
    assert info["bias_correction"]["layers"] > 1
    layer = next(iter(q._bias_shifts))
    with mock.patch.object(bias_correction, "_error", side_effect=AssertionError("ran the model")):
        again, info2 = q.quantize()
        kept, info3 = q.quantize(keep_float=(layer,))
    assert info2["bias_correction"]["frozen"] and layer not in info3["bias_correction"]["mean_abs_shift"]
    assert measured.proto.SerializeToString() == first.proto.SerializeToString() == again.proto.SerializeToString()
    fresh, _ = q.quantize(keep_float=(layer,), bias_correction=False)
    assert kept.proto.SerializeToString() != fresh.proto.SerializeToString()  # the other layers keep their shifts


def test_cosine_metric_scores_the_worst_output():
    """A detector's second head can lose what its first output keeps: the gate sees the worst one."""
    import numpy as np

    from edgec.compiler.quality import resolve_metric

    rng = np.random.default_rng(0)
    ref = [{"boxes": rng.normal(size=64), "scores": rng.normal(size=16)} for _ in range(4)]
    out = [{"boxes": r["boxes"], "scores": r["scores"] + rng.normal(scale=0.5, size=16)} for r in ref]
    cos = resolve_metric("cosine", has_labels=False, classifier=False)
    want = np.mean([o["scores"] @ r["scores"] / np.linalg.norm(o["scores"]) / np.linalg.norm(r["scores"])
                    for o, r in zip(out, ref)])
    assert cos.drop(out, ref) == pytest.approx(100 * (1 - want))
    assert cos.drop([{**o, "scores": r["scores"]} for o, r in zip(out, ref)], ref) == pytest.approx(0, abs=1e-9)


def test_top1_margin_is_the_closest_call_against_the_reference_class():
    import numpy as np

    from edgec.compiler.sensitivity import top1_margin

    ref = [{"p": np.array([[0.1, 0.6, 0.3]])}, {"p": np.array([[0.5, 0.2, 0.3]])}]
    assert top1_margin([{"p": np.array([[0.1, 0.5, 0.4]])}, {"p": np.array([[0.7, 0.1, 0.2]])}],
                       ref) == pytest.approx(0.1)
    assert top1_margin([{"p": np.array([[0.1, 0.4, 0.5]])}, ref[1]], ref) == pytest.approx(-0.1)  # flipped


def test_headroom_ranking_keeps_the_drop_and_widens_the_margin(digits_models):
    """onnxruntime within budget, the target not: candidates are ranked by the margin they win."""
    import numpy as np

    from edgec.compiler.quality import resolve_metric, run_exact_qdq, run_onnx
    from edgec.compiler.sensitivity import HEADROOM_EPS, Evaluator, FallbackState, rank, top1_margin

    q = _digits_quantizer(digits_models)
    ev_data = np.load(digits_models["eval"])
    samples = [{"image": ev_data["image"][i:i + 1]} for i in range(32)]
    refs = run_onnx(q.reference.proto, samples)
    ev = Evaluator(q, samples, refs, None, resolve_metric("top1", has_labels=False, classifier=True))
    state = FallbackState()
    # The evaluator runs the Q/DQ graph as written (`quality.exact_qdq_session`), the same on every CPU.
    assert ev.shortfall(state) == pytest.approx(-top1_margin(run_exact_qdq(q.quantize()[0].proto, samples), refs))
    base, ranked = rank(ev, state, ("calib-method",), headroom=True)
    assert ranked, "some tensor's range widens the closest call"
    assert all(fb.drop <= base and fb.shortfall < ev.shortfall(state) - HEADROOM_EPS for fb in ranked)
    assert [fb.shortfall for fb in ranked if fb.drop == ranked[0].drop] == sorted(
        fb.shortfall for fb in ranked if fb.drop == ranked[0].drop)
