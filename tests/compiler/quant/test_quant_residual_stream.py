"""Deep residual streams on the Q/DQ targets (intel-cpu, onnxruntime): residual Adds in float
(`QuantScheme.float_residual_adds`), every depthwise -> pointwise link equalized and bias correction,
for models with `QuantScheme.deep_residual_adds` residual blocks; real onnxruntime and OpenVINO runs
of a BlazeFace-style two-block model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgec.runtimes.metrics import cosine as _cosine

from ._quant_util import run_first_output as _run
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


@pytest.mark.parametrize("target", ["onnxruntime", "intel-cpu"])
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


def test_intel_cpu_build_runs_float_residual_adds_in_openvino(tmp_path, monkeypatch):
    """The Q/DQ model with float Adds between int8 convs lowers to OpenVINO IR and agrees with float."""
    pytest.importorskip("openvino")
    import onnx

    from edgec.targets.openvino import OpenVINOTarget

    monkeypatch.setattr(OpenVINOTarget, "quant_scheme", dataclasses.replace(OpenVINOTarget.quant_scheme,
                                                                            deep_residual_adds=2))

    from edgec.api import build
    from edgec.compiler.config import BuildConfig
    from edgec.runtimes.registry import reference_runner
    from edgec.targets.registry import get_target

    src = tmp_path / "stream.onnx"
    onnx.save(_stream_model(), str(src))
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.concatenate([s["x"] for s in _samples(16, 1)]))
    out = tmp_path / "b"
    result = build(BuildConfig(model=str(src), output=out, target="intel-cpu", precision="int8", calib=str(calib),
                               force=True))
    passes = {p["name"]: p["config"] for p in result.manifest["passes"]}
    assert passes["quantize"]["scheme"]["float_residual_adds"] is True and "bias_correction" in passes["quantize"]
    assert passes["deep-residual-recipe"]["residual_adds"] == 2
    runner = get_target("intel-cpu").verify_runner(out, result.manifest)
    ref = reference_runner(out, result.manifest)
    with runner, ref:
        for feed in _samples(4, 2):
            got, want = runner.infer(feed), ref.infer(feed)
            assert _cosine(np.asarray(got["y"]), np.asarray(want["y"])) > 0.995
