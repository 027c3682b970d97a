"""int8 .tflite -> C: bit-exact against LiteRT's reference kernels (BUILTIN_REF)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from .conftest import build_bundle, litert_reference, random_native, tflite_handle

pytestmark = pytest.mark.slow  # TensorFlow conversions (Keras, TFLite converter, onnx2tf)

PER_OP = ["conv_same_relu", "conv_valid_stride2", "conv_dilated", "dwconv_mult2_relu6", "dwconv_stride2", "dense",
          "dense_per_tensor", "add_residual", "mul", "maxpool", "avgpool_same", "global_avg", "softmax",
          "concat_pad_sigmoid", "tanh_flatten"]
WHOLE = ["digits_cnn", "ds_cnn_kws", "mobilenet_stack", "dense_autoencoder", "float_io_autoencoder"]


def _check_bitexact(data: bytes, tmp_path, samples: int = 25) -> dict:
    from edgec.runtimes.mcu_runner import MCURunner

    res, manifest = build_bundle(tflite_handle(data), tmp_path / "bundle")
    runner = MCURunner(tmp_path / "bundle", manifest).load()
    ref = litert_reference(data)
    rng = np.random.default_rng(7)
    total = 0
    for _ in range(samples):
        feeds = random_native(runner.native_in, rng)
        for d, s in zip(ref.get_input_details(), runner.native_in):
            ref.set_tensor(d["index"], feeds[s.name])
        ref.invoke()
        got = runner.run_native(feeds)
        for d, s in zip(ref.get_output_details(), runner.native_out):
            want = ref.get_tensor(d["index"])
            np.testing.assert_array_equal(got[s.name].reshape(want.shape), want)
            total += want.size
    return {"report": res.report, "compared": total, "result": res}


@pytest.mark.parametrize("name", PER_OP)
def test_per_op_bitexact(tflite_models, tmp_path, name):
    out = _check_bitexact(tflite_models[name], tmp_path)
    assert out["compared"] > 0


@pytest.mark.parametrize("name", WHOLE)
def test_whole_model_bitexact(tflite_models, tmp_path, name):
    out = _check_bitexact(tflite_models[name], tmp_path, samples=40)
    rep = out["report"]
    assert rep["arena_bytes"] > 0 and rep["const_bytes"] > 0
    assert rep["arena_bytes"] <= rep["arena_bytes_without_inplace"]


def test_library_layout_and_hygiene(tflite_models, tmp_path):
    res, _ = build_bundle(tflite_handle(tflite_models["mobilenet_stack"]), tmp_path / "b")
    c = tmp_path / "b" / "c"
    names = {p.name for p in c.iterdir()}
    for f in ("edgec_model.h", "edgec_model.c", "edgec_weights.c", "edgec_kernels.h", "CMakeLists.txt", "Makefile",
              "README.md", "conv.c"):
        assert f in names
    assert "softmax.c" not in names  # only the kernels the model uses
    header = (c / "edgec_model.h").read_text()
    for macro in ("EDGEC_NUM_INPUTS 1", "EDGEC_NUM_OUTPUTS 1", "EDGEC_ARENA_BYTES", "EDGEC_INPUT_BYTES_0",
                  "EDGEC_OUTPUT_BYTES_0", "EDGEC_INPUT_SCALE_0", "EDGEC_INPUT_ZERO_POINT_0",
                  "int edgec_model_run(const void *const *inputs, void *const *outputs);"):
        assert macro in header
    int8_sources = [p for p in c.glob("*.c") if p.name != "float_io.c"]
    for p in int8_sources:
        text = p.read_text()
        assert not re.search(r"\b(malloc|calloc|free|printf|stdio\.h|stdlib\.h)\b", text), p.name
        code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        assert not re.search(r"\b(float|double)\b", code), p.name
    assert "main(" not in "".join(p.read_text() for p in c.glob("*.c"))
    assert res.model_artifact.path == "c/edgec_model.c"
    assert res.inputs[0].layout == "NHWC" and res.inputs[0].dtype == "int8" and res.inputs[0].scale
    assert (tmp_path / "b" / "harness" / "cm_main.c").exists()


def test_strict_host_compile_and_arm_size(tflite_models, tmp_path):
    """-std=c99 -Wall -Wextra -Werror -pedantic under gcc (the runner's build) and arm-none-eabi-gcc."""
    from .conftest import HAVE_ARM

    from edgec.targets.mcu import toolchain

    res, _ = build_bundle(tflite_handle(tflite_models["ds_cnn_kws"]), tmp_path / "b")
    toolchain.build_host_lib(tmp_path / "b" / "c")
    if HAVE_ARM:
        size = res.report["arm_size"]
        assert size["text"] > res.report["const_bytes"] and size["bss"] >= res.report["arena_bytes"]
        for cpu in ("cortex-m0plus", "cortex-m7", "cortex-m55"):
            s = toolchain.arm_size(tmp_path / "b" / "c", cpu)
            assert s["text"] > 0
    else:
        assert "not measured" in res.report["arm_size"]


def test_unsupported_tflite_op_names_op_and_node(tmp_path):
    import tensorflow as tf

    from .conftest import to_tflite

    from edgec.errors import UnsupportedOpError
    from edgec.targets.base import LowerSpec
    from edgec.targets.mcu import MCUTarget

    inp = tf.keras.Input((8,), batch_size=1)
    out = tf.keras.layers.Dense(4)(inp)
    out = tf.keras.layers.Lambda(lambda t: tf.math.abs(t))(out)
    data = to_tflite(tf.keras.Model(inp, out), (8,))
    h = tflite_handle(data)
    report = MCUTarget().check(h, LowerSpec("int8", h))
    assert not report.ok
    with pytest.raises(UnsupportedOpError, match=r"op ABS \(node '.*'\) is not supported by target 'mcu'"):
        report.raise_if_unsupported()
    with pytest.raises(UnsupportedOpError, match="ABS"):
        MCUTarget().lower(h, LowerSpec("int8", h), tmp_path)
