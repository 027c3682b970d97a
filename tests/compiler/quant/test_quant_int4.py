"""INT4 weight-only: packing, GPTQ vs RTN, and a tiny Llama built for onnxruntime and OpenVINO."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.compiler.int4 import gptq, rtn
from edgec.compiler.quality import ort_session
from edgec.targets.onnxruntime.lower import to_matmulnbits


def _dq_matmul(qw, k, n, sym):
    dtype = TensorProto.INT4 if sym else TensorProto.UINT4
    inits = [helper.make_tensor("q", dtype, [k, n], qw.q.flatten().tolist()), numpy_helper.from_array(qw.scale, "s")]
    ins = ["q", "s"]
    if not sym:
        inits.append(helper.make_tensor("z", TensorProto.UINT4, list(qw.zero_point.shape),
                                        qw.zero_point.flatten().tolist()))
        ins.append("z")
    nodes = [helper.make_node("DequantizeLinear", ins, ["w"], axis=0, block_size=qw.block),
             helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [1, 8, k])],
                          [helper.make_tensor_value_info("y", 1, [1, 8, n])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


@pytest.mark.parametrize("k,n,block,sym", [(64, 32, 32, True), (128, 48, 64, False), (64, 40, 64, True)])
def test_matmulnbits_matches_blockwise_dequantize(k, n, block, sym):
    rng = np.random.default_rng(k + n)
    w = rng.standard_normal((k, n)).astype(np.float32)
    qw = rtn(w, block, sym)
    assert np.abs(qw.dequantize() - w).max() <= np.abs(w).max() / 7  # within a step of every block
    m = _dq_matmul(qw, k, n, sym)
    x = rng.standard_normal((1, 8, k)).astype(np.float32)
    want = x @ qw.dequantize()
    nbits, count = to_matmulnbits(m, accuracy_level=0)
    assert count == 1 and [nd.op_type for nd in nbits.graph.node] == ["MatMulNBits"]
    np.testing.assert_allclose(ort_session(nbits).run(None, {"x": x})[0], want, atol=1e-4)
    np.testing.assert_allclose(ort_session(m, optimize=False).run(None, {"x": x})[0], want, atol=1e-4)


def test_gptq_lowers_layer_output_error():
    rng = np.random.default_rng(0)
    # Correlated inputs (low-rank plus noise), as real activations are: what GPTQ exploits.
    x = (rng.standard_normal((512, 16)) @ rng.standard_normal((16, 64)) + 0.1 * rng.standard_normal((512, 64)))
    x = x.astype(np.float32)
    w = rng.standard_normal((64, 48)).astype(np.float32)
    for sym in (True, False):
        e_rtn = np.linalg.norm(x @ rtn(w, 32, sym).dequantize() - x @ w)
        e_gptq = np.linalg.norm(x @ gptq(w, x, 32, sym).dequantize() - x @ w)
        assert e_gptq < 0.8 * e_rtn


@pytest.fixture(scope="module")
def llama_bundles(tiny_llama, tmp_path_factory):
    from tests.conftest import run_cli

    d = tmp_path_factory.mktemp("llama_int4")
    out = {}
    for target, method in (("onnxruntime", "rtn"), ("intel-cpu", "rtn"), ("intel-cpu", "gptq")):
        r = run_cli("build", tiny_llama["model"], "--target", target, "--precision", "int4", "--int4-method", method,
                    "--group-size", "32", "--calib", tiny_llama["text"], "--input-shape", "input_ids=1x32",
                    "-o", d / f"{target}-{method}", "--json",
                    # Random weights give near-tied logits, so the floor's top-1 agreement is a coin toss
                    # here; the tests below bound cosine and perplexity themselves.
                    "--accept-low-accuracy")
        assert r.code == 0, r.err
        out[(target, method)] = r.json()
    return out


@pytest.mark.slow  # three int4 builds of the tiny Llama (GPTQ)
@pytest.mark.parametrize("key", [("onnxruntime", "rtn"), ("intel-cpu", "rtn"), ("intel-cpu", "gptq")])
def test_tiny_llama_int4_runs_with_bounded_error(llama_bundles, key):
    res = llama_bundles[key]
    acc = res["report"]["accuracy"]
    assert acc["runner"] == ("onnxruntime" if key[0] == "onnxruntime" else "openvino")
    assert acc["cosine"] > 0.98
    ppl = acc["perplexity"]
    assert ppl["reference"] > 1 and abs(ppl["artifact"] / ppl["reference"] - 1) < 0.02
    q = next(p for p in res["manifest"]["passes"] if p["name"] == "quantize")["config"]
    assert q["int4_nodes"] == 14 and q["group_size"] == 32 and q["method"] == key[1]
    assert len(q["int8_nodes"]) == 2  # the embedding table and the LM head stay int8
    if key[0] == "onnxruntime":
        assert res["report"]["target"]["matmulnbits_nodes"] == 14
        model = onnx.load(res["bundle"] + "/model.onnx")
        assert sum(n.op_type == "MatMulNBits" for n in model.graph.node) == 14
    else:
        assert res["report"]["target"]["ir_ops"]["Convert"] >= 14
    assert res["report"]["size_bytes"]["artifact"] < 0.6 * res["report"]["size_bytes"]["source"]


@pytest.mark.slow  # three int4 builds of the tiny Llama (GPTQ)
def test_gptq_beats_rtn_on_tiny_llama(llama_bundles):
    rtn_err = llama_bundles[("intel-cpu", "rtn")]["report"]["accuracy"]["mean_abs_err"]
    gptq_err = llama_bundles[("intel-cpu", "gptq")]["report"]["accuracy"]["mean_abs_err"]
    assert gptq_err < rtn_err


def test_int4_is_rejected_by_other_targets(cli, tiny_cnn_onnx, tmp_path):
    r = cli("build", tiny_cnn_onnx, "--target", "mcu", "--precision", "int4", "-o", tmp_path / "x")
    assert r.code == 1
    assert "does not support precision 'int4'" in r.err and "int4 weight-only builds are for targets intel-cpu and " \
                                                              "onnxruntime" in r.err
    g = cli("build", tiny_cnn_onnx, "--target", "ort", "--precision", "int4", "--int4-method", "gptq",
            "-o", tmp_path / "y")
    assert g.code == 1 and "--int4-method gptq needs calibration data" in g.err
