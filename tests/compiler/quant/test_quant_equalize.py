"""Cross-layer equalization of Conv -> [Relu] -> Conv pairs (`edgec.compiler.equalize`), and
bias correction by default in front of recurrent cells: real onnxruntime and OpenVINO runs."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.runtimes.metrics import cosine as _cosine

from ._quant_util import run_first_output as _run

OUTLIER = 300.0  # BlazeFace's last depthwise conv: one channel ~140x the median channel's range


def _dw_pw_model(relu: bool):
    """x [1, 8, 12, 12] -> depthwise 3x3 (channel 2 scaled up by OUTLIER) -> [Relu] -> 1x1 conv (its column
    scaled down): the float function is an ordinary one, but the 1x1 conv's per-tensor input scale is set by
    channel 2 and leaves the other channels a level or two."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.5, (8, 1, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 8).astype(np.float32)
    w2 = rng.normal(0, 0.5, (6, 8, 1, 1)).astype(np.float32)
    w1[2] *= OUTLIER
    b1[2] *= OUTLIER
    w2[:, 2] /= OUTLIER
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["dw"], name="dw", group=8, pads=[1, 1, 1, 1])]
    mid = "dw"
    if relu:
        nodes.append(helper.make_node("Relu", ["dw"], ["act"], name="act"))
        mid = "act"
    nodes.append(helper.make_node("Conv", [mid, "w2"], ["y"], name="pw"))
    g = helper.make_graph(nodes, "dwpw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 12, 12])],
                          [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _samples(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(0, 1, (1, 8, 12, 12)).astype(np.float32)} for _ in range(n)]


@pytest.mark.parametrize("relu", [False, True])
def test_equalization_keeps_the_function_and_restores_the_int8_levels(relu):
    import dataclasses

    from edgec.calibration import collect_ranges
    from edgec.compiler.equalize import equalize
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.quantize import quantize_qdq
    from edgec.targets.registry import get_target

    model = ModelHandle.from_onnx(_dw_pw_model(relu), "dwpw.onnx", "0" * 64)
    calib, evals = _samples(16, 1), _samples(8, 2)
    eq, info = equalize(model, calib)
    assert info["equalized"] == 1 and info["nodes"] == ["dw"]
    ref = _run(model.proto, evals)
    np.testing.assert_allclose(_run(eq.proto, evals), ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))
    scheme = dataclasses.replace(get_target("onnxruntime").quant_scheme, per_channel_depthwise_inputs=False)
    cos = {}
    for name, m in (("plain", model), ("equalized", eq)):
        q, _ = quantize_qdq(m, collect_ranges(m.proto, calib, "minmax"), scheme)
        cos[name] = _cosine(_run(q.proto, evals), ref)
    # Without it the 1x1 conv's input keeps ~2 levels per ordinary channel; with it, int8 is int8 again.
    assert cos["plain"] < 0.99 < 0.999 < cos["equalized"], cos


def test_debug_layers_compares_an_equalized_input_channel_by_channel(tmp_path):
    """The rescaled tensor is not the float one: its SQNR comes from a per-channel fit, not 'exact'."""
    from edgec.compiler.debug_layers import compare_layers
    from edgec.compiler.equalize import equalize
    from edgec.compiler.model import ModelHandle
    from edgec.calibration import collect_ranges
    from edgec.compiler.quantize import quantize_qdq
    from edgec.targets.registry import get_target

    model = ModelHandle.from_onnx(_dw_pw_model(relu=True), "dwpw.onnx", "0" * 64)
    calib = _samples(16, 1)
    eq, _ = equalize(model, calib)
    q, _ = quantize_qdq(eq, collect_ranges(eq.proto, calib, "minmax"), get_target("onnxruntime").quant_scheme)
    rows = {r["node"]: r for r in compare_layers(model.proto, q.proto, _samples(4, 2))}
    assert "dw" not in rows and "act" not in rows  # renamed: they hold x / s
    assert 25.0 < rows["pw"]["input_sqnr_db"] < 80.0, rows["pw"]


