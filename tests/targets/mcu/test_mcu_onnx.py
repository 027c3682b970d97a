"""Q/DQ ONNX -> C: within 1 LSB of onnxruntime on >= 99 % of outputs."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import build_bundle, onnx_handle


@pytest.mark.parametrize("name", ["onnx_ds_cnn", "onnx_residual", "onnx_mlp", "onnx_concat_pad"])
def test_qdq_onnx_within_one_lsb(onnx_models, tmp_path, name):
    import onnxruntime as ort

    from edgec.runtimes.mcu_runner import MCURunner

    proto = onnx_models[name]
    h = onnx_handle(proto)
    res, manifest = build_bundle(h, tmp_path / "b")
    runner = MCURunner(tmp_path / "b", manifest).load()
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    within = total = 0
    for _ in range(25):
        feeds = {s.name: rng.uniform(-1, 1, size=s.shape).astype(np.float32) for s in h.inputs}
        want = sess.run(None, feeds)
        got = runner.infer(feeds)
        for spec, w, o in zip(res.outputs, want, h.outputs):
            g = got[o.name]
            assert g.shape == w.shape
            d = np.abs(np.rint(w / spec.scale) - np.rint(g / spec.scale))
            within += int((d <= 1).sum())
            total += d.size
    assert within / total >= 0.99, f"{within}/{total} within 1 LSB"


def test_onnx_unsupported_op(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgec.errors import UnsupportedOpError
    from edgec.targets.base import LowerSpec
    from edgec.targets.mcu import MCUTarget

    node = helper.make_node("Erf", ["x"], ["y"], name="my_erf")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    h = onnx_handle(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    with pytest.raises(UnsupportedOpError, match=r"op Erf \(node 'my_erf'\) is not supported by target 'mcu'"):
        MCUTarget().check(h, LowerSpec("int8", h)).raise_if_unsupported()
    assert onnx  # imported for the helper
