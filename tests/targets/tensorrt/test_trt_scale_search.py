"""TensorRT's per-tensor symmetric scale search and depthwise input scales (jetson int8)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgec.calibration import CalibrationData
from edgec.calibration.collect import collect_ranges, collect_ranges_multi
from edgec.compiler.depthwise_scaling import scale_depthwise_inputs
from edgec.compiler.quality import run_onnx
from edgec.compiler.quant_stage import Int8Quantizer
from edgec.runtimes.metrics import relative_output_error
from edgec.compiler.quantize import activation_qparams, quantize_qdq
from edgec.targets.tensorrt import TRT_CALIBRATORS, TensorRTTarget
from edgec.targets.tensorrt.qdq_rules import check_qdq, legalize

from .trt_models import _w, handle, make_model

SCHEME = TensorRTTarget.quant_scheme


def _outlier_samples(n=8, shape=(1, 8, 16, 16), outlier=200.0, seed=0):
    """Normal values, and one value of ``outlier`` in channel 7 of the first sample (a rare spike)."""
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]
    xs[0][0, 7, 3, 3] = outlier
    return [{"x": x} for x in xs]


def _pointwise(seed=0, spike_weight=1.0):
    """Conv 1x1 8->8; the weights reading input channel 7 scaled by ``spike_weight``."""
    rng = np.random.default_rng(seed)
    w = _w(rng, 8, 8, 1, 1)
    w[:, 7] *= spike_weight
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
                      {"w": w, "b": _w(rng, 8)})


def test_trt_calibrators_clip_a_spike_and_stay_symmetric():
    alt = collect_ranges_multi(_pointwise(), _outlier_samples(), TRT_CALIBRATORS, tensors=["x"])
    assert set(alt) == {label for label, _, _ in TRT_CALIBRATORS}
    t = {label: max(-r["x"].rmin, r["x"].rmax) for label, r in alt.items()}
    assert t["minmax"] == 200.0
    assert 2.5 < t["percentile-99.99"] < 20.0  # clips the spike, keeps the bulk (|x| <~ 4.5)
    # TensorRT's KL search ties over every window past a lone spike and, as there, takes the largest;
    # MSE keeps a spike this large (clipping it would cost more than the bulk's rounding).
    assert t["entropy"] <= t["minmax"] and t["mse"] <= t["minmax"]
    # The clipping scale quantizes the bulk with ~1% error; min/max's leaves it 1-2 levels.
    x = np.concatenate([s["x"].ravel() for s in _outlier_samples()])
    bulk = x[np.abs(x) < 5]

    def err(thr):
        s = activation_qparams(-thr, thr, True).scale
        return float(np.sqrt(np.mean((np.clip(np.round(bulk / s), -128, 127) * s - bulk) ** 2)))
    assert err(t["percentile-99.99"]) < 0.05 < err(t["minmax"])


def test_auto_picks_a_clipping_scale_by_output_error():
    # The spike sits in a channel the next layer barely reads: only the error at the outputs shows
    # that clipping it costs nothing while every other channel gets 40x finer steps.
    model = handle(_pointwise(spike_weight=1e-3))
    samples = _outlier_samples()
    calib = CalibrationData(samples, "test")
    ranges = collect_ranges(model.proto, samples, "minmax")
    q = Int8Quantizer(model, model, ranges, SCHEME, calib)
    info = q.choose_auto()
    assert info["chosen"].get("x") not in (None, "minmax")
    assert q.ranges["x"].rmax < 20.0
    refs = run_onnx(model.proto, samples)
    plain, _ = quantize_qdq(model, ranges, SCHEME)
    auto, _ = q.quantize()
    e_plain = relative_output_error(run_onnx(plain.proto, samples), refs)
    e_auto = relative_output_error(run_onnx(auto.proto, samples), refs)
    assert e_auto < 0.1 * e_plain, (e_auto, e_plain)
    assert check_qdq(legalize(auto.proto)[0]).ok


def _depthwise(seed=0):
    """Conv 1x1 (channel ranges spread 100x) -> Relu -> depthwise 3x3 (undoing the spread) -> y."""
    rng = np.random.default_rng(seed)
    spread = (100.0 ** (-np.arange(8) / 7.0)).reshape(8, 1, 1, 1).astype(np.float32)
    w1 = _w(rng, 8, 8, 1, 1) * spread
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="pw"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], name="dw", group=8, pads=[1, 1, 1, 1])]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
                      {"w1": w1, "w2": _w(rng, 8, 1, 3, 3) / spread, "b2": _w(rng, 8, scale=0.01)})


def test_depthwise_input_scales_move_into_the_weights():
    model = handle(_depthwise())
    samples = _outlier_samples(outlier=1.0)
    scaled, info = scale_depthwise_inputs(model, samples)
    assert info["scaled_depthwise"] == 1
    refs = run_onnx(model.proto, samples)
    assert relative_output_error(run_onnx(scaled.proto, samples), refs) < 1e-10  # same float function
    errs = []
    for m in (model, scaled):
        q, _ = quantize_qdq(m, collect_ranges(m.proto, samples, "minmax"), SCHEME)
        assert check_qdq(legalize(q.proto)[0]).ok
        errs.append(relative_output_error(run_onnx(q.proto, samples), refs))
    # Per tensor, the 100x smaller channels keep ~1 level; scaled, every channel spans the grid.
    assert errs[1] < 0.05 * errs[0], errs


def test_jetson_int8_build_records_the_search(tmp_path):
    from edgec import api
    from edgec.compiler.config import BuildConfig

    onnx.save(_depthwise(), tmp_path / "dw.onnx")
    xs = np.concatenate([s["x"] for s in _outlier_samples(n=12, outlier=1.0)])
    np.savez(tmp_path / "calib.npz", x=xs)
    res = api.build(BuildConfig.from_flat(model=str(tmp_path / "dw.onnx"), output=tmp_path / "b", target="jetson",
                                precision="int8", calib=str(tmp_path / "calib.npz"), force=True))
    passes = {p["name"]: p["config"] for p in res.manifest["passes"]}
    assert passes["depthwise-input-scaling"]["scaled_depthwise"] == 1
    assert set(passes["calibrate-auto"]["methods"]) == {label for label, _, _ in TRT_CALIBRATORS}
    assert res.manifest["calibration"]["method"] == "auto"
    assert res.report["accuracy"]["cosine"] > 0.999


def test_one_channel_head_keeps_matching_qdq_pairs_after_legalize():
    # A per-channel weight scale of one channel (YOLOX's objectness head) carries axis 0; the
    # QuantizeLinear legalize adds in front of it must carry the same axis, or TensorRT refuses
    # the pair (found on the ddddocr YOLOX detector).
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="head")]
    model = handle(make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
                              {"w": _w(rng, 1, 8, 1, 1), "b": _w(rng, 1)}))
    samples = _outlier_samples(shape=(1, 8, 4, 4), outlier=1.0)
    q, _ = quantize_qdq(model, collect_ranges(model.proto, samples, "minmax"), SCHEME)
    legal, changes = legalize(q.proto)
    assert changes["weights_requantized"] == 1
    report = check_qdq(legal)
    assert report.ok, report.violations


def test_screen_judges_each_tensor_by_its_own_histogram():
    # One calibration pass keeps the histograms; each candidate's own Q/DQ error comes from them
    # (no model run) and matches quantizing the values themselves.
    from edgec.compiler.scale_screen import local_errors, screened

    rng = np.random.default_rng(0)
    samples = [{"x": rng.laplace(size=(1, 8, 16, 16)).astype(np.float32)} for _ in range(8)]
    hists: dict = {}
    alt = collect_ranges_multi(_pointwise(), samples, TRT_CALIBRATORS, tensors=["x"], histograms=hists)
    local = local_errors(hists, alt, ["x"], symmetric=True)["x"]
    x = np.concatenate([s["x"].ravel() for s in samples]).astype(np.float64)
    for label, r in alt.items():
        scale = activation_qparams(r["x"].rmin, r["x"].rmax, True).scale
        direct = np.mean((np.clip(np.round(x / scale), -128, 127) * scale - x) ** 2) / np.mean(x * x)
        assert abs(local[label] - direct) < 0.05 * direct, (label, local[label], direct)
    # Heavy tails: clipping wins locally; a slack wide enough to take every candidate keeps the
    # widest range (min/max).
    assert screened({"x": local}, alt, 0.0)["x"] == min(local, key=local.get) != "minmax"
    assert screened({"x": local}, alt, 1e9)["x"] == "minmax"


def _chain(depth=8, seed=0, opset=17):
    """``depth`` Conv 1x1 + Relu layers: one quantized tensor per layer."""
    rng = np.random.default_rng(seed)
    nodes, inits, src = [], {}, "x"
    for k in range(depth):
        inits[f"w{k}"] = _w(rng, 8, 8, 1, 1)
        nodes += [helper.make_node("Conv", [src, f"w{k}"], [f"c{k}"], name=f"conv{k}"),
                  helper.make_node("Relu", [f"c{k}"], [f"r{k}"], name=f"relu{k}")]
        src = f"r{k}"
    nodes.append(helper.make_node("Identity", [src], ["y"], name="out"))
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], inits, opset=opset)


def test_auto_costs_a_bounded_number_of_model_runs():
    # The search measures whole-model candidates and a refinement budget at the outputs, not every
    # candidate of every tensor (400+ full-model runs on a MobileNetV2 made jetson int8 time out).
    from edgec.calibration import TensorRange
    from edgec.compiler.scale_screen import REFINE_EVALS, SLACKS, refine_budget, search

    labels = [label for label, _, _ in TRT_CALIBRATORS]
    tensors = [f"t{k}" for k in range(200)]
    alt = {m: {t: TensorRange(-1.0 - j, 1.0 + j, m, 1.0 + j) for t in tensors} for j, m in enumerate(labels)}
    local = {t: {m: 1.0 + abs(j - 2) for j, m in enumerate(labels)} for t in tensors}
    calls = []
    found = search(alt, local, tensors, lambda choice: calls.append(choice) or float(len(calls)), refine_evals=10)
    assert len(calls) == found["evaluations"] <= len(labels) + len(SLACKS) + 10
    assert found["choice"] == {t: "minmax" for t in tensors}  # the first and best-scored candidate
    # A MobileNetV2-sized evaluation (16 samples x 10M activation values) gets a couple of dozen
    # switches at most; a tiny model more, up to the cap.
    assert REFINE_EVALS <= refine_budget(16 * 10e6, 150) <= 24 < refine_budget(16 * 1e4, 10)


def test_auto_is_never_worse_than_minmax_everywhere():
    model = handle(_chain())
    samples = _outlier_samples(outlier=30.0)
    q = Int8Quantizer(model, model, collect_ranges(model.proto, samples, "minmax"), SCHEME,
                      CalibrationData(samples, "test"))
    info = q.choose_auto()
    assert info["output_evaluations"] <= len(info["screen_errors"]) + info["refine_budget"]
    # min/max on every tensor is one of the measured candidates.
    assert info["relative_output_error"] <= info["screen_errors"]["minmax"]
    assert sum(info["methods"].values()) >= 8


def test_auto_upgrades_an_old_opset_once_with_the_same_result():
    # Q/DQ needs opset 13; the search converts the model once instead of in every candidate's quantize.
    model = handle(_chain(depth=3, opset=11))
    samples = _outlier_samples(outlier=30.0)
    q = Int8Quantizer(model, model, collect_ranges(model.proto, samples, "minmax"), SCHEME,
                      CalibrationData(samples, "test"))
    q.choose_auto()
    assert q.model.proto.opset_import[0].version == 13 and model.proto.opset_import[0].version == 11
    a, _ = q.quantize()
    b, _ = quantize_qdq(model, q.ranges, SCHEME)
    assert a.proto.SerializeToString() == b.proto.SerializeToString()


def test_held_out_auto_ships_the_choice_that_errs_least_on_samples_its_ranges_did_not_see():
    """`QuantScheme.auto_held_out`: the refined choice and every whole-model candidate are scored with ranges
    from one half of the samples on the other half; the least error wins, its ranges then from all samples."""
    import dataclasses

    from edgec.compiler.scale_screen import whole_model_candidates

    model = handle(_chain())
    samples = _outlier_samples(outlier=30.0)
    scheme = dataclasses.replace(SCHEME, auto_held_out=True)
    q = Int8Quantizer(model, model, collect_ranges(model.proto, samples, "minmax"), scheme,
                      CalibrationData(samples, "test"))
    info = q.choose_auto()
    held = info["held_out"]
    assert held["scored_on"] == f"2 folds of {len(samples)}"
    assert set(held["errors"]) == {"refined", *info["screen_errors"]}
    assert held["errors"][held["picked"]] == min(held["errors"].values())
    alt = q.alternatives()
    if held["picked"] != "refined":
        local = q._auto["local"]
        picked = dict(whole_model_candidates(local, alt, list(local)))[held["picked"]]
        assert all(q.ranges[t] == alt[m][t] for t, m in picked.items())
    plain = Int8Quantizer(model, model, collect_ranges(model.proto, samples, "minmax"), SCHEME,
                          CalibrationData(samples, "test"))
    assert "held_out" not in plain.choose_auto()
