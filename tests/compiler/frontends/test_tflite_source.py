"""Float .tflite sources (fp16 weights, DENSIFY, PRELU) and Keras .h5 sources, on real files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.compiler.frontends.corpus_files import calib_npz, model_file

from edgec._deps import has_module

if not has_module("tensorflow"):  # checked without importing it: collection stays cheap
    pytest.skip("needs edgec[tflite]", allow_module_level=True)

pytestmark = pytest.mark.slow  # TensorFlow conversions (tf2onnx)


def _convert(path, task=None):
    from edgec.compiler.frontends.tflite import tflite_to_onnx
    from edgec.compiler.loaders import load_tflite

    handle = load_tflite(path)
    handle.task = task
    return tflite_to_onnx(handle)


@pytest.mark.parametrize("name, densified", [("blazeface-short", False),  # fp16 weights (DEQUANTIZE)
                                             ("blazeface-full-sparse", True),  # sparse DENSIFY
                                             ("iris-landmark", False)])  # PRELU
def test_real_float_tflite_converts_and_agrees_with_litert(name, densified):
    handle = _convert(model_file(name), task="landmarks")
    assert handle.task == "landmarks"  # --task survives the conversion: it decides how the build scores
    info = handle.meta["frontend"]
    assert info["densified"] is densified
    # onnxruntime on the converted graph vs LiteRT's reference kernels on the file: float
    # rounding only (a wrong op or layout gives cosine far below).
    assert info["parity_vs_litert"]["cosine"] > 0.99999
    ops = handle.op_counts()
    assert "PRelu" in ops if name == "iris-landmark" else True
    assert [s.layout for s in handle.inputs] == ["NHWC"]


def test_densify_matches_litert_weights():
    """The dense weights spliced in are what LiteRT's DENSIFY computes: outputs equal the sparse model's."""
    from edgec.compiler.frontends.tflite import _interpreter, densify

    data = model_file("blazeface-full-sparse").read_bytes()
    dense = densify(data)
    assert dense != data
    outs = []
    for blob in (data, dense):
        it = _interpreter(blob)
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], np.linspace(-1, 1, int(np.prod(d["shape"])), dtype=np.float32).reshape(d["shape"]))
        it.invoke()
        outs.append([it.get_tensor(o["index"]) for o in it.get_output_details()])
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_float_tflite_builds_for_intel_cpu_int8_on_photos(cli, tmp_path):
    src = model_file("blazeface-short")
    calib = calib_npz("blazeface-short", tmp_path / "calib.npz")
    r = cli("build", src, "--target", "intel-cpu", "--calib", calib, "-o", tmp_path / "b", "--json")
    assert r.code == 0, r.err
    rep = r.json()["report"]
    assert rep["frontend"]["converter"] == "tf2onnx"
    assert rep["accuracy"]["cosine"] > 0.98
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert man["model_inputs"][0]["layout"] == "NHWC" and man["model_inputs"][0]["shape"] == [1, 128, 128, 3]


def test_int8_tflite_stays_a_flatbuffer_for_mcu_and_converts_for_others(tmp_path):
    """A full-integer .tflite keeps the mcu's native path; a float one becomes ONNX everywhere."""
    from edgec.compiler.frontends.tflite import as_source_for
    from edgec.compiler.loaders import load_tflite

    float_handle = load_tflite(model_file("blazeface-short"))
    assert as_source_for(float_handle, ("onnx", "tflite")).format == "onnx"  # mcu: float is converted
    from edgec.compiler.model import ModelHandle, TensorSpec

    int8 = ModelHandle(proto=None, inputs=[TensorSpec("x", (1, 4), "int8", 0.1, 0)],
                       outputs=[TensorSpec("y", (1, 2), "int8", 0.1, 0)], source_path="m.tflite",
                       source_sha256="0", format="tflite", tflite_bytes=b"")
    assert as_source_for(int8, ("onnx", "tflite")) is int8


def test_keras_h5_refuses_lambda_layers_without_loading(tmp_path):
    """A Lambda layer's stored bytecode is never run: the config is read as JSON and refused first."""
    import h5py

    from edgec.compiler.frontends.keras import load_keras
    from edgec.errors import ModelLoadError

    cfg = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "InputLayer", "config": {"name": "x"}},
        {"class_name": "Lambda", "config": {"name": "evil", "function": ["4wEAAAAAAAAA", None, None]}}]}}
    path = tmp_path / "lambda.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(ModelLoadError, match="Lambda 'evil'.*never runs"):
        load_keras(path)


