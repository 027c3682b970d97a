"""`--task` decides how any model is scored, not only a Hugging Face folder's head."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _regressor(path):
    """A 2-D output that is coordinates, not class scores (shaped like a landmark head)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(16, 12)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(size=(12,)).astype(np.float32), "b")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["coords"], name="head")], "landmarks",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info("coords", TensorProto.FLOAT, [1, 12])], [w, b])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    data = path.parent / "x.npz"
    np.savez(data, x=rng.normal(size=(16, 1, 16)).astype(np.float32))
    return path, data


def test_task_turns_top1_scoring_off_for_a_regressor_and_is_recorded(cli, tmp_path):
    model, data = _regressor(tmp_path / "lm.onnx")
    args = ("build", model, "--target", "ort", "--calib", data, "--eval", data, "--force", "--json")
    reg = cli(*args, "-o", tmp_path / "a", "--task", "landmarks")
    assert reg.code == 0, reg.err
    assert reg.json()["manifest"]["task"] == "landmarks"
    acc = reg.json()["report"]["accuracy"]
    assert acc.get("top1_agreement") is None and acc["cosine"] >= 0.98
    cls = cli(*args, "-o", tmp_path / "b", "--task", "classification", "--accept-low-accuracy")
    assert cls.code == 0, cls.err
    assert cls.json()["report"]["accuracy"]["top1_agreement"] is not None
