"""Exact sparsity of the masks, ONNX-level pruning along TensorRT's axis, and the KD loss."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.compiler.prune import distillation_loss, parse_prune_spec
from edgec.compiler.prune.masks import magnitude_masks, nm_mask
from edgec.compiler.prune.onnx_prune import layer_stats, prune_onnx
from edgec.errors import ConfigError
from edgec.targets.tensorrt.sparsity import groups_2to4_fraction, is_2to4


def test_magnitude_global_is_exact_and_ranks_across_layers():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 32)).astype(np.float32)
    b = (rng.standard_normal((16, 8, 3, 3)) * 10).astype(np.float32)  # larger weights survive more
    masks = magnitude_masks([a, b], 0.5, "global")
    total = a.size + b.size
    assert sum(int((~m).sum()) for m in masks) == round(0.5 * total)
    assert (~masks[0]).mean() > (~masks[1]).mean()
    kept_min = min(np.abs(a[masks[0]]).min(), np.abs(b[masks[1]]).min())
    cut_max = max(np.abs(a[~masks[0]]).max(), np.abs(b[~masks[1]]).max())
    assert cut_max <= kept_min  # exactly the smallest magnitudes go


def test_magnitude_per_layer_is_exact():
    rng = np.random.default_rng(1)
    ws = [rng.standard_normal(s).astype(np.float32) for s in ((10, 7), (5, 3, 3, 3), (33, 2))]
    for w, m in zip(ws, magnitude_masks(ws, 0.3, "layer")):
        assert int((~m).sum()) == round(0.3 * w.size)


@pytest.mark.parametrize("shape, axis", [((8, 16, 3, 3), 1), ((32, 24), 1), ((24, 32), 0), ((4, 6, 1, 1), 1)])
def test_2to4_pattern_is_exact(shape, axis):
    w = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    keep = nm_mask(w, 2, 4, axis)
    pruned = np.where(keep, w, 0)
    assert is_2to4(pruned, axis)
    if shape[axis] % 4 == 0:
        assert (pruned == 0).mean() == 0.5
    # the kept pair is the largest |w| of each group
    g = np.moveaxis(np.abs(w), axis, -1)[..., : shape[axis] // 4 * 4].reshape(-1, 4)
    kept = np.moveaxis(keep, axis, -1)[..., : shape[axis] // 4 * 4].reshape(-1, 4)
    assert np.all(np.sort(g, axis=1)[:, 2:].sum(1) == pytest.approx((g * kept).sum(1)))


def _model(weights: dict, nodes, x_shape, y_shape):
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_prune_follows_each_ops_reduction_axis():
    rng = np.random.default_rng(3)
    w = {"wc": rng.standard_normal((8, 8, 3, 3)).astype(np.float32),
         "wg": rng.standard_normal((16, 8 * 4 * 4)).astype(np.float32),  # Gemm transB=1: axis 1
         "wm": rng.standard_normal((16, 12)).astype(np.float32),  # MatMul [K, N]: axis 0
         "shape": np.array([1, 128], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "wc"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Reshape", ["c", "shape"], ["f"]),
             helper.make_node("Gemm", ["f", "wg"], ["g"], transB=1, name="gemm"),
             helper.make_node("MatMul", ["g", "wm"], ["y"], name="mm")]
    m = _model(w, nodes, [1, 8, 4, 4], [1, 12])
    pruned, info = prune_onnx(m, parse_prune_spec("2:4"))
    assert sorted(info["weights"]) == ["wc", "wg", "wm"]
    rows = {r["node"]: r for r in layer_stats(pruned)}
    assert {n: r["axis"] for n, r in rows.items()} == {"conv": 1, "gemm": 1, "mm": 0}
    assert all(r["groups_2to4_fraction"] == 1.0 and r["sparsity"] == 0.5 for r in rows.values())
    inits = {t.name: numpy_helper.to_array(t) for t in pruned.graph.initializer}
    assert groups_2to4_fraction(inits["wm"], 1) < 1.0  # not along the output axis
    onnx.checker.check_model(pruned)
    assert numpy_helper.to_array(m.graph.initializer[0]).all()  # the source model is untouched

    mag, _ = prune_onnx(m, parse_prune_spec("magnitude:0.6,scope=layer"))
    for r in layer_stats(mag):
        assert r["zeros"] == round(0.6 * r["params"])
    with pytest.raises(ConfigError, match="PyTorch"):
        prune_onnx(m, parse_prune_spec("channels:0.5"))


def test_distillation_loss_numerics():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    torch.manual_seed(0)
    s, t = torch.randn(6, 5), torch.randn(6, 5)
    y = torch.randint(0, 5, (6,))
    T = 3.0
    p = F.softmax(t / T, -1)
    kl = (p * (p.log() - F.log_softmax(s / T, -1))).sum(-1).mean() * T * T
    assert float(distillation_loss(s, t, T=T)) == pytest.approx(float(kl), rel=1e-5)
    mixed = distillation_loss(s, t, y, T=T, alpha=0.25)
    assert float(mixed) == pytest.approx(0.25 * float(kl) + 0.75 * float(F.cross_entropy(s, y)), rel=1e-5)
    assert float(distillation_loss(t, t, T=T)) == pytest.approx(0.0, abs=1e-6)  # student == teacher
    sg = s.clone().requires_grad_(True)
    distillation_loss(sg, t, y, T=T, alpha=0.25).backward()
    assert sg.grad is not None and torch.isfinite(sg.grad).all()
    # token-level logits [B, S, C] with ignored labels
    s3, t3 = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    y3 = torch.tensor([[0, 1, -100], [2, -100, 3]])
    assert torch.isfinite(distillation_loss(s3, t3, y3))
    e = torch.randn(4, 8)
    assert float(distillation_loss(e, e * 2, kind="cosine")) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(e, e + 1, kind="mse")) == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ConfigError, match="alpha"):
        distillation_loss(s, t, alpha=2)
    with pytest.raises(ConfigError, match="differ in shape"):
        distillation_loss(s, t[:, :3])


def test_compare_unpruned_scores_a_dead_pruned_output_as_disagreeing():
    """A pruned model whose output collapsed to zeros must not read as cosine 1.0."""
    from edgec.compiler.prune.report import compare_unpruned

    samples = [{"x": np.full((1, 4), float(i + 1), np.float32)} for i in range(4)]
    ref = lambda feeds: feeds["x"] * np.array([1.0, -2.0, 3.0, 0.5], np.float32)  # noqa: E731
    dead = lambda feeds: np.zeros_like(feeds["x"])  # noqa: E731
    assert compare_unpruned(ref, dead, samples, None, classification=False)["cosine"] == 0.0
    assert compare_unpruned(ref, ref, samples, None, classification=False)["cosine"] == pytest.approx(1.0)
