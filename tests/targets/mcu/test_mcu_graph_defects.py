"""Ordinary graphs that used to fail on mcu (issue 10, defect 14): each builds now and the C
is within 1 LSB of onnxruntime on the Q/DQ model edgec's quantizer made."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import build_bundle, edgec_qdq, lsb_agreement

RNG = np.random.default_rng(0)


def _graph(nodes, x_shape, y_shape, inits):
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _n(shape):
    return RNG.normal(size=shape).astype(np.float32)


def _models():
    from onnx import helper as H

    conv = {"w": _n((4, 3, 3, 3)), "b": _n(4)}
    return {
        # PyTorch relu6 / every MobileNet: Clip with min/max as inputs (was KeyError 'lo_dequantized').
        "clip_min_max_inputs": _graph([H.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1] * 4),
                                       H.make_node("Clip", ["c", "lo", "hi"], ["y"])], [1, 3, 8, 8], [1, 4, 8, 8],
                                      {**conv, "lo": np.float32(0), "hi": np.float32(6)}),
        "standalone_relu6": _graph([H.make_node("Clip", ["x", "lo", "hi"], ["y"])], [1, 10], [1, 10],
                                   {"lo": np.float32(0), "hi": np.float32(6)}),
        # Was "pooling with different input/output quantization": the quantizer now keeps
        # AveragePool's input parameters, as TFLite does.
        "conv_relu_avgpool": _graph([H.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1] * 4),
                                     H.make_node("Relu", ["c"], ["r"]),
                                     H.make_node("AveragePool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
                                    [1, 3, 8, 8], [1, 4, 4, 4], conv),
        # onnxslim fuses these into a Gemm with a [1, N] bias (was "op Gemm ... not quantized").
        "matmul_add_bias_2d": _graph([H.make_node("MatMul", ["x", "m"], ["t"]), H.make_node("Add", ["bias", "t"], ["y"])],
                                     [1, 16], [1, 8], {"m": _n((16, 8)), "bias": _n((1, 8))}),
        "matmul_add_bias_1d": _graph([H.make_node("MatMul", ["x", "m"], ["t"]), H.make_node("Add", ["t", "bias"], ["y"])],
                                     [1, 16], [1, 8], {"m": _n((16, 8)), "bias": _n(8)}),
        # PyTorch's avg_pool2d(padding=1) counts the padding (count_include_pad=1; was rejected).
        "avgpool_count_include_pad": _graph([H.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1] * 4,
                                                         count_include_pad=1)], [1, 3, 5, 5], [1, 3, 5, 5], {}),
        # Grouped convolution (was unsupported).
        "grouped_conv": _graph([H.make_node("Conv", ["x", "wg", "bg"], ["y"], pads=[1] * 4, group=2, strides=[2, 1])],
                               [1, 4, 7, 6], [1, 6, 4, 6], {"wg": _n((6, 2, 3, 3)), "bg": _n(6)}),
        "grouped_conv_relu": _graph([H.make_node("Conv", ["x", "wg"], ["c"], group=3),
                                     H.make_node("Relu", ["c"], ["y"])], [1, 6, 5, 5], [1, 3, 5, 5],
                                    {"wg": _n((3, 2, 1, 1))}),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_builds_and_matches_onnxruntime(tmp_path, name):
    from edgec.runtimes.mcu_runner import MCURunner

    proto = _models()[name]
    shape = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    calib = [{"x": RNG.uniform(-2, 2, size=shape).astype(np.float32)} for _ in range(16)]
    _, qh = edgec_qdq(proto, calib)
    res, manifest = build_bundle(qh, tmp_path / "b")
    runner = MCURunner(tmp_path / "b", manifest).load()
    feeds = [{"x": RNG.uniform(-2, 2, size=shape).astype(np.float32)} for _ in range(8)]
    within, total, worst = lsb_agreement(qh.proto, qh, [runner.infer(f) for f in feeds], feeds, res.outputs)
    assert worst <= 1, f"{within}/{total} within 1 LSB, worst {worst}"
    if name.startswith("grouped"):
        assert "group_conv.c" in res.manifest["kernels"]


def test_quantizer_keeps_clip_bounds_float_and_avgpool_scale():
    models = _models()
    calib = [{"x": RNG.uniform(-2, 2, size=(1, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    _, qh = edgec_qdq(models["clip_min_max_inputs"], calib)
    clip = next(n for n in qh.proto.graph.node if n.op_type == "Clip")
    inits = {i.name for i in qh.proto.graph.initializer}
    assert clip.input[1] in inits and clip.input[2] in inits  # plain float bounds, no DequantizeLinear
    _, qh = edgec_qdq(models["conv_relu_avgpool"], calib)
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in qh.proto.graph.initializer}
    pool = next(n for n in qh.proto.graph.node if n.op_type == "AveragePool")
    q_in = next(n for n in qh.proto.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == pool.input[0])
    q_out = next(n for n in qh.proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == pool.output[0])
    assert float(init[q_in.input[1]]) == float(init[q_out.input[1]])
    assert int(init[q_in.input[2]]) == int(init[q_out.input[2]])


@pytest.mark.slow
def test_tflite_grouped_conv_bitexact(tmp_path):
    import tensorflow as tf

    from .conftest import to_tflite
    from .test_mcu_tflite import _check_bitexact

    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((6, 6, 4), batch_size=1)
    m = tf.keras.Model(inp, tf.keras.layers.Conv2D(6, 3, groups=2, padding="same", activation="relu")(inp))
    out = _check_bitexact(to_tflite(m, (6, 6, 4)), tmp_path)
    assert "group_conv.c" in out["result"].manifest["kernels"]


def test_edgec_build_cli_on_all_four(tmp_path, cli):
    """`edgec build --target mcu` through the whole pipeline on one graph holding relu6 as
    Clip with inputs, Conv -> Relu -> AveragePool, grouped Conv and MatMul + [1, N] bias."""
    import onnx
    from onnx import helper as H

    inits = {"w": _n((4, 3, 3, 3)), "b": _n(4), "lo": np.float32(0), "hi": np.float32(6), "wg": _n((4, 2, 3, 3)),
             "m": _n((16, 5)), "bias": _n((1, 5)), "shape": np.array([1, 16], np.int64)}
    nodes = [H.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1] * 4), H.make_node("Clip", ["c", "lo", "hi"], ["r6"]),
             H.make_node("Conv", ["r6", "wg"], ["g"], pads=[1] * 4, group=2), H.make_node("Relu", ["g"], ["r"]),
             H.make_node("AveragePool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             H.make_node("Reshape", ["p", "shape"], ["f"]), H.make_node("MatMul", ["f", "m"], ["t"]),
             H.make_node("Add", ["t", "bias"], ["y"])]
    path = tmp_path / "m.onnx"
    onnx.save(_graph(nodes, [1, 3, 4, 4], [1, 5], inits), str(path))
    r = cli("build", path, "--target", "mcu", "--calib", "random", "-o", tmp_path / "out")
    assert r.code == 0, r.err
    assert (tmp_path / "out" / "c" / "group_conv.c").is_file()
