"""Deep residual streams on the Q/DQ targets, for models with `QuantScheme.deep_residual_adds` residual
blocks: onnxruntime keeps the residual Adds in float (`QuantScheme.float_residual_adds`); intel-cpu keeps
them int8 (fused into the convs by OpenVINO) with min/max ranges; both equalize every depthwise ->
pointwise link and correct biases. Real onnxruntime and OpenVINO runs of a BlazeFace-style two-block model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgec.runtimes.metrics import cosine as _cosine

from ._quant_util import run_first_output as _run
from ._blaze_blocks import blaze_stream_model
from .test_quant_equalize_stream import _samples, _stream_model


def _add_inputs_from_dq(proto) -> int:
    """Add inputs on the int8 grid: a DequantizeLinear's output, or one moved through MaxPool/Pad (hoisted)."""
    producer = {o: n for n in proto.graph.node for o in n.output}

    def on_grid(t) -> bool:
        p = producer.get(t)
        while p is not None and p.op_type in ("MaxPool", "Pad"):
            p = producer.get(p.input[0])
        return p is not None and p.op_type == "DequantizeLinear"

    return sum(on_grid(i) for n in proto.graph.node if n.op_type == "Add" for i in n.input)


def test_conv_residual_adds_counts_blocks():
    from edgec.compiler.qdq_graph import conv_residual_adds

    assert conv_residual_adds(_stream_model()) == 2


@pytest.mark.parametrize("target", ["onnxruntime"])
def test_float_residual_adds_keep_the_stream_unrounded(target):
    from edgec.calibration import collect_ranges
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.quantize import quantize_qdq
    from edgec.targets.registry import get_target

    model = ModelHandle.from_onnx(_stream_model(), "stream.onnx", "0" * 64)
    calib, evals = _samples(16, 1), _samples(8, 2)
    ranges = collect_ranges(model.proto, calib, "minmax")
    base = get_target(target).quant_scheme
    scheme = dataclasses.replace(base, **dict(base.deep_residual_overrides))
    assert scheme.float_residual_adds and not base.float_residual_adds
    ref = _run(model.proto, evals)
    out = {}
    for name, s in (("float adds", scheme), ("int8 adds", dataclasses.replace(scheme, float_residual_adds=False))):
        q, summary = quantize_qdq(model, ranges, s)
        out[name] = (_add_inputs_from_dq(q.proto), _cosine(_run(q.proto, evals), ref), summary)
    assert out["float adds"][0] == 0 and out["int8 adds"][0] == 4, out
    assert out["float adds"][2]["scheme"]["float_residual_adds"] is True
    # Still int8 convolutions: every conv input keeps its pair, so the model is not just float.
    assert out["float adds"][2]["activation_pairs"] >= 4
    # The outlier stream channel costs int8 everywhere; rounding the Adds' inputs too more than
    # doubles the error (measured 1 - cosine 0.0073 with float Adds, 0.0172 with int8 Adds).
    err = {k: 1.0 - v[1] for k, v in out.items()}
    assert out["float adds"][1] > 0.99 and err["float adds"] < 0.6 * err["int8 adds"], err


def test_deep_residual_stream_turns_bias_correction_on():
    from edgec.calibration import CalibrationData, collect_ranges
    from edgec.compiler.config import BuildConfig
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.progress import SILENT
    from edgec.compiler.quant_stage import Int8Quantizer
    from edgec.targets.registry import get_target

    model = ModelHandle.from_onnx(_stream_model(), "stream.onnx", "0" * 64)
    calib = _samples(8, 1)
    data = CalibrationData(samples=calib, source="test")
    cfg = BuildConfig(model="stream.onnx", output="out", target="onnxruntime", precision="int8").replace(
        calib_method="minmax")
    ranges = collect_ranges(model.proto, calib, "minmax")
    base = get_target("onnxruntime").quant_scheme
    assert base.deep_residual_adds > 2  # this two-block model is not deep for the real target
    for needed, on in ((2, True), (3, False)):
        scheme = dataclasses.replace(base, deep_residual_adds=needed)
        q = Int8Quantizer.create(cfg, model, data, ranges, scheme, SILENT)
        recipe = [p for p in q.passes if p["name"] == "deep-residual-recipe"]
        assert q.bias_correction is on and bool(recipe) is on and q.scheme.float_residual_adds is on, q.passes
        if on:
            assert recipe[0]["config"] == {"residual_adds": 2, "bias_correction": True, "float_residual_adds": True,
                                           "equalize_min_spread": 1.0}
            eq = next(p for p in q.passes if p["name"] == "equalize-conv-pairs")
            assert eq["config"]["min_spread"] == 1.0
            quant, summary = q.quantize()
            assert "bias_correction" in summary and _add_inputs_from_dq(quant.proto) == 0


