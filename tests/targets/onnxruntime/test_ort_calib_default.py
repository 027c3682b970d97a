"""onnxruntime's default calibration method is per model: mse ranges for a plain CNN, the deep-residual
recipe's min/max for a model with `QuantScheme.deep_residual_adds` residual blocks; ``--calib-method``
wins over both. Real builds, verified in onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

C, HW = 8, 8


def _model(blocks: int):
    """x [1, 4, 8, 8] -> conv (8 ch) -> Relu, then ``blocks`` residual blocks s -> depthwise -> pointwise
    -> Add(s) -> Relu (BlazeFace's), and a 1x1 head."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = {"w0": rng.normal(0, 0.5, (C, 4, 3, 3)), "b0": rng.normal(0, 0.1, C), "h": rng.normal(0, 0.3, (2, C, 1, 1))}
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["s0"], name="s0")]
    for i in range(1, blocks + 1):
        w[f"d{i}"] = rng.normal(0, 0.5, (C, 1, 3, 3))
        w[f"p{i}"] = rng.normal(0, 0.15, (C, C, 1, 1))
        w[f"q{i}"] = rng.normal(0, 0.05, C)
        nodes += [helper.make_node("Conv", [f"s{i - 1}", f"d{i}"], [f"dw{i}"], name=f"dw{i}", group=C,
                                   pads=[1, 1, 1, 1]),
                  helper.make_node("Conv", [f"dw{i}", f"p{i}", f"q{i}"], [f"pw{i}"], name=f"pw{i}"),
                  helper.make_node("Add", [f"pw{i}", f"s{i - 1}"], [f"a{i}"], name=f"add{i}"),
                  helper.make_node("Relu", [f"a{i}"], [f"s{i}"], name=f"s{i}")]
    nodes.append(helper.make_node("Conv", [f"s{blocks}", "h"], ["y"], name="head"))
    g = helper.make_graph(nodes, "stream", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, HW, HW])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, HW, HW])],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


@pytest.mark.parametrize("blocks, asked, method", [
    (2, None, "mse"),  # a plain CNN: the target's default
    (16, None, "minmax"),  # a deep residual stream: the recipe's method
    (16, "percentile", "percentile"),  # the user's method wins over the recipe's
    (2, "minmax", "minmax"),  # ... and over the target's default
])
def test_onnxruntime_default_calib_method_is_per_model(tmp_path, blocks, asked, method):
    import onnx

    from edgec.api import build
    from edgec.compiler.config import BuildConfig
    from edgec.compiler.qdq_graph import conv_residual_adds
    from edgec.targets.registry import get_target

    scheme = get_target("onnxruntime").quant_scheme
    proto = _model(blocks)
    assert (conv_residual_adds(proto) >= scheme.deep_residual_adds) is (blocks == 16)
    onnx.save(proto, str(tmp_path / "m.onnx"))
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "calib.npz", x=rng.normal(0, 1, (16, 4, HW, HW)).astype(np.float32))
    np.savez(tmp_path / "eval.npz", x=rng.normal(0, 1, (8, 4, HW, HW)).astype(np.float32))
    res = build(BuildConfig(model=str(tmp_path / "m.onnx"), output=tmp_path / "b", target="onnxruntime",
                            precision="int8", calib=str(tmp_path / "calib.npz"), eval_data=str(tmp_path / "eval.npz"),
                            force=True, task="regression").replace(calib_method=asked))
    passes = {p["name"]: p["config"] for p in res.manifest["passes"]}
    assert res.manifest["calibration"]["method"] == method and passes["calibrate"]["method"] == method
    assert res.manifest["config"]["calib_method"] == method
    recipe = passes.get("deep-residual-recipe")
    assert (recipe is not None) is (blocks == 16)
    if recipe is not None:  # the recipe records the method it set, not one the user overrode
        assert recipe.get("calib_method") == (None if asked else "minmax") and recipe["float_residual_adds"] is True
    assert res.report["accuracy"]["cosine"] >= 0.99, res.report["accuracy"]
