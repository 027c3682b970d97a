"""Graphs converted from TensorFlow (tf2onnx) wrap NCHW ops in Transposes at NHWC edges: the
mcu target folds them into its NHWC layout (views, no code), runs the leftovers with the
transpose kernel, and stays within 1 LSB of onnxruntime on the Q/DQ ONNX."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from .conftest import build_bundle, edgec_qdq, lsb_agreement, to_tflite
from .test_mcu_tflite import _check_bitexact


def _tf2onnx_pattern(leftover: bool):
    """input NHWC -> Transpose(0,3,1,2) -> Conv+Relu -> Conv -> Transpose(0,2,3,1) -> Reshape [1, H*W, C],
    as tf2onnx writes BlazeFace; ``leftover`` adds a Transpose swapping H and W before the second Conv."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.3, (6, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (4, 6, 1, 1)).astype(np.float32), "w2")
    shape = numpy_helper.from_array(np.array([1, -1, 4], np.int64), "shape")
    nodes = [helper.make_node("Transpose", ["x"], ["x_nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
             helper.make_node("Conv", ["x_nchw", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1")]
    mid = "r1"
    if leftover:
        nodes.append(helper.make_node("Transpose", ["r1"], ["r1_t"], perm=[0, 1, 3, 2], name="swap_hw"))
        mid = "r1_t"
    nodes += [helper.make_node("Conv", [mid, "w2"], ["c2"], name="conv2"),
              helper.make_node("Transpose", ["c2"], ["c2_nhwc"], perm=[0, 2, 3, 1], name="to_nhwc"),
              helper.make_node("Reshape", ["c2_nhwc", "shape"], ["y"], name="flat")]
    g = helper.make_graph(nodes, "tf2onnx_pattern", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 7, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 35, 4])], [w1, w2, shape])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("leftover", [False, True])
def test_tf2onnx_transposes_fold_into_nhwc(tmp_path, leftover):
    from edgec.runtimes.mcu_runner import MCURunner

    rng = np.random.default_rng(1)
    samples = [{"x": rng.uniform(-1, 1, (1, 5, 7, 3)).astype(np.float32)} for _ in range(12)]
    _, qh = edgec_qdq(_tf2onnx_pattern(leftover), samples)
    qh.inputs = [replace(s, layout="NHWC") for s in qh.inputs]  # what the .tflite front end declares
    res, manifest = build_bundle(qh, tmp_path / "b")
    assert res.inputs[0].shape == (1, 5, 7, 3) and res.inputs[0].layout == "NHWC"  # the user's bytes, as they are
    c = (tmp_path / "b" / "c" / "edgec_model.c").read_text()
    # The wrapping Transposes move no data; only a Transpose that really reorders runs the kernel.
    assert c.count("edgec_transpose_s8(") == (1 if leftover else 0)
    runner = MCURunner(tmp_path / "b", manifest).load()
    got = [runner.infer(f) for f in samples]
    within, total, worst = lsb_agreement(qh.proto, qh, got, samples, res.outputs)
    assert within == total, f"{total - within}/{total} outputs more than 1 LSB off (worst {worst})"


def test_weights_over_flash_budget_fail_before_op_support(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    from edgec.errors import BudgetError
    from edgec.targets.base import LowerSpec
    from edgec.targets.mcu import MCUTarget

    from .conftest import onnx_handle

    table = numpy_helper.from_array(np.zeros((4096, 64), np.float32), "table")
    g = helper.make_graph([helper.make_node("Erf", ["table"], ["e"]), helper.make_node("Add", ["x", "e"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4096, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4096, 64])], [table])
    h = onnx_handle(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    with pytest.raises(BudgetError, match=r"over the --flash-budget of 128\.0 KiB"):
        MCUTarget().check(h, LowerSpec("int8", h, options={"flash_budget": 128 * 1024}))


@pytest.mark.slow
def test_transpose_bitexact_with_litert_reference(tmp_path):
    import tensorflow as tf

    L = tf.keras.layers
    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((5, 6, 3), batch_size=1)
    x = L.Conv2D(4, 1)(inp)
    out = L.Conv2D(3, 1)(L.Permute((2, 1, 3))(x))  # TRANSPOSE [0, 2, 1, 3] between the convolutions
    data = to_tflite(tf.keras.Model(inp, out), (5, 6, 3))
    from edgec.targets.mcu.import_tflite import list_ops

    assert "TRANSPOSE" in [op for op, _ in list_ops(data)]
    assert _check_bitexact(data, tmp_path)["compared"] > 0


@pytest.mark.slow
def test_float_tflite_source_builds_for_mcu_without_transposes(tmp_path):
    """A float NHWC .tflite (as BlazeFace ships) through the tf2onnx front end and `edgec build --target mcu`."""
    import tensorflow as tf

    from edgec.api import build
    from edgec.compiler.config import BuildConfig

    L = tf.keras.layers
    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((16, 16, 3), batch_size=1)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = L.Add()([x, L.DepthwiseConv2D(3, padding="same")(x)])
    out = L.Reshape((64, 8))(L.Conv2D(8, 1)(x))
    conv = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, out))
    src = tmp_path / "model.tflite"
    src.write_bytes(conv.convert())
    rng = np.random.default_rng(0)
    from edgec.compiler.loaders import load_tflite

    name = load_tflite(src).inputs[0].name
    np.savez(tmp_path / "calib.npz", **{name: rng.uniform(0, 1, (24, 1, 16, 16, 3)).astype(np.float32)})
    r = build(BuildConfig.from_flat(model=str(src), output=tmp_path / "out", target="mcu", calib=str(tmp_path / "calib.npz"),
                          force=True, accept_low_accuracy=True))
    assert r.manifest["inputs"][0]["shape"] == [1, 16, 16, 3]
    assert "edgec_transpose_s8(" not in (tmp_path / "out" / "c" / "edgec_model.c").read_text()
    assert r.report["accuracy"]["cosine"] > 0.98


def _keras_corpus_ops(name):
    import tensorflow as tf

    L = tf.keras.layers
    tf.keras.utils.set_random_seed(0)
    bodies = {
        # BlazeFace full-range's feature pyramid: bilinear x2 with half-pixel centres.
        "resize_bilinear": ((5, 6, 3), lambda x: L.UpSampling2D(2, interpolation="bilinear")(L.Conv2D(4, 1)(x))),
        "resize_bilinear_odd": ((4, 5, 2), lambda x: L.Resizing(7, 9, interpolation="bilinear")(x)),
        # BlazeFace's sparse model: DEPTH_TO_SPACE heads.
        # (alone: LiteRT's optimized Conv, the only int8 kernels for this op, can differ from the reference by 1)
        "depth_to_space": ((4, 5, 8), lambda x: L.Lambda(lambda t: tf.nn.depth_to_space(t, 2))(x)),
    }
    shape, body = bodies[name]
    inp = tf.keras.Input(shape, batch_size=1)
    return tf.keras.Model(inp, body(inp)), shape


@pytest.mark.slow
@pytest.mark.parametrize("name,builtin", [("resize_bilinear", "RESIZE_BILINEAR"),
                                          ("resize_bilinear_odd", "RESIZE_BILINEAR")])
def test_corpus_ops_bitexact_with_litert_reference(tmp_path, name, builtin):
    from edgec.targets.mcu.import_tflite import list_ops

    data = to_tflite(*_keras_corpus_ops(name))
    assert builtin in [op for op, _ in list_ops(data)]
    assert _check_bitexact(data, tmp_path)["compared"] > 0


@pytest.mark.slow
def test_depth_to_space_bitexact_with_litert(tmp_path):
    """LiteRT's BUILTIN_REF resolver has no int8 DEPTH_TO_SPACE (version 2): its builtin kernel,
    a pure copy like the reference, is the reference here."""
    from ai_edge_litert.interpreter import Interpreter

    from edgec.runtimes.mcu_runner import MCURunner

    from .conftest import random_native, tflite_handle

    data = to_tflite(*_keras_corpus_ops("depth_to_space"))
    _, manifest = build_bundle(tflite_handle(data), tmp_path / "b")
    runner = MCURunner(tmp_path / "b", manifest).load()
    ref = Interpreter(model_content=data)
    ref.allocate_tensors()
    rng = np.random.default_rng(7)
    for _ in range(10):
        feeds = random_native(runner.native_in, rng)
        ref.set_tensor(ref.get_input_details()[0]["index"], feeds[runner.native_in[0].name])
        ref.invoke()
        want = ref.get_tensor(ref.get_output_details()[0]["index"])
        got = runner.run_native(feeds)[runner.native_out[0].name]
        np.testing.assert_array_equal(got.reshape(want.shape), want)


def _onnx_op(op: str, **kw):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.4, (8, 3, 1, 1)).astype(np.float32), "w")
    inits = [w]
    if op == "Resize":
        inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
        node = helper.make_node("Resize", ["c", "", "scales"], ["y"], mode="linear", **kw)
        out = [1, 8, 8, 10]
    else:
        node = helper.make_node("DepthToSpace", ["c"], ["y"], blocksize=2, **kw)
        out = [1, 2, 8, 10]
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"]), node], op,
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("op,kw", [("Resize", {"coordinate_transformation_mode": "half_pixel"}),
                                   ("Resize", {"coordinate_transformation_mode": "asymmetric"}),
                                   ("DepthToSpace", {})])
