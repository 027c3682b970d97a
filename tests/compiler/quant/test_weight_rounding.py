"""GPTQ rounding of int8 weights: same per-channel grid as round to nearest, lower output error held out."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

SHAPE = (1, 6, 12, 12)


def _model(seed: int = 0) -> onnx.ModelProto:
    """Conv 3x3 pad 1 (16) -> Relu -> depthwise 3x3 stride 2 (group 16) -> Relu -> Conv 1x1 (8)
    -> GlobalAveragePool -> Gemm head (transB); outputs the 1x1 conv's map and the head."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((16, 6, 3, 3)) * 0.2).astype(np.float32)
    w2 = (rng.standard_normal((16, 1, 3, 3)) * 0.4).astype(np.float32)
    w3 = (rng.standard_normal((8, 16, 1, 1)) * 0.3).astype(np.float32)
    w4 = (rng.standard_normal((4, 8)) * 0.5).astype(np.float32)
    for w in (w1, w2, w3, w4):  # one large weight per output channel: a coarse grid for the others
        w.reshape(len(w), -1)[:, 0] = 8.0 * np.abs(w).reshape(len(w), -1).max(1)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(rng.standard_normal(16).astype(np.float32)
                                                                        * 0.1, "b1"),
             numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(np.zeros(16, np.float32), "b2"),
             numpy_helper.from_array(w3, "w3"), numpy_helper.from_array(np.zeros(8, np.float32), "b3"),
             numpy_helper.from_array(w4, "w4"), numpy_helper.from_array(np.zeros(4, np.float32), "b4"),
             numpy_helper.from_array(np.array([1, 8], np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="dw", pads=[1, 1, 1, 1], strides=[2, 2],
                              group=16),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], name="pw"),
             helper.make_node("GlobalAveragePool", ["c3"], ["p"], name="gap"),
             helper.make_node("Reshape", ["p", "shape"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w4", "b4"], ["y"], name="head", transB=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(SHAPE))],
                          [helper.make_tensor_value_info("c3", onnx.TensorProto.FLOAT, [1, 8, 6, 6]),
                           helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _samples(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Smooth, channel-correlated images: neighbouring patch values move together, so the layers'
    Hessians are far from diagonal (where GPTQ and round to nearest differ)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.standard_normal((1, 1, 4, 4))
        up = np.kron(base, np.ones((1, 1, 3, 3)))
        x = up * rng.uniform(0.5, 1.5, (1, SHAPE[1], 1, 1)) + 0.2 * rng.standard_normal(SHAPE)
        out.append({"x": x.astype(np.float32)})
    return out


def _quantizer(proto, samples, rounding: str):
    from edgec.calibration import CalibrationData, collect_ranges
    from edgec.compiler.model import ModelHandle, TensorSpec
    from edgec.compiler.quant_stage import Int8Quantizer
    from edgec.targets.onnxruntime import ONNXRuntimeTarget

    h = ModelHandle(proto=proto, source_path="conv.onnx", source_sha256="0",
                    inputs=[TensorSpec("x", SHAPE, "float32")],
                    outputs=[TensorSpec("c3", (1, 8, 6, 6), "float32"), TensorSpec("y", (1, 4), "float32")])
    scheme = dataclasses.replace(ONNXRuntimeTarget.quant_scheme, weight_bias_correction=False,
                                 equalize_conv_pairs=False)
    q = Int8Quantizer(h, h, collect_ranges(proto, samples), scheme, CalibrationData(samples, "test"))
    q.weight_rounding = rounding
    return q


def _weights(quant) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{node: (int8 values, scales)}`` of each weighted node's DequantizeLinear."""
    g = quant.proto.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    out = {}
    for n in g.node:
        if n.op_type in ("Conv", "Gemm") and n.input[1] in producer:
            dq = producer[n.input[1]]
            out[n.name] = (inits[dq.input[0]], inits[dq.input[1]])
    return out


def _error(quant, reference, samples) -> float:
    from edgec.compiler.quality import run_onnx

    outs, refs = run_onnx(quant.proto, samples), run_onnx(reference.proto, samples)
    return float(np.mean([np.sum((o[k] - r[k]) ** 2) / np.sum(r[k] ** 2) for o, r in zip(outs, refs) for k in r]))


def test_gptq_same_grid_lower_error_held_out():
    from edgec.compiler.overflow_fix import PAIRS_IM2COL, pairs_fit

    proto = _model()
    calib, held = _samples(16, seed=1), _samples(16, seed=2)
    near, _ = _quantizer(proto, calib, "nearest").quantize()
    q = _quantizer(proto, calib, "gptq")
    gptq, summary = q.quantize()
    info = summary["weight_rounding"]
    assert info["method"] == "gptq" and info["layers"] == 4
    wn, wg = _weights(near), _weights(gptq)
    assert sorted(wn) == sorted(wg) == ["conv1", "dw", "head", "pw"]
    nodes = {n.name: n for n in proto.graph.node}
    changed = 0
    for name in wn:
        (qn, sn), (qg, sg) = wn[name], wg[name]
        assert qg.dtype == np.int8 and qg.shape == qn.shape
        assert np.array_equal(sn, sg), name  # the scale grid is unchanged
        assert int(np.abs(qg.astype(np.int32)).max()) <= int(np.abs(qn.astype(np.int32)).max()) <= 127
        # on round to nearest's grid: pair-bounded where the target's `overflow_fix` asked (onnxruntime: all but
        # depthwise), so GPTQ's error feedback keeps every pair the int16 kernels add within 128 too
        fits = [pairs_fit(q, nodes[name], 1, PAIRS_IM2COL) for q in (qn, qg)]
        assert name == "dw" or all(fits), name
        changed += int((qg != qn).sum())
    assert changed > 0
    err_near, err_gptq = _error(near, q.reference, held), _error(gptq, q.reference, held)
    assert err_gptq < 0.9 * err_near, (err_gptq, err_near)
    again, _ = q.quantize()  # cached: the same bytes
    assert again.proto.SerializeToString() == gptq.proto.SerializeToString()
    fresh, _ = _quantizer(proto, calib, "gptq").quantize()  # measured anew: the same bytes
    assert fresh.proto.SerializeToString() == gptq.proto.SerializeToString()


@pytest.mark.parametrize("attrs", [{"pads": [1, 1, 1, 1]}, {"strides": [2, 2], "pads": [0, 1, 1, 0]},
                                   {"dilations": [2, 2], "pads": [2, 2, 2, 2], "group": 2},
                                   {"auto_pad": "SAME_UPPER", "strides": [2, 2]}])
def test_conv_patches_match_onnxruntime(attrs):
    """The im2col rows the Hessian is built from, times the weight, give onnxruntime's Conv output."""
    from edgec.compiler.quality import run_onnx
    from edgec.compiler.weight_rounding import conv_patches

    rng = np.random.default_rng(0)
    group = attrs.get("group", 1)
    w = rng.standard_normal((6, 4 // group, 3, 3)).astype(np.float32)
    x = rng.standard_normal((1, 4, 9, 9)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 9, 9])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "w")])
    ref = run_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), [{"x": x}])[0]["y"]
    p = conv_patches(x[0], node, (3, 3))
    per = 6 // group
    y = np.concatenate([w[k * per:(k + 1) * per].reshape(per, -1) @ p[k] for k in range(group)])
    np.testing.assert_allclose(y.reshape(ref.shape), ref, rtol=1e-4, atol=1e-4)


