"""Already-quantized ONNX, dynamic dims, newer IR/opset: tiny graphs made here, plus ddddocr's real model."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.compiler.frontends.corpus_files import model_file


def _float_cnn(batch="N"):
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 8).astype(np.float32)
    w2 = rng.normal(0, 0.2, (4, 8 * 8 * 8)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c1"], ["r1"]),
         helper.make_node("Flatten", ["r1"], ["f"]),
         helper.make_node("Gemm", ["f", "w2"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """The tiny CNN quantized by onnxruntime: static Q/DQ (per channel) and dynamic (ConvInteger)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    d = tmp_path_factory.mktemp("q")
    onnx.save(_float_cnn(), d / "float.onnx")
    rng = np.random.default_rng(1)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": rng.random((1, 3, 8, 8), np.float32)} for _ in range(8)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(d / "float.onnx", d / "qdq.onnx", Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    quantize_dynamic(d / "float.onnx", d / "dyn.onnx", weight_type=QuantType.QUInt8, op_types_to_quantize=["Conv"])
    np.savez(d / "calib.npz", x=rng.random((16, 1, 3, 8, 8), np.float32))
    return d


def _run(model, x):
    blob = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0].ravel()


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("kind", ["qdq", "dyn"])
def test_dequantize_recovers_the_float_model(quantized, kind):
    from edgec.compiler.frontends.quantized_onnx import dequantize, quantization_kind

    src = onnx.load(quantized / f"{kind}.onnx")
    assert quantization_kind(src) == ("qdq" if kind == "qdq" else "dynamic")
    deq = dequantize(src)
    onnx.checker.check_model(deq)
    assert not {n.op_type for n in deq.graph.node} & {"QuantizeLinear", "DequantizeLinear", "ConvInteger",
                                                        "DynamicQuantizeLinear"}
    x = np.random.default_rng(2).random((1, 3, 8, 8), np.float32)
    ref, got, source = _run(_float_cnn(), x), _run(deq, x), _run(src, x)
    # The weights come back exactly (only their int8 rounding remains) and activations are float.
    assert _cos(ref, got) > 0.998 and _cos(ref, source) > 0.99
    assert np.abs(ref - got).max() <= 0.02 * np.abs(ref).max()


@pytest.mark.parametrize("keep", [False, True])
def test_qdq_source_builds_requantized_or_kept(cli, quantized, tmp_path, keep):
    args = ["build", quantized / "qdq.onnx", "--target", "onnxruntime", "--calib", quantized / "calib.npz",
            "-o", tmp_path / "b", "--json"] + (["--keep-source-quantization"] if keep else [])
    r = cli(*args)
    assert r.code == 0, r.err
    rep = r.json()["report"]
    assert rep["frontend"]["quantization"] == ("kept the source's Q/DQ scales" if keep
                                               else "dequantized to float, requantized with edgec's calibration")
    assert rep["accuracy"]["cosine"] > 0.99


def test_keep_source_quantization_refused_where_it_cannot_apply(cli, quantized, tmp_path):
    r = cli("build", quantized / "dyn.onnx", "--target", "onnxruntime", "--calib", quantized / "calib.npz",
            "--keep-source-quantization", "-o", tmp_path / "b")
    assert r.code != 0 and "dynamically quantized" in r.err and len(r.err.strip().splitlines()) == 1
    r = cli("build", quantized / "float.onnx", "--target", "onnxruntime", "--calib", "random",
            "--keep-source-quantization", "-o", tmp_path / "c")
    assert r.code != 0 and "is not quantized" in r.err


def test_real_dynamically_quantized_ocr_model_dequantizes():
    """ddddocr's common_old.onnx (ConvInteger, DynamicQuantizeLinear, DynamicQuantizeLSTM) as float."""
    from edgec.compiler.frontends.quantized_onnx import dequantize

    path = model_file("ddddocr-common-old")
    src = onnx.load(path)
    deq = dequantize(src)
    onnx.checker.check_model(deq)
    assert "LSTM" in {n.op_type for n in deq.graph.node}
    x = np.random.default_rng(0).random((1, 1, 64, 96), np.float32)
    sess = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]) for m in (src, deq)]
    a, b = (s.run(None, {"input1": x})[0] for s in sess)
    assert (a.argmax(-1) == b.argmax(-1)).mean() >= 0.9  # same characters per time step
    assert _cos(a.ravel().astype(np.float64), b.ravel().astype(np.float64)) > 0.99


def test_dynamic_dims_error_lists_every_input(cli, tmp_path):
    g = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3, "H", "W"]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3, "H", 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "dyn.onnx")
    r = cli("build", tmp_path / "dyn.onnx", "--target", "onnxruntime", "-p", "fp32", "-o", tmp_path / "b")
    assert r.code != 0 and len(r.err.strip().splitlines()) == 1
    assert "'a' ['N', 3, 'H', 'W'] (dynamic at axis 0, 2, 3)" in r.err and "'b' [1, 3, 'H', 1] (dynamic at axis 2)" in r.err
    assert "--input-shape a=1x3x1x1 --input-shape b=1x3x1x1" in r.err


def test_batch_only_dynamic_dim_gets_batch_one(cli, tmp_path):
    onnx.save(_float_cnn(), tmp_path / "m.onnx")
    r = cli("build", tmp_path / "m.onnx", "--target", "onnxruntime", "-p", "fp32", "-o", tmp_path / "b", "--json")
    assert r.code == 0, r.err
    out = r.json()
    assert out["manifest"]["model_inputs"][0]["shape"] == [1, 3, 8, 8]
    assert any("input(s) x built as batch 1" in w for w in out["report"]["warnings"])


def test_newer_ir_and_opset_are_converted_down(cli, tmp_path):
    from edgec.compiler.loaders import MAX_OPSET, load_onnx

    g = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"]), helper.make_node("Relu", ["y"], ["z"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", onnx.defs.onnx_opset_version())])
    m.ir_version = onnx.IR_VERSION
    onnx.save(m, tmp_path / "new.onnx")
    h = load_onnx(tmp_path / "new.onnx")
    assert next(o.version for o in h.proto.opset_import if o.domain == "") <= MAX_OPSET
    r = cli("build", tmp_path / "new.onnx", "--target", "onnxruntime", "-p", "fp32", "-o", tmp_path / "b", "--json")
    assert r.code == 0, r.err
    assert r.json()["report"]["accuracy"]["max_abs_err"] == 0


def test_unconvertible_newer_opset_is_one_line(tmp_path):
    from edgec.compiler.loaders import convert_down
    from edgec.errors import ModelLoadError

    g = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 28)])
    with pytest.raises(ModelLoadError, match=r"uses ONNX opset 28; .* re-export the model with opset 26 or lower"):
        convert_down(m, "m.onnx")