def test_corpus_ops_qdq_onnx_within_one_lsb(tmp_path, op, kw):
    from edgec.runtimes.mcu_runner import MCURunner

    rng = np.random.default_rng(2)
    samples = [{"x": rng.uniform(-1, 1, (1, 3, 4, 5)).astype(np.float32)} for _ in range(12)]
    _, qh = edgec_qdq(_onnx_op(op, **kw), samples)
    res, manifest = build_bundle(qh, tmp_path / "b")
    runner = MCURunner(tmp_path / "b", manifest).load()
    within, total, worst = lsb_agreement(qh.proto, qh, [runner.infer(f) for f in samples], samples, res.outputs)
    assert within == total, f"{total - within}/{total} outputs more than 1 LSB off (worst {worst})"


def test_crd_depth_to_space_is_refused_with_its_reason():
    from edgec.errors import UnsupportedOpError
    from edgec.targets.base import LowerSpec
    from edgec.targets.mcu import MCUTarget

    from .conftest import onnx_handle

    h = onnx_handle(_onnx_op("DepthToSpace", mode="CRD"))
    with pytest.raises(UnsupportedOpError, match=r"op DepthToSpace .* target 'mcu'; mode CRD"):
        MCUTarget().check(h, LowerSpec("int8", h)).raise_if_unsupported()