def test_weight_rounding_option_checked():
    from edgec.compiler.config import Int8Options
    from edgec.errors import ConfigError

    with pytest.raises(ConfigError, match="--weight-rounding"):
        Int8Options(weight_rounding="stochastic")
    assert Int8Options(weight_rounding="gptq").weight_rounding == "gptq"


def test_gate_move_applies_gptq():
    """The accuracy gate's cheap ``weight-rounding`` move quantizes the state with GPTQ rounding."""
    from edgec.compiler.sensitivity import FallbackState

    proto = _model()
    q = _quantizer(proto, _samples(8, seed=1), "nearest")
    plain, summary = q.quantize()
    assert "weight_rounding" not in summary
    moves = [c for c in q.candidates(plain, ("weight-rounding",))]
    assert [(c.kind, c.value) for c in moves] == [("weight-rounding", "gptq")]
    state = FallbackState().plus(moves[0])
    assert state.key() != FallbackState().key()
    quant, summary = state.quantize(q)
    assert summary["weight_rounding"]["layers"] == 4
    assert moves[0].describe() == "gptq weight rounding"
    q.weight_rounding = "gptq"  # already the build's rounding: no such move
    assert not q.candidates(quant, ("weight-rounding",))


def test_screen_keeps_whole_model_moves():
    """The gate's layer screen keeps moves that touch no one layer (weight rounding, bias correction)."""
    from edgec.compiler.sensitivity import SCREEN_LAYERS, Fallback, screen

    proto = _model()
    samples = _samples(4, seed=1)
    q = _quantizer(proto, samples, "nearest")
    quant, _ = q.quantize()
    cands = [Fallback("keep-float", f"layer{i}", op="Conv") for i in range(SCREEN_LAYERS + 5)]
    cands += [Fallback("weight-rounding", "int8 weights", "gptq"), Fallback("bias-correction", "weighted layers")]
    kept = screen(q.reference.proto, quant.proto, cands, samples)
    assert [c.kind for c in kept[:2]] == ["weight-rounding", "bias-correction"]
    assert len(kept) == 2 + SCREEN_LAYERS


def test_gptq_stays_on_the_7_bit_grid():
    """GPTQ's error feedback can push a weight at the grid's edge one step past it (63 -> 64 on the 7-bit grid
    `QuantScheme.overflow_fix` asks for, where CPUs without VNNI saturate): ``qmax`` bounds every integer."""
    from edgec.compiler.weight_rounding import gptq_int8

    rng = np.random.default_rng(0)
    past = 0
    for _ in range(300):
        w = rng.uniform(-63, 63, (1, 8, 1)).astype(np.float32)
        w[0, rng.integers(8), 0] = 63.0  # one weight on the 7-bit grid's edge, as round to nearest puts it
        a = rng.standard_normal((8, 16))
        h = (a @ a.T / np.abs(a @ a.T).max())[None]
        scale = np.ones((1, 1), np.float32)
        past += int(np.abs(gptq_int8(w, scale, h).astype(np.int32)).max() > 63)
        assert int(np.abs(gptq_int8(w, scale, h, qmax=63).astype(np.int32)).max()) <= 63
    assert past > 0  # without the bound, some layers leave the grid
