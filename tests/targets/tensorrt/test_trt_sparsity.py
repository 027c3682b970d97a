"""2:4 structured sparsity detection."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from .trt_models import make_model
from edgec.targets.tensorrt.sparsity import groups_2to4_fraction, is_2to4, sparsity_report, summarize


def prune_2to4(w, axis):
    """Zero the 2 smallest of every 4 along ``axis``."""
    m = np.moveaxis(w.copy(), axis, -1)
    g = m.reshape(-1, 4)
    idx = np.argsort(np.abs(g), axis=1)[:, :2]
    np.put_along_axis(g, idx, 0, axis=1)
    return np.moveaxis(g.reshape(m.shape), -1, axis)


def test_is_2to4_along_axis():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
    assert not is_2to4(w, 1)
    p = prune_2to4(w, 1)
    assert is_2to4(p, 1)
    assert not is_2to4(p, 0)  # the pattern runs along input channels only
    assert groups_2to4_fraction(w, 1) == 0.0


def test_padding_and_partial():
    w = np.array([[1, 0, 0, 1, 1, 1]], np.float32)  # groups: [1,0,0,1] ok, [1,1,0,0] ok (padded)
    assert is_2to4(w, 1)
    w2 = np.array([[1, 1, 1, 0, 1, 0, 0, 0]], np.float32)
    assert groups_2to4_fraction(w2, 1) == 0.5


def test_report_per_weight_and_summary():
    rng = np.random.default_rng(0)
    wc = prune_2to4(rng.standard_normal((4, 8, 1, 1)).astype(np.float32), 1)
    wm = rng.standard_normal((16, 4)).astype(np.float32)  # dense MatMul weight [K, N]
    nodes = [helper.make_node("Conv", ["x", "wc"], ["c"], name="conv"),
             helper.make_node("Reshape", ["c", "shape"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "wm"], ["y"], name="mm")]
    m = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 2, 2])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                   {"wc": wc, "wm": wm, "shape": np.array([1, 16], np.int64)})
    rows = {r["node"]: r for r in sparsity_report(m)}
    assert rows["conv"]["pattern"] == "2:4" and rows["conv"]["axis"] == 1
    assert rows["mm"]["pattern"] == "dense" and rows["mm"]["axis"] == 0
    info, warn = summarize(list(rows.values()), requested=True)
    assert info["weights_2to4"] == ["wc"] and not warn
    info, warn = summarize([rows["mm"]], requested=True)
    assert warn and "no weight is 2:4" in warn[0]