def _build_intel_cpu(proto, tmp_path):
    """``proto`` built for intel-cpu int8 into ``tmp_path / "b"`` on 16 calibration samples: the result and its
    manifest's passes by name."""
    import onnx

    from edgec.api import build
    from edgec.compiler.config import BuildConfig

    onnx.save(proto, str(tmp_path / "m.onnx"))
    np.savez(tmp_path / "calib.npz", x=np.concatenate([s["x"] for s in _samples(16, 1)]))
    result = build(BuildConfig(model=str(tmp_path / "m.onnx"), output=tmp_path / "b", target="intel-cpu",
                               precision="int8", calib=str(tmp_path / "calib.npz"), force=True))
    return result, {p["name"]: p["config"] for p in result.manifest["passes"]}


def test_intel_cpu_deep_recipe_keeps_int8_adds_in_openvino(tmp_path, monkeypatch):
    """intel-cpu's recipe keeps the residual Adds int8 (OpenVINO fuses them into the convs), with min/max ranges
    and bias correction; the IR runs them on int8 data and agrees with float."""
    pytest.importorskip("openvino")
    import onnx

    from edgec.targets.openvino import OpenVINOTarget

    base = OpenVINOTarget.quant_scheme
    # No fallback bar: this stream's outlier channel puts the int8 Adds' calibration worst near intel-cpu's 0.98.
    monkeypatch.setattr(OpenVINOTarget, "quant_scheme", dataclasses.replace(base, deep_residual_adds=2,
                                                                            deep_residual_fallback_cosine=None))

    from edgec.runtimes.registry import reference_runner
    from edgec.targets.registry import get_target

    out = tmp_path / "b"
    result, passes = _build_intel_cpu(_stream_model(), tmp_path)
    assert passes["quantize"]["scheme"]["float_residual_adds"] is False and "bias_correction" in passes["quantize"]
    assert passes["deep-residual-recipe"]["residual_adds"] == 2
    assert passes["deep-residual-recipe"]["calib_method"] == "minmax"
    assert _add_inputs_from_dq(onnx.load(str(out / "reference" / "quantized.onnx"))) == 4
    import openvino as ov

    compiled = ov.Core().compile_model(str(out / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    f32 = [op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops()
           if op.get_rt_info()["runtimePrecision"].astype(str) == "f32"
           and op.get_rt_info()["layerType"].astype(str) in ("Eltwise", "Subgraph")]
    assert len(f32) <= 1, f32  # at most the input's quantization; no float Add between the convs
    runner = get_target("intel-cpu").verify_runner(out, result.manifest)
    ref = reference_runner(out, result.manifest)
    with runner, ref:
        for feed in _samples(4, 2):
            got, want = runner.infer(feed), ref.infer(feed)
            # This stream's outlier channel costs int8 Adds some accuracy (measured 0.987-0.994 per sample; float
            # Adds 0.997), which intel-cpu trades for NNCF's speed: on the real BlazeFaces min/max ranges win it
            # back (see the scheme). A broken int8 Add (a wrong scale) lands far below.
            assert _cosine(np.asarray(got["y"]), np.asarray(want["y"])) > 0.98


def test_intel_cpu_deep_recipe_falls_back_to_float_adds_below_its_bar(tmp_path, monkeypatch):
    """Where the int8-Add recipe's worst calibration sample stays under `deep_residual_fallback_cosine`, the residual
    Adds stay float (`deep_residual_fallback`) with the target's own ranges; the manifest says why."""
    pytest.importorskip("openvino")
    import onnx

    from edgec.targets.openvino import OpenVINOTarget

    base = OpenVINOTarget.quant_scheme
    assert base.deep_residual_fallback_cosine is not None and dict(base.deep_residual_fallback)["float_residual_adds"]
    monkeypatch.setattr(OpenVINOTarget, "quant_scheme", dataclasses.replace(  # 1.01: a bar no int8 model reaches
        base, deep_residual_adds=2, deep_residual_fallback_cosine=1.01))
    result, passes = _build_intel_cpu(_stream_model(), tmp_path)
    recipe = passes["deep-residual-recipe"]
    assert recipe["fallback"] == dict(base.deep_residual_fallback) and recipe["worst_cosine_with"] < 1.01, recipe
    assert passes["quantize"]["scheme"]["float_residual_adds"] is True
    assert _add_inputs_from_dq(onnx.load(str(tmp_path / "b" / "reference" / "quantized.onnx"))) == 0


def test_intel_cpu_deep_recipe_keeps_int8_adds_with_the_fallback_ranges(tmp_path, monkeypatch):
    """Where the int8-Add recipe misses the fallback bar with its min/max ranges but clears it with the fallback's
    ranges (mse), measured as built (bias correction included), every residual Add stays int8 with those ranges:
    no per-Add search and no float Adds (blazeface-back: 0.905 vs 0.983 worst calibration cosine)."""
    pytest.importorskip("openvino")
    import onnx

    from edgec.targets.openvino import OpenVINOTarget

    base = OpenVINOTarget.quant_scheme
    assert dict(base.deep_residual_fallback)["calib_method"] != dict(base.deep_residual_overrides)["calib_method"]
    # This stream's worst calibration cosine with int8 Adds, measured as written (`quality.exact_qdq_session`), with
    # every dense and depthwise weight on the 7-bit grid and shifted depthwise outputs: min/max 0.9646, mse 0.9708;
    # the bar between them.
    monkeypatch.setattr(OpenVINOTarget, "quant_scheme", dataclasses.replace(
        base, deep_residual_adds=2, deep_residual_fallback_cosine=0.968, overflow_fix="all-with-depthwise",
        symmetric_depthwise_outputs=None))
    result, passes = _build_intel_cpu(_stream_model(), tmp_path)
    recipe = passes["deep-residual-recipe"]
    assert recipe["worst_cosine_with"] < 0.968 <= recipe["worst_cosine_with_fallback_ranges"], recipe
    assert recipe["ranges"] == recipe["calib_method"] == "mse" and "float_adds" not in recipe, recipe
    assert "fallback" not in recipe and passes["quantize"]["scheme"]["float_residual_adds"] is False
    assert _add_inputs_from_dq(onnx.load(str(tmp_path / "b" / "reference" / "quantized.onnx"))) == 4


def test_exact_qdq_session_runs_the_graph_as_written():
    """The deep-residual measurements run Q/DQ models without onnxruntime's fused int8 kernels, whose results
    differ by CPU (saturating u8 x s8 pairs on AVX2 without VNNI): graph optimizations off."""
    import onnxruntime as ort

    from edgec.compiler.quality import exact_qdq_session

    session = exact_qdq_session(_stream_model())
    assert session.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL


OUTLIER_LAST = 40.0  # the last block's branch: one channel this much wider than the others


def _blocks_model(blocks: int = 4):
    """x [1,4,12,12] -> conv -> Relu; ``blocks`` BlazeFace blocks, all the same shape; a depthwise 1x1 head. Only the
    last block's pointwise output has a channel `OUTLIER_LAST` x wider (the head's weight undoes it), so only that
    block's int8 Add rounds a wide input: the damaging one."""
    return blaze_stream_model(blocks, hw=12, head="depthwise", outlier_last=OUTLIER_LAST)


def _add_inputs_on_grid(proto) -> dict[str, int]:
    """Per Add node: how many of its inputs are a DequantizeLinear's output."""
    producer = {o: n for n in proto.graph.node for o in n.output}
    return {n.name: sum(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input)
            for n in proto.graph.node if n.op_type == "Add"}


def test_float_add_search_keeps_only_the_damaging_add_float():
    """`residual_add_search.choose` on intel-cpu's int8-Add recipe: the one Add whose input carries the wide
    channel stays float, the others int8; the result is within the search's bounds of the all-float model and
    far better than all int8. Real onnxruntime runs."""
    from edgec.calibration import CalibrationData, collect_ranges
    from edgec.compiler import residual_add_search as ras
    from edgec.compiler.config import BuildConfig
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.progress import SILENT
    from edgec.compiler.quant_stage import Int8Quantizer
    from edgec.targets.openvino import OpenVINOTarget

    model = ModelHandle.from_onnx(_blocks_model(), "blocks.onnx", "0" * 64)
    calib = _samples(16, 1)
    data = CalibrationData(samples=calib, source="test")
    cfg = BuildConfig(model="blocks.onnx", output="out", target="intel-cpu", precision="int8")
    scheme = dataclasses.replace(OpenVINOTarget.quant_scheme, deep_residual_adds=2, deep_residual_cosine=None,
                                 deep_residual_fallback_cosine=None)
    q = Int8Quantizer.create(cfg, model, data, collect_ranges(model.proto, calib, "minmax"), scheme, SILENT)
    assert ras.candidates(q)[0] == ["add1", "add2", "add3", "add4"]
    margin, share = 0.003, 0.3
    found = ras.choose(q, 0.99, margin, share)
    assert found["float_adds"] == ["add4"] and found["int8_adds"] == ["add1", "add2", "add3"], found
    assert max(found["damage"], key=found["damage"].get) == "add4"
    every, chosen, int8 = found["every_float"], found["chosen"], found["all_int8"]
    assert chosen["worst_cosine"] >= every["worst_cosine"] - margin and chosen["error"] <= every["error"] * (1 + share)
    assert chosen["error"] < 0.5 * int8["error"], found  # measured 0.00033 vs 0.0022 all int8
    # Deterministic: the same search again gives the same choice and the same numbers.
    assert ras.choose(q, 0.99, margin, share) == found


def test_search_orders_by_damage_per_value_and_never_returns_a_failing_prefix():
    """`residual_add_search.search` with a scripted model of the error: the Adds float are the fewest values
    that hold, and every returned choice was measured to hold; None where even all float misses the bar."""
    from edgec.compiler import residual_add_search as ras

    adds = ["a", "b", "c", "d"]
    sizes = {"a": 1000, "b": 100, "c": 100, "d": 10}
    cost = {"a": 0.004, "b": 0.003, "c": 0.0001, "d": 0.002}  # each int8 Add's error

    def evaluate(float_adds):
        err = 0.001 + sum(v for k, v in cost.items() if k not in float_adds)
        return err, 1.0 - 2 * err

    found = ras.search(adds, sizes, evaluate, bar=0.99, margin=0.01, error_share=0.3)
    # Per value: d 2e-4, b 3e-5, a 4e-6, c 1e-6: d and b float, then a (the large one) too: a's 0.004 alone breaks 1.3x.
    assert found["float_adds"] == ["a", "b", "d"] and found["int8_adds"] == ["c"], found
    assert found["chosen"]["error"] <= found["max_error"] and found["float_values"] == 1110
    assert ras.search(adds, sizes, evaluate, bar=0.9999, margin=0.01) is None


def test_intel_cpu_build_keeps_float_only_the_adds_the_search_chose(tmp_path, monkeypatch):
    """intel-cpu build where the int8-Add recipe misses its fallback bar: only the damaging Add stays float (no
    pairs on its inputs), the others keep theirs; the manifest records the search; OpenVINO agrees with float."""
    pytest.importorskip("openvino")
    import onnx

    from edgec.runtimes.registry import reference_runner
    from edgec.targets.openvino import OpenVINOTarget
    from edgec.targets.registry import get_target

    base = OpenVINOTarget.quant_scheme
    assert base.deep_residual_float_add_margin is not None
    # 0.999: the int8-Add recipe misses it on this model (calibration worst 0.997), every Add float reaches it (0.9996).
    # Error share 0.3: on this small model the three int8 Adds add 25 % to the all-float model's error (0.00033 vs
    # 0.00026; BlazeFace's 31 blocks: the target's share).
    monkeypatch.setattr(OpenVINOTarget, "quant_scheme", dataclasses.replace(
        base, deep_residual_adds=2, deep_residual_cosine=1.01, deep_residual_fallback_cosine=0.999,
        deep_residual_float_add_error=0.3))
    out = tmp_path / "b"
    result, passes = _build_intel_cpu(_blocks_model(), tmp_path)
    recipe = passes["deep-residual-recipe"]
    assert "fallback" not in recipe and recipe["worst_cosine_with"] < 0.999, recipe
    searched = recipe["float_adds"]
    shipped = searched["searched"][searched["shipped"]]
    assert shipped["float_adds"] == ["add4"] and searched["worst_cosine_as_built"] >= 0.999, searched
    assert passes["quantize"]["scheme"]["float_residual_adds"] is False
    grid = _add_inputs_on_grid(onnx.load(str(out / "reference" / "quantized.onnx")))
    assert grid == {"add1": 2, "add2": 2, "add3": 2, "add4": 0}, grid
    runner = get_target("intel-cpu").verify_runner(out, result.manifest)
    ref = reference_runner(out, result.manifest)
    with runner, ref:
        for feed in _samples(4, 2):
            assert _cosine(np.asarray(runner.infer(feed)["y"]), np.asarray(ref.infer(feed)["y"])) > 0.99
