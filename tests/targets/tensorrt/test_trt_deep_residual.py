"""jetson's deep-residual recipe: float (fp16) residual Adds, every depthwise -> pointwise link equalized,
bias correction, and ``auto`` leaving the equalized tensors at min/max (`QuantScheme.minmax_equalized`);
real onnxruntime runs of a BlazeFace-style two-block model."""

from __future__ import annotations

import dataclasses

from edgec.runtimes.metrics import cosine

from ...compiler.quant._quant_util import run_first_output
from ...compiler.quant.test_quant_equalize_stream import _samples, _stream_model


def test_equalized_tensors_are_what_the_pointwise_convs_read():
    from edgec.compiler.equalize import equalize, equalized_tensors
    from edgec.compiler.model import ModelHandle

    model = ModelHandle.from_onnx(_stream_model(), "stream.onnx", "0" * 64)
    eq, info = equalize(model, _samples(8, 1), min_spread=1.0)
    tensors = equalized_tensors(eq.proto, info)
    assert info["equalized"] == len(tensors) >= 2
    readers = {i: n for n in eq.proto.graph.node for i in n.input}
    assert {"pw1", "pw2"} <= {readers[t].name for t in tensors}, tensors
    assert equalized_tensors(eq.proto, {"equalized": 0}) == ()


def test_jetson_deep_stream_keeps_equalized_ranges_at_minmax():
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
    scheme = dataclasses.replace(base, deep_residual_adds=2)
    q = Int8Quantizer.create(cfg, model, CalibrationData(calib, "test"),
                             collect_ranges(model.proto, calib, "minmax"), scheme, SILENT)
    passes = {p["name"]: p["config"] for p in q.passes}
    assert passes["deep-residual-recipe"]["minmax_equalized"] is True and q.bias_correction
    assert q.minmax_tensors and passes["calibrate-auto"]["minmax_equalized"] == len(q.minmax_tensors)
    minmax = q.alternatives()["minmax"]
    for t in q.minmax_tensors:  # auto left them where min/max put them
        assert t not in passes["calibrate-auto"]["chosen"]
        assert (q.ranges[t].rmin, q.ranges[t].rmax) == (minmax[t].rmin, minmax[t].rmax)
    quant, summary = q.quantize()
    assert summary["scheme"]["float_residual_adds"] is True and "bias_correction" in summary
    legal = legalize(quant.proto)[0]
    report = check_qdq(legal)  # TensorRT's rules: the Adds carry no Q/DQ at all (fp16), the convs int8
    assert report.ok, report.violations
    assert {"pw1", "pw2", "head"} <= {n.split("_equalized")[0] for n in report.quantized_nodes}
    ref = run_first_output(model.proto, evals)
    assert cosine(run_first_output(quant.proto, evals), ref) > 0.99
