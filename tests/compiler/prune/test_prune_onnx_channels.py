"""Structured channel pruning of plain ONNX graphs: dependency groups and exactness."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.compiler.prune.onnx_channels import prune_channels_onnx
from edgec.compiler.prune.spec import parse_prune_spec
from edgec.errors import ConfigError

C = 8  # channels of the tied residual group; DEAD of them are zero in every producer
DEAD = [1, 4, 6]


def _graph():
    """Conv->BN->Relu, depthwise, SE scale (Mul), residual Add, Concat, Flatten of a 2x2 map -> Gemm."""
    rng = np.random.default_rng(0)

    def conv(cout, cin, k=3, dead=(), group=1):
        w = rng.normal(0, 0.4, (cout, cin // group, k, k)).astype(np.float32)
        b = rng.normal(0, 0.1, cout).astype(np.float32)
        w[list(dead)] = 0
        b[list(dead)] = 0
        return w, b

    w1, b1 = conv(C, 3, dead=DEAD)
    bn_scale = rng.uniform(0.5, 1.5, C).astype(np.float32)
    bn_bias = rng.normal(0, 0.1, C).astype(np.float32)
    bn_bias[DEAD] = 0
    bn_mean = np.zeros(C, np.float32)
    bn_var = np.ones(C, np.float32)
    wd, bd = conv(C, C, dead=DEAD, group=C)
    wse1, bse1 = conv(4, C, k=1, dead=[2])
    wse2, bse2 = conv(C, 4, k=1, dead=DEAD)
    w2, b2 = conv(C, C, dead=DEAD)
    w3, b3 = conv(6, 2 * C, dead=[0, 5])
    wg = rng.normal(0, 0.2, (6 * 2 * 2, 5)).astype(np.float32)
    inits = {"w1": w1, "b1": b1, "s": bn_scale, "bb": bn_bias, "m": bn_mean, "v": bn_var, "wd": wd, "bd": bd,
             "wse1": wse1, "bse1": bse1, "wse2": wse2, "bse2": bse2, "w2": w2, "b2": b2, "w3": w3, "b3": b3,
             "wg": wg}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("Conv", ["r1", "wd", "bd"], ["d1"], pads=[1, 1, 1, 1], group=C),
        helper.make_node("HardSwish", ["d1"], ["h1"]),
        helper.make_node("GlobalAveragePool", ["h1"], ["p1"]),
        helper.make_node("Conv", ["p1", "wse1", "bse1"], ["e1"]),
        helper.make_node("Relu", ["e1"], ["e2"]),
        helper.make_node("Conv", ["e2", "wse2", "bse2"], ["e3"]),
        helper.make_node("HardSigmoid", ["e3"], ["e4"]),
        helper.make_node("Mul", ["h1", "e4"], ["se"]),
        helper.make_node("Conv", ["se", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["res"]),  # ties c2's channels to c1's
        helper.make_node("Concat", ["res", "h1"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1], strides=[4, 4]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("Flatten", ["r3"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wg"], ["y"]),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _run(m, x):
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_dead_channels_are_removed_exactly_through_every_dependency():
    """Channels that are zero in every producer of a group carry nothing: removing them changes no output."""
    m = _graph()
    pruned, info = prune_channels_onnx(m, parse_prune_spec("channels:0.34"))  # 8 -> 5, 6 -> 4, 4 -> 3
    onnx.checker.check_model(pruned)
    w = {t.name: numpy_helper.to_array(t) for t in pruned.graph.initializer}
    assert w["w1"].shape[0] == w["w2"].shape[0] == w["wd"].shape[0] == w["wse2"].shape[0] == 5  # one tied group
    assert w["s"].shape == (5,) and w["w2"].shape[1] == 5 and w["wse1"].shape[1] == 5
    assert w["w3"].shape == (4, 10, 3, 3)  # Concat: both halves sliced
    assert w["wg"].shape == (4 * 2 * 2, 5)  # Flatten of a 2x2 map: 4 features per channel
    assert w["wse1"].shape[0] == 3 and w["wse2"].shape[1] == 3  # the SE bottleneck is its own group
    dw = next(n for n in pruned.graph.node if len(n.input) > 1 and n.input[1] == "wd")
    assert next(a.i for a in dw.attribute if a.name == "group") == 5
    assert info["groups_pruned"] == 3 and info["channels_before"] == 8 + 4 + 6 and info["channels_after"] == 5 + 3 + 4
    # Every removed channel was zero in all its producers: the pruned graph computes the same function.
    for seed in range(3):
        x = np.random.default_rng(seed).random((1, 3, 8, 8), np.float32)
        np.testing.assert_allclose(_run(pruned, x), _run(m, x), rtol=1e-5, atol=1e-5)


def test_pinned_groups_and_errors():
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
                          [numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ConfigError, match="no channel group of this ONNX graph can be pruned"):
        prune_channels_onnx(m, parse_prune_spec("channels:0.5"))


def test_least_squares_refit_recovers_redundant_channels():
    """Half the channels are scaled copies of the others: after pruning them, the refit of the
    next 1x1 conv reproduces the unpruned output (the magnitude cut alone does not)."""
    from edgec.compiler.prune.onnx_refit import refit_pointwise

    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.5, (4, 4, 1, 1)).astype(np.float32)
    base /= np.linalg.norm(base.reshape(4, -1), axis=1)[:, None, None, None]  # originals outrank the copies
    w1 = np.concatenate([base, 0.5 * base])  # channels 4..7 = 0.5 x channels 0..3
    w2 = rng.normal(0, 0.5, (3, 8, 1, 1)).astype(np.float32)
    g = helper.make_graph([helper.make_node("Conv", ["x", "w1"], ["h"]), helper.make_node("Conv", ["h", "w2"], ["y"])],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    pruned, info = prune_channels_onnx(m, parse_prune_spec("channels:0.5"))
    samples = [{"x": rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32)} for _ in range(4)]
    x = samples[0]["x"]
    cut_err = np.abs(_run(pruned, x) - _run(m, x)).max()
    done = refit_pointwise(m, pruned, info["refit_candidates"], samples)
    assert done["refitted"] == 1 and numpy_helper.to_array(pruned.graph.initializer[1]).shape == (3, 4, 1, 1)
    held_out = rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32)
    refit_err = np.abs(_run(pruned, held_out) - _run(m, held_out)).max()
    assert cut_err > 0.1 and refit_err < 0.01 * cut_err


def test_onnx_source_channels_build_is_smaller_and_reports_accuracy(cli, tiny_cnn_onnx, tiny_calib, tmp_path):
    """`--prune channels:0.3` on a plain .onnx (conv -> pool -> Flatten -> Gemm) through the int8 intel-cpu build."""
    args = ["build", tiny_cnn_onnx, "--target", "intel-cpu", "--precision", "int8", "--calib", tiny_calib, "--json"]
    base = cli(*args, "-o", tmp_path / "base")
    res = cli(*args, "--prune", "channels:0.3,ratios=uniform", "-o", tmp_path / "pruned")
    assert base.code == 0 and res.code == 0, res.err
    p = res.json()["report"]["pruning"]
    assert p["applied_to"] == "onnx" and p["parameters"]["after"] < 0.75 * p["parameters"]["before"]
    assert p["structure"]["groups_pruned"] == 2 and "refit" in p["structure"]  # 3x3 convs: nothing to refit
    assert {"cosine", "top1_agreement"} <= set(p["accuracy_vs_unpruned"])
    assert res.json()["report"]["size_bytes"]["artifact"] < base.json()["report"]["size_bytes"]["artifact"]
    ref = onnx.load(tmp_path / "pruned" / "reference" / "model.onnx")
    shapes = sorted(tuple(t.dims) for t in ref.graph.initializer if len(t.dims) == 4)
    assert shapes == [(6, 1, 3, 3), (11, 6, 3, 3)]


def _rel_error(a, b, samples):
    return float(np.mean([np.sum((_run(a, s["x"]) - _run(b, s["x"])) ** 2) / np.sum(_run(b, s["x"]) ** 2)
                          for s in samples]))


def test_sensitivity_ratios_spend_the_uniform_budget_where_it_hurts_least():
    """Trials run on a masked graph: its measured error is the pruned graph's own; the per-group
    ratios remove at least the uniform ratio's weights with less output error than uniform."""
    m = _graph()
    rng = np.random.default_rng(1)
    calib = [{"x": rng.random((1, 3, 8, 8), np.float32)} for _ in range(8)]
    held_out = [{"x": rng.random((1, 3, 8, 8), np.float32)} for _ in range(8)]
    uniform, u_info = prune_channels_onnx(m, parse_prune_spec("channels:0.5,ratios=uniform"), calib)
    tuned, t_info = prune_channels_onnx(m, parse_prune_spec("channels:0.5"), calib)
    alloc = t_info["allocation"]
    assert u_info["allocation"] == {"method": "uniform"} and alloc["method"] == "sensitivity"
    onnx.checker.check_model(tuned)
    np.testing.assert_allclose(alloc["output_rel_error_before_refit"], _rel_error(tuned, m, calib), rtol=1e-3)
    assert alloc["weights_removed"] >= alloc["weights_budget"] > 0 and alloc["macs_removed"] > 0

    def size(model):
        return sum(int(np.prod(t.dims)) for t in model.graph.initializer)

    assert size(tuned) <= size(uniform) * 1.05
    assert _rel_error(tuned, m, held_out) < _rel_error(uniform, m, held_out)
