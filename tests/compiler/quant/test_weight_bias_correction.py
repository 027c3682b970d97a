"""Fast bias correction of int8 weight rounding: the shift removed is the one numpy computes."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _conv_model(seed: int = 0) -> onnx.ModelProto:
    """x[1,3,6,6] -> Conv 3x3 pad 1 (8 channels, bias) -> Relu -> Conv 1x1 (4, bias): per-channel
    weights with a large common part, so int8 rounding leaves a visible mean shift on a positive input."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((8, 3, 3, 3)) * 0.3 + 1.0).astype(np.float32)
    w2 = (rng.standard_normal((4, 8, 1, 1)) * 0.3 + 0.5).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
             numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(np.zeros(4, np.float32), "b2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], name="conv2")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 6, 6])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 6, 6])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _quantizer(proto, samples, on: bool, **scheme):
    from edgec.calibration import collect_ranges
    from edgec.calibration import CalibrationData
    from edgec.compiler.model import ModelHandle, TensorSpec
    from edgec.compiler.quant_stage import Int8Quantizer
    from edgec.targets.onnxruntime import ONNXRuntimeTarget

    h = ModelHandle(proto=proto, source_path="conv.onnx", source_sha256="0",
                    inputs=[TensorSpec("x", (1, 3, 6, 6), "float32")], outputs=[TensorSpec("y", (1, 4, 6, 6), "float32")])
    scheme = dataclasses.replace(ONNXRuntimeTarget.quant_scheme, weight_bias_correction=on, equalize_conv_pairs=False,
                                 **scheme)
    data = CalibrationData(samples, "test")
    return Int8Quantizer(h, h, collect_ranges(proto, samples), scheme, data)


def _bias(quant, conv: str) -> np.ndarray:
    g = quant.proto.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    node = next(n for n in g.node if n.name == conv)
    dq = producer[node.input[2]]
    return inits[dq.input[0]].astype(np.float64) * inits[dq.input[1]].astype(np.float64)


def _weights(quant, conv: str) -> np.ndarray:
    from edgec.compiler.weight_bias_correction import _dequantized

    g = quant.proto.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    node = next(n for n in g.node if n.name == conv)
    return _dequantized(producer[node.input[1]], inits)


def test_the_bias_absorbs_the_weight_rounding_shift_of_every_conv():
    import onnxruntime as ort

    from edgec.compiler.quality import exact_qdq_session

    proto = _conv_model()
    rng = np.random.default_rng(1)
    samples = [{"x": rng.uniform(0.5, 2.0, (1, 3, 6, 6)).astype(np.float32)} for _ in range(8)]
    # 8-bit weights: the bound below is one int32 bias step (s_in * s_w) on that grid; the onnxruntime target's
    # 7-bit grid (`overflow_fix` 'all') doubles s_w (there one channel lands 0.0011 off).
    plain, _ = _quantizer(proto, samples, on=False, overflow_fix=None).quantize()
    fixed, summary = _quantizer(proto, samples, on=True, overflow_fix=None).quantize()
    wbc = summary["weight_bias_correction"]
    assert wbc["layers"] == 2 and wbc["kept"] and wbc["output_error"]["after"] <= wbc["output_error"]["before"]
    w = {n: numpy_helper.to_array(t).astype(np.float64) for n, t in
         ((t.name, t) for t in proto.graph.initializer)}
    # conv2 is 1x1 without padding: its shift is exactly (W_q - W) @ mean(input) per channel.
    sess = ort.InferenceSession(_with_output(proto, "r1").SerializeToString(), providers=["CPUExecutionProvider"])
    r1 = np.mean([sess.run(["r1"], s)[0].mean(axis=(0, 2, 3)) for s in samples], axis=0)
    dw = (_weights(plain, "conv2") - w["w2"]).reshape(4, 8)
    want = _bias(plain, "conv2") - dw @ r1
    # within one int32 bias step (s_in * s_w) of rounding, and the sample means' float32 sums
    np.testing.assert_allclose(_bias(fixed, "conv2"), want, atol=1e-3)
    assert np.abs(_bias(fixed, "conv2") - _bias(plain, "conv2")).max() > 1e-2  # a real shift was removed
    # conv1 has padding: the shift measured through the conv itself moves the output mean to the float one.
    # The Q/DQ models run as written (`exact_qdq_session`): the claim is about the int8 math. onnxruntime's fused
    # kernels sum u8 x s8 products in saturating int16 pairs on AVX2 without VNNI (these all-positive inputs and
    # weights saturate: mean error 4.7 plain and fixed alike on an AMD EPYC), which no bias can absorb.
    f = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    mean_err = {}
    for name, q in (("plain", plain), ("fixed", fixed)):
        s = exact_qdq_session(q.proto)
        d = np.stack([s.run(["y"], x)[0] - f.run(["y"], x)[0] for x in samples])
        mean_err[name] = float(np.abs(d.mean(axis=(0, 1, 3, 4))).mean())
    assert mean_err["fixed"] < 0.3 * mean_err["plain"], mean_err


def test_zero_biases_stay_zero_where_the_scheme_says_so():
    """`QuantScheme.correct_zero_biases` False (intel-cpu: OpenVINO drops a zero bias, a written one adds per-channel
    post-ops to the conv's kernel): both corrections leave a layer whose float bias is all zeros alone and still
    correct the others."""
    proto = _conv_model()
    b2 = next(t for t in proto.graph.initializer if t.name == "b2")
    b2.CopyFrom(numpy_helper.from_array(np.full(4, 0.25, np.float32), "b2"))
    rng = np.random.default_rng(1)
    samples = [{"x": rng.uniform(0.5, 2.0, (1, 3, 6, 6)).astype(np.float32)} for _ in range(8)]
    for weight_only in (True, False):
        q = _quantizer(proto, samples, on=weight_only, correct_zero_biases=False)
        q.bias_correction = not weight_only
        got, summary = q.quantize()
        info = summary["weight_bias_correction" if weight_only else "bias_correction"]
        assert info["layers"] == 1 and "conv1" not in {*info.get("mean_abs_shift", {}), *info.get("skipped", ())}
        assert not _bias(got, "conv1").any()
        everything = _quantizer(proto, samples, on=weight_only)
        everything.bias_correction = not weight_only
        fixed, all_info = everything.quantize()
        all_info = all_info["weight_bias_correction" if weight_only else "bias_correction"]
        if weight_only:
            assert all_info["layers"] == 2 and np.abs(_bias(fixed, "conv1")).max() > 0
        else:  # measured, then kept or skipped by the layer's own error check
            assert "conv1" in {*all_info["mean_abs_shift"], *all_info["skipped"]}, all_info


def _with_output(proto, name: str) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    m.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return m


def test_a_correction_that_raises_the_output_error_is_not_kept(monkeypatch):
    """Never worse than without it, on held-out samples: a wrong shift is refused and the model stays as it was."""
    from edgec.compiler import weight_bias_correction as wbc_module

    proto = _conv_model()
    rng = np.random.default_rng(1)
    samples = [{"x": rng.uniform(0.5, 2.0, (1, 3, 6, 6)).astype(np.float32)} for _ in range(8)]
    measure = wbc_module._measure
    monkeypatch.setattr(wbc_module, "_measure",  # 50x the shift, wrong sign
                        lambda *a: {k: -50 * v for k, v in measure(*a).items()})
    plain, _ = _quantizer(proto, samples, on=False).quantize()
    got, summary = _quantizer(proto, samples, on=True).quantize()
    wbc = summary["weight_bias_correction"]
    assert not wbc["kept"] and wbc["output_error"]["after"] > wbc["output_error"]["before"]
    assert got.proto.SerializeToString() == plain.proto.SerializeToString()


def _measured(proto, samples) -> dict:
    q = _quantizer(proto, samples, on=True)
    q.quantize()
    return q._weight_shifts


def test_variants_reuse_measured_shifts():
    proto = _conv_model(2)
    rng = np.random.default_rng(3)
    samples = [{"x": rng.uniform(0.0, 1.0, (1, 3, 6, 6)).astype(np.float32)} for _ in range(4)]
    q = _quantizer(proto, samples, on=True)
    first, _ = q.quantize()
    cached = dict(q._weight_shifts)
    again, _ = q.quantize()
    assert len(cached) == 2 and q._weight_shifts == cached
    assert first.proto.SerializeToString() == again.proto.SerializeToString()


def test_the_keep_check_scores_every_sample_held_out_and_applies_the_shift_of_all_of_them():
    """In-sample, a measured shift always looks like a gain: each fold's shifts are scored on the other fold;
    the shift applied afterwards is the one measured on all the samples."""
    from edgec.compiler.weight_bias_correction import MAX_SAMPLES

    proto = _conv_model()
    rng = np.random.default_rng(4)
    samples = [{"x": rng.uniform(0.0, 1.0, (1, 3, 6, 6)).astype(np.float32)} for _ in range(MAX_SAMPLES + 4)]
    q = _quantizer(proto, samples, on=True)
    _, summary = q.quantize()
    wbc = summary["weight_bias_correction"]
    assert wbc["check"] == "held-out, 2 folds" and len(wbc["folds"]) == 2 and wbc["samples"] == MAX_SAMPLES
    from edgec.compiler.weight_bias_correction import _key, _layers, _measure

    layers = _layers(q.quantize()[0].proto, proto)
    assert layers and q._weight_shifts.keys() == {_key(n.name, dw) for n, _, dw in layers}
    direct = _measure(proto, layers, samples[:MAX_SAMPLES])
    for k, v in direct.items():
        np.testing.assert_allclose(q._weight_shifts[k], v, rtol=1e-9, atol=1e-12)
    _, few = _quantizer(proto, samples[:3], on=True).quantize()  # too few for two folds
    assert few["weight_bias_correction"]["check"] == "in-sample"


def test_a_classifier_keeps_the_correction_only_if_no_top1_measure_gets_worse():
    """The mean error hardly sees a near-tie photo: a smaller error with a narrower top-1 margin is refused."""
    from edgec.compiler.weight_bias_correction import keeps

    error = {"output_error": {"before": 0.003, "after": 0.002}}
    assert keeps(error) and not keeps({"output_error": {"before": 0.002, "after": 0.003}})
    narrower = {**error, "top1_agreement": {"before": 1.0, "after": 1.0}, "top1_margin": {"before": 0.02, "after": 0.01}}
    flipped = {**error, "top1_agreement": {"before": 1.0, "after": 0.9}, "top1_margin": {"before": 0.02, "after": 0.03}}
    wider = {**error, "top1_agreement": {"before": 1.0, "after": 1.0}, "top1_margin": {"before": 0.02, "after": 0.03}}
    assert not keeps(narrower) and not keeps(flipped) and keeps(wider)


def _classifier_model(seed: int) -> onnx.ModelProto:
    """x[1,3,6,6] -> Conv 3x3 (8, bias) -> Relu -> GlobalAveragePool -> Flatten -> Gemm (5 classes)."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((8, 3, 3, 3)) * 0.3 + 1.0).astype(np.float32)
    w2 = (rng.standard_normal((5, 8)) * 0.5).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
             numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(np.zeros(5, np.float32), "b2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("GlobalAveragePool", ["r1"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 6, 6])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 5])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_classifier_check_reports_top1_and_decides_by_them():
    from edgec.calibration import CalibrationData, collect_ranges
    from edgec.compiler.model import ModelHandle, TensorSpec
    from edgec.compiler.quant_stage import Int8Quantizer
    from edgec.compiler.weight_bias_correction import keeps
    from edgec.targets.onnxruntime import ONNXRuntimeTarget

    proto = _classifier_model(5)
    rng = np.random.default_rng(6)
    samples = [{"x": rng.uniform(0.0, 1.0, (1, 3, 6, 6)).astype(np.float32)} for _ in range(8)]
    h = ModelHandle(proto=proto, source_path="cls.onnx", source_sha256="0", task="image-classification",
                    inputs=[TensorSpec("x", (1, 3, 6, 6), "float32")], outputs=[TensorSpec("y", (1, 5), "float32")])
    scheme = dataclasses.replace(ONNXRuntimeTarget.quant_scheme, weight_bias_correction=True, equalize_conv_pairs=False)
    q = Int8Quantizer(h, h, collect_ranges(proto, samples), scheme, CalibrationData(samples, "test"))
    _, summary = q.quantize()
    wbc = summary["weight_bias_correction"]
    assert {"top1_agreement", "top1_margin", "output_error"} <= wbc.keys()
    assert wbc["kept"] == keeps(wbc)