@pytest.mark.parametrize("target", ["onnxruntime", "intel-cpu", "mcu", "jetson"])
def test_default_int8_build_equalizes_and_agrees(target, tmp_path):
    pytest.importorskip("openvino") if target == "intel-cpu" else None
    import onnx

    from edgec.api import build
    from edgec.compiler.config import BuildConfig

    onnx.save(_dw_pw_model(relu=True), str(tmp_path / "m.onnx"))
    np.savez(tmp_path / "calib.npz", x=np.concatenate([s["x"] for s in _samples(16, 1)]))
    np.savez(tmp_path / "eval.npz", x=np.concatenate([s["x"] for s in _samples(8, 2)]))
    res = build(BuildConfig(model=str(tmp_path / "m.onnx"), output=tmp_path / "b", target=target, precision="int8",
                            calib=str(tmp_path / "calib.npz"), eval_data=str(tmp_path / "eval.npz"), force=True,
                            task="regression"))
    passes = {p["name"]: p["config"] for p in res.manifest["passes"]}
    assert passes["equalize-conv-pairs"]["equalized"] == 1
    assert res.report["accuracy"]["cosine"] >= 0.999, res.report["accuracy"]


def _lstm_model():
    """x [1, 4, 16, 16] -> 3x3 conv -> [T=16, 1, 64] (Transpose, Reshape) -> LSTM(32) -> output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = {"wc": rng.normal(0, 0.3, (4, 4, 3, 3)), "shape": np.array([16, 1, 64], np.int64),
             "W": rng.normal(0, 0.2, (1, 128, 64)), "R": rng.normal(0, 0.2, (1, 128, 32))}
    nodes = [helper.make_node("Conv", ["x", "wc"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["c"], ["t"], name="t", perm=[3, 0, 1, 2]),
             helper.make_node("Reshape", ["t", "shape"], ["seq"], name="r"),
             helper.make_node("LSTM", ["seq", "W", "R"], ["y"], name="lstm", hidden_size=32)]
    g = helper.make_graph(nodes, "crnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16, 1, 1, 32])],
                          [numpy_helper.from_array(v if v.dtype == np.int64 else v.astype(np.float32), k)
                           for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_bias_correction_is_on_by_default_in_front_of_an_lstm(tmp_path):
    import onnx

    from edgec.compiler.config import BuildConfig
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.progress import SILENT
    from edgec.compiler.quant_stage import Int8Quantizer
    from edgec.calibration import CalibrationData, collect_ranges
    from edgec.targets.registry import get_target

    model = ModelHandle.from_onnx(_lstm_model(), "crnn.onnx", "0" * 64)
    onnx.checker.check_model(model.proto)
    samples = [{"x": np.random.default_rng(k).normal(0, 1, (1, 4, 16, 16)).astype(np.float32)} for k in range(4)]

    calib = CalibrationData(samples=samples, source="test")
    cfg = BuildConfig(model="m.onnx", output=tmp_path / "b", target="onnxruntime", precision="int8")
    import dataclasses

    for target in ("onnxruntime", "intel-cpu"):  # no --calib-method: both default to mse already
        scheme = get_target(target).quant_scheme
        q = Int8Quantizer.create(cfg, model, calib, collect_ranges(model.proto, samples, "mse"), scheme, SILENT)
        assert q.bias_correction is True and q.calib_method == "mse"
        rule = next(p["config"] for p in q.passes if p["name"] == "recurrent-recipe")
        assert rule["ops"] == ["LSTM"] and rule["bias_correction"] is True and "calib_method" not in rule
    # A scheme whose default differs takes `calib_method_with_ops`, unless the user asked for a method.
    minmax = dataclasses.replace(get_target("onnxruntime").quant_scheme, calib_method="minmax",
                                 calib_method_with_ops="mse")
    for asked, rule_method in ((None, "mse"), ("minmax", None)):
        q = Int8Quantizer.create(cfg.replace(calib_method=asked), model, calib, collect_ranges(model.proto, samples),
                                 minmax, SILENT)
        rule = next(p["config"] for p in q.passes if p["name"] == "recurrent-recipe")
        assert rule.get("calib_method") == rule_method, rule

    plain = dataclasses.replace(get_target("onnxruntime").quant_scheme, bias_correction_ops=frozenset())
    q = Int8Quantizer.create(cfg, model, calib, collect_ranges(model.proto, samples), plain, SILENT)
    assert q.bias_correction is False
