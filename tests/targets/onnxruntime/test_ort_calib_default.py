"""onnxruntime's default calibration method is per model: mse ranges for a plain CNN, the deep-residual
recipe's min/max for a model with `QuantScheme.deep_residual_adds` residual blocks; ``--calib-method``
wins over both. Real builds, verified in onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from tests.compiler.quant._blaze_blocks import blaze_stream_model

C, HW = 8, 8


def _model(blocks: int):
    """x [1, 4, 8, 8] -> conv (8 ch) -> Relu, then ``blocks`` residual blocks (BlazeFace's) and a 1x1 head."""
    return blaze_stream_model(blocks, hw=HW, channels=C, pw_std=0.15, bias_std=0.05)


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
