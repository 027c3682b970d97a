"""The INT8 accuracy gate: symmetric activations within accuracy, or a clear failure."""

from __future__ import annotations

import numpy as np
import pytest

from .trt_models import handle, offset, quantize, samples_for
from edgec.errors import AccuracyError
from edgec.targets.tensorrt import accuracy
from edgec.targets.tensorrt.qdq_rules import legalize


def gate(model, qdq, samples, **kw):
    h = handle(model)
    return accuracy.accuracy_gate(model, legalize(qdq)[0], samples, h.inputs, [o.name for o in h.outputs], **kw)


def test_gate_passes_on_cnn_and_mlp(cnn_qdq, mlp_qdq):
    for m, q, s in (cnn_qdq, mlp_qdq):
        res = gate(m, q, s)
        y = res["outputs"]["y"]
        assert res["checked"] and res["samples"] == len(s)
        assert y["nrmse"] < 0.1 and y["cosine"] > 0.999


def test_gate_fails_on_offset_activation_naming_tensor_node_and_fix(tmp_path):
    m = offset()
    s = samples_for(m)
    with pytest.raises(AccuracyError) as exc:
        gate(m, quantize(m, s, tmp_path), s)
    msg = str(exc.value)
    assert "symmetric" in msg and "output 'y'" in msg and "bound 0.25" in msg
    assert "'o1' into 'conv2'" in msg  # the post-sigmoid + 50 tensor and the node it feeds
    assert "--keep-float conv2" in msg and "--precision fp16" in msg and "--accept-low-accuracy" in msg
    assert "\n" not in msg
    # --accept-low-accuracy: the same measurement, reported instead of raised.
    res = gate(m, quantize(m, s, tmp_path), s, accept=True)
    assert res["accepted_below_bound"] == msg and res["outputs"]["y"]["nrmse"] > 0.25


def test_bound_is_configurable(cnn_qdq):
    m, q, s = cnn_qdq
    with pytest.raises(AccuracyError):
        gate(m, q, s, bound=1e-6)


def test_symmetric_vs_asymmetric_error():
    x = np.linspace(50, 51, 1000)
    sym = accuracy.symmetric_error(x, 51 / 127)
    assert sym > 0.3  # step 0.4 on a tensor that spans 1.0
    centred = np.linspace(-1, 1, 1000)
    assert accuracy.symmetric_error(centred, 1 / 127) < 0.01


def test_fit_batches_concatenates_to_static_batch():
    from edgec.compiler.model import TensorSpec

    samples = [{"x": np.full((1, 2), i, np.float32)} for i in range(5)]
    out = accuracy.fit_batches(samples, [TensorSpec("x", (2, 2), "float32")])
    assert [b["x"].shape for b in out] == [(2, 2)] * 3
    assert out[-1]["x"][:, 0].tolist() == [4, 4]  # last batch padded with the last sample
    assert accuracy.fit_batches(samples, [TensorSpec("x", (1, 2), "float32")]) == samples


def test_accept_low_accuracy_reaches_the_jetson_gate(tmp_path):
    import onnx

    from edgec import api
    from edgec.compiler.config import BuildConfig

    m = offset()
    onnx.save(m, tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", x=np.concatenate([s["x"] for s in samples_for(m, n=8)]))
    flat = dict(model=str(tmp_path / "m.onnx"), target="jetson", precision="int8", calib=str(tmp_path / "calib.npz"),
                calib_method="minmax", force=True)
    with pytest.raises(AccuracyError):
        api.build(BuildConfig.from_flat(output=tmp_path / "a", **flat))
    res = api.build(BuildConfig.from_flat(output=tmp_path / "b", accept_low_accuracy=True, **flat))
    assert "accepted_below_bound" in res.report["target"]["int8_gate"]
    assert any(w.startswith("accepted with --accept-low-accuracy") for w in res.report["target"]["warnings"])
