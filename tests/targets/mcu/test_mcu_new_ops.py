"""Ops added as one record each (HardSwish, PRelu, HardSigmoid): bit-exact against LiteRT's
reference kernels on converter-made int8 .tflite, within 1 LSB of onnxruntime on the
Q/DQ ONNX that edgec's own quantizer makes."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import build_bundle, edgec_qdq, lsb_agreement, to_tflite
from .test_mcu_tflite import _check_bitexact


def _keras(name):
    import tensorflow as tf

    L = tf.keras.layers
    tf.keras.utils.set_random_seed(0)
    alpha = tf.keras.initializers.RandomUniform(-0.5, 1.5)
    bodies = {
        # The formula, not keras.activations.hard_swish: tf_keras (which tf.keras becomes once onnx2tf is
        # imported in the process) has no hard_swish; the converter fuses this pattern into HARD_SWISH.
        "hardswish": ((6, 6, 3), lambda x: L.Activation(lambda t: t * tf.nn.relu6(t + 3.0) * (1.0 / 6.0))(
            L.Conv2D(4, 1)(x))),
        "prelu_per_channel": ((6, 6, 3), lambda x: L.PReLU(shared_axes=[1, 2], alpha_initializer=alpha)(L.Conv2D(4, 1)(x))),
        "prelu_per_element": ((5, 4, 3), lambda x: L.PReLU(alpha_initializer=alpha)(x)),
    }
    shape, body = bodies[name]
    inp = tf.keras.Input(shape, batch_size=1)
    return tf.keras.Model(inp, body(inp)), shape


@pytest.mark.slow
@pytest.mark.parametrize("name,builtin", [("hardswish", "HARD_SWISH"), ("prelu_per_channel", "PRELU"),
                                          ("prelu_per_element", "PRELU")])
def test_tflite_bitexact_with_litert_reference(tmp_path, name, builtin):
    from edgec.targets.mcu.import_tflite import list_ops

    data = to_tflite(*_keras(name))
    assert builtin in [op for op, _ in list_ops(data)]
    out = _check_bitexact(data, tmp_path)
    assert out["compared"] > 0


def _torch(name):
    import torch
    from torch import nn

    torch.manual_seed(0)
    if name == "hardswish":
        return nn.Sequential(nn.Conv2d(3, 4, 1), nn.Hardswish()), (1, 3, 6, 6)
    if name == "hardsigmoid":  # exported with alpha 1/6 (ONNX's default is 0.2)
        return nn.Sequential(nn.Conv2d(3, 4, 1), nn.Hardsigmoid()), (1, 3, 6, 6)
    prelu = nn.PReLU(4)
    with torch.no_grad():
        prelu.weight.uniform_(-0.5, 1.5)
    return nn.Sequential(nn.Conv2d(3, 4, 1), prelu), (1, 3, 6, 6)


@pytest.mark.parametrize("name,op_type", [("hardswish", "HardSwish"), ("prelu", "PRelu"),
                                          ("hardsigmoid", "HardSigmoid")])
def test_qdq_onnx_within_one_lsb_of_onnxruntime(tmp_path, name, op_type):
    import io

    import onnx
    import torch

    from edgec.runtimes.mcu_runner import MCURunner

    module, shape = _torch(name)
    buf = io.BytesIO()
    torch.onnx.export(module.eval(), torch.randn(*shape), buf, input_names=["x"], opset_version=17, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    rng = np.random.default_rng(0)
    calib = [{"x": rng.uniform(-3, 3, size=shape).astype(np.float32)} for _ in range(16)]
    _, qh = edgec_qdq(proto, calib)
    assert op_type in {n.op_type for n in qh.proto.graph.node}
    res, manifest = build_bundle(qh, tmp_path / "b")
    runner = MCURunner(tmp_path / "b", manifest).load()
    feeds = [{"x": rng.uniform(-3, 3, size=shape).astype(np.float32)} for _ in range(10)]
    within, total, worst = lsb_agreement(qh.proto, qh, [runner.infer(f) for f in feeds], feeds, res.outputs)
    assert worst <= 1 and within == total, f"{within}/{total} within 1 LSB, worst {worst}"
