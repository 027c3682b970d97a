"""`edgec build --prune`: the report, the pruned reference, ONNX sources, and the jetson 2:4 bundle."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgec.targets.tensorrt.sparsity import is_2to4, reduction_axis

pytest.importorskip("torch_pruning")


def _weights(path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def test_int8_build_with_channels_reports_pruning(cli, tiny_cnn_factory, tiny_calib, tmp_path):
    pytest.importorskip("openvino")
    res = cli("build", tiny_cnn_factory, "--target", "intel-cpu", "--precision", "int8", "--prune", "channels:0.3",
              "--calib", tiny_calib, "-o", tmp_path / "b", "--json")
    assert res.code == 0, res.err
    out = res.json()
    m, r = out["manifest"], out["report"]
    assert [p["config"]["spec"] for p in m["passes"] if p["name"] == "prune"] == ["channels:0.3"]
    p = r["pruning"]
    assert {"parameters", "size_bytes", "sparsity", "accuracy_vs_unpruned", "speedup_expected",
            "speedup_expected_here"} <= set(p)
    assert p["parameters"]["after"] < p["parameters"]["before"]
    assert {"weights_before", "weights_after", "weights_compressed_before", "weights_compressed_after", "artifact",
            "artifact_compressed"} <= set(p["size_bytes"])
    assert p["size_bytes"]["artifact"] == r["size_bytes"]["artifact"]
    assert all({"node", "shape", "params", "zeros", "sparsity"} <= set(row) for row in p["sparsity"]["layers"])
    assert p["accuracy_vs_unpruned"]["samples"] == 32 and p["accuracy_vs_unpruned"]["top1_agreement"] is not None
    # the reference is the pruned float model: the int8 error measures quantization only
    ref = _weights(tmp_path / "b" / "reference" / "model.onnx")
    assert sorted(w.shape for w in ref.values() if w.ndim == 4) == [(5, 1, 3, 3), (11, 5, 3, 3)]
    assert r["accuracy"]["cosine"] > 0.95
    assert not r["warnings"]
    human = cli("build", tiny_cnn_factory, "--prune", "channels:0.3", "--calib", tiny_calib, "-o", tmp_path / "b",
                "--force")
    assert human.code == 0 and "pruned vs unpruned float: cosine" in human.out


def test_onnx_source_magnitude_is_honest_about_speed(cli, tiny_cnn_onnx, tiny_calib, tmp_path):
    pytest.importorskip("openvino")
    res = cli("build", tiny_cnn_onnx, "--precision", "fp32", "--prune", "magnitude:0.5", "--calib", tiny_calib,
              "-o", tmp_path / "m", "--json")
    assert res.code == 0, res.err
    r = res.json()["report"]
    p = r["pruning"]
    assert p["applied_to"] == "onnx" and p["sparsity"]["total"] == 0.5
    assert p["parameters"]["before"] == p["parameters"]["after"]
    assert p["nonzero"]["after"] < p["nonzero"]["before"]
    assert p["size_bytes"]["weights_compressed_after"] < p["size_bytes"]["weights_compressed_before"]
    assert "none expected" in p["speedup_expected_here"]
    assert any("does not make 'intel-cpu' faster" in w for w in r["warnings"])
    ref = _weights(tmp_path / "m" / "reference" / "model.onnx")
    assert sum(int((w == 0).sum()) for w in ref.values() if w.ndim >= 2) >= sum(w.size for w in ref.values()
                                                                               if w.ndim >= 2) // 2
    bad = cli("build", tiny_cnn_onnx, "--prune", "heads:0.25", "-o", tmp_path / "x")
    assert bad.code == 1 and bad.err.startswith("error: --prune heads needs a PyTorch") and bad.err.count("\n") == 1


def _const_weight(graph, name):
    """The weight behind ``name``: an initializer, or one behind DequantizeLinear (and QuantizeLinear).

    A zero stays zero through symmetric Q/DQ (zero point 0), so the pattern is the engine's.
    """
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    for _ in range(3):
        if name in inits:
            return inits[name]
        node = producers.get(name)
        if node is None or node.op_type not in ("DequantizeLinear", "QuantizeLinear"):
            return None
        if len(node.input) > 2 and node.input[2] in inits:
            assert not inits[node.input[2]].any()  # symmetric: zero point 0
        name = node.input[0]
    return None


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_jetson_bundle_weights_are_2to4(cli, tiny_cnn_factory, tiny_calib, tmp_path, precision):
    res = cli("build", tiny_cnn_factory, "--target", "jetson", "--precision", precision, "--prune", "2:4",
              "--sparsity", "--calib", tiny_calib, "-o", tmp_path / "j", "--json")
    assert res.code == 0, res.err
    out = res.json()
    bundle = tmp_path / "j"
    assert json.loads((bundle / "engine_config.json").read_text())["sparsity"] is True
    model = onnx.load(str(bundle / "model.onnx"))
    checked = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        w = _const_weight(model.graph, node.input[1])
        assert w is not None, node.name
        axis = reduction_axis(node, 1, w.ndim)
        assert is_2to4(w, axis), (node.name, axis)
        if w.shape[axis] >= 4:
            assert (w == 0).mean() >= 0.5
        checked.append(node.input[1])
    assert len(checked) == 3  # conv1, conv2, fc
    info = out["manifest"]["target_info"]["sparsity"]
    assert info["requested"] and len(info["weights_2to4"]) == info["weighted_layers"] == 3
    p = out["report"]["pruning"]
    assert all(row["groups_2to4_fraction"] == 1.0 for row in p["sparsity"]["layers"])
    assert "sparse tensor cores" in p["speedup_expected_here"]
    assert not any("--prune 2:4" in w for w in out["report"]["warnings"])


def test_prune_command_on_an_onnx_source(cli, tiny_cnn_onnx, tiny_calib, tmp_path):
    res = cli("prune", tiny_cnn_onnx, "--prune", "2:4", "--calib", tiny_calib, "-o", tmp_path / "o", "--json")
    assert res.code == 0, res.err
    out = res.json()
    assert out["files"] == ["model.onnx"] and out["pass"]["config"]["applied_to"] == "onnx"
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["model.onnx", "report.json"]
    model = onnx.load(str(tmp_path / "o" / "model.onnx"))
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            w = _const_weight(model.graph, node.input[1])
            assert is_2to4(w, reduction_axis(node, 1, w.ndim))
    again = cli("prune", tiny_cnn_onnx, "--prune", "2:4", "-o", tmp_path / "o")
    assert again.code == 1 and "already exists" in again.err
