"""The attention mask's lowest-float fill, rewritten before onnx2tf so int8/int16 ranges can hold it."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.targets.tflite.graph_passes import MASK_MARGIN, attention_mask_as_row_min

SEQ, WIDTH = 8, 16
FINFO_MIN = float(np.finfo(np.float32).min)


def _attention(fill: float = FINFO_MIN, softmax_axis: int = -1, fill_first: bool = False):
    """One attention head as Hugging Face exports it: ``Softmax(q k^T / 4 + Where(mask, 0, fill)) v``."""
    rng = np.random.default_rng(0)
    w = {n: numpy_helper.from_array(rng.standard_normal((WIDTH, WIDTH)).astype(np.float32), n) for n in "qkv"}
    consts = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
              (("zero", 0.0), ("fill", fill), ("quarter", 0.25))] + [numpy_helper.from_array(np.array([1], np.int64), "ax")]
    branches = ["fill", "zero"] if fill_first else ["zero", "fill"]
    cond = "padded" if fill_first else "kept"
    nodes = [helper.make_node("MatMul", ["x", n], [f"{n}x"]) for n in "qkv"] + [
        helper.make_node("Transpose", ["kx"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["qx", "kt"], ["qk"]), helper.make_node("Mul", ["qk", "quarter"], ["scores"]),
        helper.make_node("Cast", ["mask"], ["kept"], to=TensorProto.BOOL), helper.make_node("Not", ["kept"], ["padded"]),
        helper.make_node("Unsqueeze", [cond, "ax"], ["cond"]),
        helper.make_node("Where", ["cond", *branches], ["bias"]), helper.make_node("Add", ["scores", "bias"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["p"], axis=softmax_axis), helper.make_node("MatMul", ["p", "vx"], ["y"])]
    g = helper.make_graph(nodes, "attention", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, SEQ, WIDTH]),
                                               helper.make_tensor_value_info("mask", TensorProto.INT64, [1, SEQ])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, SEQ, WIDTH])], [*w.values(), *consts])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _samples(n: int, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        mask = np.zeros((1, SEQ), np.int64)
        mask[0, :int(rng.integers(2, SEQ + 1))] = 1
        out.append({"x": rng.standard_normal((1, SEQ, WIDTH)).astype(np.float32), "mask": mask})
    return out


def _run(proto, feeds):
    import onnxruntime as ort

    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return [sess.run(None, f)[0] for f in feeds]


@pytest.mark.parametrize("fill_first", [False, True])
@pytest.mark.parametrize("fill", [FINFO_MIN, -1e4])
def test_mask_fill_becomes_row_min_and_softmax_is_unchanged(fill_first, fill):
    """Masked positions keep exactly zero weight (float32), and no constant of -3.4e38 is left to calibrate."""
    proto = _attention(fill, fill_first=fill_first)
    feeds = _samples(12)
    want = _run(proto, feeds)
    assert attention_mask_as_row_min(proto) == 1
    ops = [n.op_type for n in proto.graph.node]
    assert "Add" not in ops and ops.count("Where") == 1 and "ReduceMin" in ops
    used = {i for n in proto.graph.node for i in n.input}
    left = [numpy_helper.to_array(i) for i in proto.graph.initializer if i.name in used]
    assert min(float(a.min()) for a in left if a.dtype == np.float32) > -1e3
    for w, g in zip(want, _run(proto, feeds)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert MASK_MARGIN >= 16  # exp(-16) ~ 1e-7: a masked weight stays under float32's resolution


@pytest.mark.parametrize("kw", [{"fill": -5.0}, {"softmax_axis": 1}])
def test_mask_rewrite_leaves_other_patterns_alone(kw):
    """A small fill is a bias, not a mask, and a Softmax over another axis is not a row's attention."""
    proto = _attention(**kw)
    assert attention_mask_as_row_min(proto) == 0
    assert "Add" in [n.op_type for n in proto.graph.node]


@pytest.mark.slow  # TensorFlow conversions (onnx2tf, TFLite converter)
def test_tiny_bert_16x8_converts_runs_and_holds(bert, tmp_session):
    """A BERT as HF exports it, in 16x8: the mask is rewritten, the token ids' int64 index fix-up is dropped
    (the 16x8 quantizer failed on it), LayerNorm's zero beta gets a scale (LiteRT aborted on scale 0) and its
    SQUARED_DIFFERENCE runs float (no int16 kernel); the model agrees with float."""
    from edgec.runtimes.harness import compare
    from edgec.runtimes.litert_runner import LiteRTRunner

    from .conftest import lower
    from .test_tflite_cnn import _OrtReference

    model, calib, evals = bert
    built = lower(model, calib, "int8", tmp_session / "bert_16x8", activations="int16")
    r = built.result
    assert any(p["name"] == "attention-mask-as-row-min" for p in r.passes)
    q = r.manifest["quantization"]
    assert q["mode"] == "16x8" and q["index_fixups_removed"] >= 1 and q["zero_constants_rescaled"] >= 1, q
    assert "SQUARED_DIFFERENCE" in q["float_ops"], q
    with LiteRTRunner(built.bundle, built.manifest, threads=1) as runner:
        acc = compare(runner, _OrtReference(built.model), evals, classification=False)
    assert acc["cosine"] > 0.99, acc