@pytest.mark.slow
def test_keras_h5_builds_with_nhwc_input_and_batch_one(cli, tmp_path):
    src = model_file("fer-emotion-keras")
    # 16 photos: the build's floor scores top-1 on the calibration samples, and this model's photos hold near ties
    # (float top-1 probability ~0.3) that int8 rounding flips; on 6, one flip was 0.833 < 0.9.
    calib = calib_npz("fer-emotion-keras", tmp_path / "calib.npz", n=16)
    r = cli("build", src, "--target", "onnxruntime", "--calib", calib, "-o", tmp_path / "b", "--json")
    assert r.code == 0, r.err
    man, rep = r.json()["manifest"], r.json()["report"]
    assert man["model_inputs"][0]["name"] == "input_1"
    assert man["model_inputs"][0]["layout"] == "NHWC" and man["model_inputs"][0]["shape"] == [1, 64, 64, 1]
    assert any("built as batch 1" in w for w in rep["warnings"])
    assert rep["frontend"]["source"] == "keras"
    assert rep["frontend"]["parity_vs_litert"]["cosine"] > 0.99999
    assert rep["accuracy"]["cosine"] > 0.98 and rep["accuracy"]["top1_agreement"] >= 0.8


@pytest.mark.slow
def test_keras_source_keeps_its_nhwc_input_on_arm(cli, tmp_path):
    """onnx2tf must not take the channels-last [1, 64, 64, 1] input of a TF source for NCHW (C=64)."""
    src = model_file("fer-emotion-keras")
    calib = calib_npz("fer-emotion-keras", tmp_path / "calib.npz")
    r = cli("build", src, "--target", "arm", "-p", "fp32", "--calib", calib, "-o", tmp_path / "b", "--json")
    assert r.code == 0, r.err
    assert r.json()["manifest"]["inputs"][0]["shape"] == [1, 64, 64, 1]
    assert r.json()["report"]["accuracy"]["cosine"] > 0.999


def test_conversion_gives_the_same_bytes_every_time():
    """tf2onnx's process-wide name counter must not leak into the graph (same inputs, same bundle)."""
    path = model_file("blazeface-short")
    assert _convert(path).serialize() == _convert(path).serialize()


def test_conversion_gives_the_same_bytes_in_every_process():
    """tf2onnx merges equal constants (iris-landmark's zero biases, shared by 26 convs) and kept one of their names
    by the process's object order: each build then gave other ONNX and IR bytes. Two fresh processes must agree."""
    import hashlib
    import subprocess
    import sys

    code = ("import hashlib, sys; from pathlib import Path; from edgec.compiler.frontends.tflite import "
            "convert_flatbuffer as c; p = Path(sys.argv[1]); "
            "print(hashlib.sha256(c(p.read_bytes(), str(p)).SerializeToString()).hexdigest())")
    path = model_file("iris-landmark")
    digests = {subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[-1] for _ in range(2)}
    assert len(digests) == 1, digests
    assert hashlib.sha256(b"").hexdigest() not in digests


@pytest.mark.slow
def test_savedmodel_folder_is_a_source(tmp_path):
    """A SavedModel exported from a small Keras CNN converts and matches Keras on real-shaped input."""
    import keras

    from edgec.compiler.loaders import load_model, source_kind

    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    net.export(str(tmp_path / "sm"), verbose=False)
    assert source_kind(str(tmp_path / "sm")) == "savedmodel"
    handle = load_model(str(tmp_path / "sm"))
    assert handle.meta["frontend"]["source"] == "savedmodel" and handle.inputs[0].layout == "NHWC"
    x = np.linspace(0, 1, 16 * 16 * 3, dtype=np.float32).reshape(1, 16, 16, 3)
    import onnxruntime as ort

    got = ort.InferenceSession(handle.serialize()).run(None, {handle.inputs[0].name: x})[0]
    np.testing.assert_allclose(got, np.asarray(net(x)), rtol=1e-4, atol=1e-5)
