"""`edgec debug layers`: per-layer error points at the layer made hard to quantize."""

from __future__ import annotations

import pytest
from tests.compiler.quant._quant_util import node_names

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def outlier_bundles(digits_models, tmp_path_factory):
    d = tmp_path_factory.mktemp("dbg")
    out = {}
    for target in ("intel-cpu", "mcu"):
        r = run_cli("build", digits_models["outlier"], "--target", target, "--calib", digits_models["calib"],
                    "-o", d / target, "--json", "--accept-low-accuracy")  # broken on purpose: debug it
        assert r.code == 0, r.err
        out[target] = d / target
    return out


@pytest.mark.parametrize("target,runtime", [("intel-cpu", "onnxruntime"), ("intel-cpu", "target"),
                                            ("mcu", "onnxruntime")])
def test_debug_layers_ranks_and_bisects_the_hard_layer(cli, digits_models, outlier_bundles, target, runtime):
    conv3 = node_names(digits_models["outlier"], "Conv")[2]
    r = cli("debug", "layers", outlier_bundles[target], "--data", digits_models["eval"], "--bisect", "--json",
            "--runtime", runtime, "--samples", "32")
    assert r.code == 0, r.err
    res = r.json()
    rows = res["layers"]
    assert rows[0]["node"] == conv3 and rows[0]["op"] == "Conv"
    assert rows[0]["added_db"] > 15 and rows[0]["sqnr_db"] < 15
    assert res["first_above_threshold"]["node"] == conv3
    assert {"sqnr_db", "cosine", "max_abs_err", "input_sqnr_db"} <= set(rows[0])
    # Upstream layers are clean: everything before conv3 in graph order is above the threshold.
    before = res["graph_order"][:res["graph_order"].index(conv3)]
    assert all(x["sqnr_db"] > 20 for x in rows if x["node"] in before)


def test_debug_layers_human_output_and_plain_model(cli, digits_models, tmp_path):
    r = cli("build", digits_models["plain"], "--target", "ort", "--calib", digits_models["calib"], "-o", tmp_path / "b")
    assert r.code == 0, r.err
    h = cli("debug", "layers", tmp_path / "b", "--data", digits_models["eval"], "--bisect", "--top", "3")
    assert h.code == 0, h.err
    assert "SQNR dB" in h.out and "bisect: first layer below 20 dB: none" in h.out
    # Any runner that exposes intermediate tensors serves --runtime target (here onnxruntime's).
    t = cli("debug", "layers", tmp_path / "b", "--data", digits_models["eval"], "--runtime", "target", "--json",
            "--samples", "8")
    assert t.code == 0, t.err
    assert t.json()["runtime"] == "onnxruntime" and t.json()["layers"]


def test_debug_layers_needs_a_quantized_bundle(cli, digits_models, tmp_path):
    r = cli("build", digits_models["plain"], "--target", "ort", "--precision", "fp32", "-o", tmp_path / "f")
    assert r.code == 0, r.err
    e = cli("debug", "layers", tmp_path / "f", "--data", digits_models["eval"])
    assert e.code == 1 and "has no quantized ONNX" in e.err and e.err.count("\n") == 1
    e2 = cli("debug", "layers", tmp_path / "f", "--data", digits_models["eval"], "--runtime", "target")
    assert e2.code == 1
