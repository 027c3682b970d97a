"""jetson's deep-residual recipe: float residual Adds (no Q/DQ: TensorRT runs them in float), every
depthwise -> pointwise link equalized and bias correction, for models with
`QuantScheme.deep_residual_adds` residual blocks; real onnxruntime runs of a BlazeFace-style two-block model."""

from __future__ import annotations

import dataclasses

from edgec.runtimes.metrics import cosine

from ...compiler.quant._quant_util import run_first_output
from ...compiler.quant.test_quant_equalize_stream import _samples, _stream_model


def test_jetson_deep_stream_takes_the_recipe_and_tensorrts_qdq_rules():
    from edgec.calibration import CalibrationData, collect_ranges
    from edgec.compiler.config import BuildConfig
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.progress import SILENT
    from edgec.compiler.quant_stage import Int8Quantizer
    from edgec.targets.registry import get_target
    from edgec.targets.tensorrt.qdq_rules import check_qdq, legalize

    model = ModelHandle.from_onnx(_stream_model(), "stream.onnx", "0" * 64)
    calib, evals = _samples(12, 1), _samples(8, 2)
    cfg = BuildConfig(model="stream.onnx", output="out", target="jetson", precision="int8").replace(
        calib_method="auto")
    base = get_target("jetson").quant_scheme
    assert base.deep_residual_adds > 2 and not base.float_residual_adds  # not deep: the plain jetson scheme
    ref = run_first_output(model.proto, evals)
    out = {}
    for needed, on in ((2, True), (3, False)):
        scheme = dataclasses.replace(base, deep_residual_adds=needed)
        q = Int8Quantizer.create(cfg, model, CalibrationData(calib, "test"),
                                 collect_ranges(model.proto, calib, "minmax"), scheme, SILENT)
        passes = {p["name"]: p["config"] for p in q.passes}
        assert ("deep-residual-recipe" in passes) is on and q.bias_correction is on, q.passes
        quant, summary = q.quantize()
        assert summary["scheme"]["float_residual_adds"] is on and ("bias_correction" in summary) is on
        legal = legalize(quant.proto)[0]
        report = check_qdq(legal)  # TensorRT's rules hold either way (Adds: Q/DQ on both inputs or on neither)
        assert report.ok, report.violations
        assert {"pw1", "pw2", "head"} <= {n.split("_equalized")[0] for n in report.quantized_nodes}
        dq = {n.output[0] for n in legal.graph.node if n.op_type == "DequantizeLinear"}
        out[on] = (sum(i in dq for n in legal.graph.node if n.op_type == "Add" for i in n.input),
                   cosine(run_first_output(quant.proto, evals), ref))
        # The deep stream chooses its ranges without the entropy calibrator (held-out photos exceed its
        # clipping thresholds); the plain scheme keeps all of TensorRT's calibrators.
        assert ("entropy" in passes["calibrate-auto"]["methods"]) is not on, passes["calibrate-auto"]["methods"]
        if on:
            assert passes["deep-residual-recipe"]["calib_candidates"] == [
                "minmax", "percentile-99.99", "percentile-99.999", "mse"]
            assert passes["equalize-conv-pairs"]["min_spread"] == 1.0
            assert "float-fallback" not in passes  # no quantized Add left to search
        else:  # the plain scheme quantizes both inputs of each Add, unless its fp16 fallback kept it
            assert out[on][0] == 4 - 2 * len(passes.get("float-fallback", {}).get("kept_float", ())), passes
    assert out[True][0] == 0, out  # the recipe's Adds carry no Q/DQ at all
    # 0.985 (0.995 with the entropy calibrator: this toy's held-out samples share the calibration samples'
    # Gaussian distribution, real photos' deep streams do not; see `TRT_DEEP_STREAM_CALIBRATORS`).
    assert out[True][1] > 0.98, out
