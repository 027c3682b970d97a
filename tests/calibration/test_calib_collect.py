"""collect_ranges over tiny ONNX models built with onnx.helper."""

from __future__ import annotations

import numpy as np
import pytest
from _calib_util import conv_numpy, conv_relu_model, make_model, spec
from onnx import TensorProto, helper, numpy_helper

from edgec.calibration import CalibrationData, collect_ranges, load_calibration_data
from edgec.compiler.progress import Progress
from edgec.errors import CalibrationDataError, ConfigError

RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 2, 3, 3)).astype(np.float32)
B = RNG.standard_normal(4).astype(np.float32)
X = RNG.standard_normal((6, 2, 6, 6)).astype(np.float32)
SAMPLES = [{"x": X[k:k + 1]} for k in range(len(X))]


def test_conv_relu_minmax_matches_numpy():
    ranges = collect_ranges(conv_relu_model(W, B), SAMPLES)
    assert list(ranges) == ["x", "c", "r", "y"]  # graph inputs, then node outputs in graph order
    c = conv_numpy(X, W, B)
    want = {"x": X, "c": c, "r": np.maximum(c, 0), "y": 2 * np.maximum(c, 0)}
    for name, arr in want.items():
        r = ranges[name]
        assert r.method == "minmax"
        np.testing.assert_allclose((r.rmin, r.rmax), (arr.min(), arr.max()), rtol=1e-5, atol=1e-5)
        assert r.absmax_seen == pytest.approx(np.abs(arr).max(), rel=1e-5)


def test_methods_options_and_tensor_subset():
    model = conv_relu_model(W, B)
    data = CalibrationData(samples=SAMPLES, source="test")
    for method in ("percentile", "entropy", "mse"):
        ranges = collect_ranges(model, data, method, tensors=["c"])
        assert list(ranges) == ["c"] and ranges["c"].method == method
        assert ranges["c"].rmin < 0 < ranges["c"].rmax
    full = collect_ranges(model, iter(SAMPLES), "percentile", percentile=100.0, tensors=["x", "r", "W"])
    assert list(full) == ["x", "W", "r"]
    assert full["W"].rmax == pytest.approx(W.max()) and full["r"].rmin == 0.0
    with pytest.raises(ConfigError, match=r"tensor\(s\) 'nope' to calibrate are not in the model"):
        collect_ranges(model, SAMPLES, tensors=["nope"])
    with pytest.raises(ConfigError, match="unknown calibration method 'kl'"):
        collect_ranges(model, SAMPLES, "kl")
    with pytest.raises(ConfigError, match="invalid option for calibration method 'minmax'"):
        collect_ranges(model, SAMPLES, percentile=99.0)


def test_conflicting_value_info_and_non_float_tensors():
    # value_info left by an exporter that no longer fits (wrong dims, wrong dtype) must not
    # stop the intermediate tensors from becoming outputs; int tensors get no range.
    vi = [helper.make_tensor_value_info("c", TensorProto.FLOAT, [9, 9]),
          helper.make_tensor_value_info("r", TensorProto.DOUBLE, ["a", "b", "c", "d"])]
    model = conv_relu_model(W, B, value_info=vi)
    model.graph.node.append(helper.make_node("Shape", ["y"], ["shape"]))
    model.graph.output.append(helper.make_tensor_value_info("shape", TensorProto.INT64, [4]))
    ranges = collect_ranges(model, SAMPLES)
    assert set(ranges) == {"x", "c", "r", "y"}
    assert ranges["r"].rmax == pytest.approx(np.maximum(conv_numpy(X, W, B), 0).max(), rel=1e-5)
    with pytest.raises(ConfigError, match=r"tensor\(s\) 'shape' are not float"):
        collect_ranges(model, SAMPLES, tensors=["shape"])


def test_sample_errors():
    model = conv_relu_model(W, B)
    with pytest.raises(CalibrationDataError, match="no calibration samples were given"):
        collect_ranges(model, [])
    with pytest.raises(CalibrationDataError, match=r"calibration sample 1 lacks input\(s\) 'x'; expected 'x'"):
        collect_ranges(model, [SAMPLES[0], {"image": X[:1]}])
    with pytest.raises(CalibrationDataError, match="onnxruntime failed on calibration sample 0") as exc:
        collect_ranges(model, [{"x": np.zeros((1, 3, 6, 6), np.float32)}])
    assert "\n" not in str(exc.value)


def test_progress_and_int_inputs():
    # An embedding-like model: int ids in, float out; the int input is fed but not observed.
    table = RNG.standard_normal((10, 4)).astype(np.float32)
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 5])
    out = helper.make_tensor_value_info("emb", TensorProto.FLOAT, [1, 5, 4])
    model = make_model([helper.make_node("Gather", ["table", "input_ids"], ["emb"])], [ids], [out],
                       [numpy_helper.from_array(table, "table")])
    data = load_calibration_data("random", [spec("input_ids", (1, 5), "int64")], max_samples=5, seed=1)
    for s in data:
        s["input_ids"] %= 10

    class Recorder(Progress):
        def __init__(self):
            super().__init__(False)
            self.calls = []

        def task(self, description, total):
            self.calls.append((description, total))
            return super().task(description, total)

    rec = Recorder()
    ranges = collect_ranges(model, data, progress=rec)
    assert list(ranges) == ["emb"] and rec.calls == [("calibrating", 5)]
    used = table[np.concatenate([s["input_ids"].ravel() for s in data])]
    assert (ranges["emb"].rmin, ranges["emb"].rmax) == (used.min(), used.max())
