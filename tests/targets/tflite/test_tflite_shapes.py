"""Graphs nobody here wrote: non-image tensors, nearest Resize, scalar inputs, run-time Pad values.

onnx2tf's NCHW->NHWC guess reaches tensors that are not images, reads Pad values and Clip
bounds only when constant, and picks other pixels than ONNX's nearest Resize when
downsampling. One float build covers them all: every output must come back in the
model's shape (4-D images NHWC, as the manifest says) with the model's values.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.calibration.types import CalibrationData
from edgec.runtimes.litert_runner import LiteRTRunner

from .conftest import handle_from_proto, lower
from .test_tflite_cnn import _OrtReference

pytestmark = pytest.mark.slow  # TensorFlow conversions (Keras, TFLite converter, onnx2tf)

F = TensorProto.FLOAT
OUTPUTS = {  # name: shape
    "stacked": [2, 3, 4, 5], "unsqueezed": [3, 4, 5, 1], "squeezed": [3, 5], "pair_t": [4, 2],
    "down": [1, 2, 4, 4], "up": [1, 2, 20, 20], "clipped": [1, 2, 8, 8], "padded": [1, 2, 10, 12],
    "powered": [1, 2, 8, 8], "gemm": [2, 3],
}


@pytest.fixture(scope="session")
def odd_graph():
    i64 = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)  # noqa: E731
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("Unsqueeze", ["seq", "ax0"], ["u0"]),
        helper.make_node("Concat", ["u0", "u0"], ["stacked"], axis=0),
        helper.make_node("Unsqueeze", ["seq", "ax3"], ["unsqueezed"]),
        helper.make_node("Squeeze", ["narrow", "ax1"], ["squeezed"]),
        helper.make_node("Concat", ["pair", "pair"], ["pc"], axis=1),
        helper.make_node("Transpose", ["pc"], ["pair_t"], perm=[1, 0]),
        helper.make_node("Resize", ["img", "", "half"], ["down"], mode="nearest"),
        helper.make_node("Resize", ["img", "", "", "up_size"], ["up"], mode="nearest"),
        helper.make_node("Clip", ["img", "lo", "hi"], ["clipped"]),
        helper.make_node("Pad", ["img", "pads", "pad_value"], ["padded"], mode="constant"),
        helper.make_node("Abs", ["img"], ["absimg"]),
        helper.make_node("Pow", ["absimg", "exponent"], ["powered"]),
        helper.make_node("Gemm", ["pair_rows", "w", "bias"], ["gemm"]),
    ]
    inputs = [("seq", [3, 4, 5]), ("narrow", [3, 1, 5]), ("pair", [2, 2]), ("img", [1, 2, 8, 8]), ("lo", []), ("hi", []),
              ("pad_value", []), ("exponent", []), ("pair_rows", [2, 4]), ("bias", [])]
    g = helper.make_graph(
        nodes, "odd", [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, F, s) for n, s in OUTPUTS.items()],
        [i64("ax0", [0]), i64("ax1", [1]), i64("ax3", [3]), i64("up_size", [1, 2, 20, 20]),
         i64("pads", [0, 0, 1, 2, 0, 0, 1, 2]), numpy_helper.from_array(np.array([1, 1, .5, .5], np.float32), "half"),
         numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    model = handle_from_proto(proto, "odd.onnx")
    scalars = {"lo": -0.5, "hi": 0.75, "pad_value": 2.5, "exponent": 1.5, "bias": 0.25}
    samples = []
    for _ in range(3):
        feed = {n: rng.standard_normal(s).astype(np.float32) for n, s in inputs if s}
        feed.update({k: np.array(v, np.float32) for k, v in scalars.items()})
        samples.append(feed)
    return model, CalibrationData(samples, "synthetic")


def test_every_output_has_the_models_shape_and_values(odd_graph, tmp_session):
    model, calib = odd_graph
    built = lower(model, calib, "fp32", tmp_session / "odd_fp32")
    r = built.result
    layouts = {s.name: s.layout for s in r.outputs}
    shapes = {s.name: list(s.shape) for s in r.outputs}
    for name, shape in OUTPUTS.items():
        want = [shape[0], *shape[2:], shape[1]] if layouts[name] == "NHWC" else shape
        assert layouts[name] in (None, "NHWC") and (layouts[name] is None or len(shape) == 4), name
        assert shapes[name] == want, name
    assert [s.shape for s in r.inputs if s.name in ("lo", "hi", "pad_value", "exponent", "bias")] == [()] * 5
    ref = _OrtReference(model)
    with LiteRTRunner(built.bundle, built.manifest, threads=1) as runner:
        for feeds in calib.samples:
            got, want = runner.infer(feeds), ref.infer(feeds)
            for name in OUTPUTS:
                assert got[name].shape == want[name].shape, name
                np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_bundle_maps_artifact_names_to_model_names(tmp_path):
    """Names TFLite cannot carry (``387``, ``input.1``) are renamed; the manifest maps them back."""
    import onnx

    from edgec import api
    from edgec.compiler.config import BuildConfig

    g = helper.make_graph([helper.make_node("Relu", ["input.1"], ["387"])], "names",
                          [helper.make_tensor_value_info("input.1", F, [1, 6])],
                          [helper.make_tensor_value_info("387", F, [1, 6])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "m.onnx")
    result = api.build(BuildConfig(model=str(tmp_path / "m.onnx"), output=tmp_path / "out", target="arm",
                                   precision="fp32", calib="random"))
    io = result.manifest["io_names"]
    assert set(io["outputs"].values()) == {"387"} and set(io["inputs"].values()) == {"input.1"}
    assert [s["name"] for s in result.manifest["outputs"]] == list(io["outputs"])
    assert result.report["accuracy"]["cosine"] > 0.9999


def test_onnx2tf_failure_is_one_line_naming_the_node(tmp_path):
    """onnx2tf cannot squeeze an unsqueezed non-image tensor: the error names the node and the cause."""
    import onnx

    from edgec import api
    from edgec.compiler.config import BuildConfig
    from edgec.errors import UnsupportedOpError

    ax = numpy_helper.from_array(np.array([1], np.int64), "ax")
    g = helper.make_graph([helper.make_node("Unsqueeze", ["x", "ax"], ["u"], name="grow"),
                           helper.make_node("Squeeze", ["u", "ax"], ["y"], name="shrink")], "sq",
                          [helper.make_tensor_value_info("x", F, [3, 4, 5])],
                          [helper.make_tensor_value_info("y", F, [3, 4, 5])], [ax])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "m.onnx")
    try:
        api.build(BuildConfig(model=str(tmp_path / "m.onnx"), output=tmp_path / "out", target="arm",
                              precision="fp32", calib="random"))
    except UnsupportedOpError as exc:
        msg = str(exc)
        assert "\n" not in msg and "'shrink'" in msg and "arm" in msg and "NonMaxSuppression" not in msg
    else:  # a newer onnx2tf that converts it must then be right: the build's own check says so
        pass
