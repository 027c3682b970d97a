"""Bias correction of TFLite's int8 weight rounding (`targets/tflite/weight_rounding.py`), checked in onnxruntime.

No TensorFlow here: the int8 weights TFLite will use are simulated with the same per-channel
symmetric rounding, and the corrected graph must bring the output means back to the float model's.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from edgec.runtimes.onnx_graph import make_session
from edgec.targets.tflite.weight_rounding import correct_conv_biases, tflite_int8_weights


def _model(rng):
    """x[1,4,8,8] -> depthwise 3x3 (bias) -> Relu -> Conv 1x1 8 out (no bias): means well away from zero."""
    dw = rng.normal(0, 1, (4, 1, 3, 3)).astype(np.float32)
    dw[:, 0, 0, 0] *= 30  # one large tap per channel: a coarse step for the other eight
    pw = rng.normal(0, 1, (8, 4, 1, 1)).astype(np.float32)
    pw[:, 0] *= 40
    nodes = [helper.make_node("Conv", ["x", "dw", "db"], ["d"], group=4, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["d"], ["r"]),
             helper.make_node("Conv", ["r", "pw"], ["y"])]
    inits = [numpy_helper.from_array(dw, "dw"), numpy_helper.from_array(np.zeros(4, np.float32), "db"),
             numpy_helper.from_array(pw, "pw")]
    g = helper.make_graph(nodes, "dwpw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _as_tflite_rounds(proto):
    """A copy whose conv weights are what TFLite's int8 weights dequantize to."""
    import onnx

    q = onnx.ModelProto()
    q.CopyFrom(proto)
    for t in q.graph.initializer:
        if t.name in ("dw", "pw"):
            q8 = tflite_int8_weights(numpy_helper.to_array(t)).astype(np.float32)
            t.CopyFrom(numpy_helper.from_array(q8, t.name))
    return q


def _mean_error(proto, ref, feeds) -> float:
    s = make_session(proto)
    outs = np.stack([s.run(None, f)[0] for f in feeds])
    return float(np.abs((outs - ref).mean(axis=(0, 1, 3, 4))).mean())


def test_corrected_biases_cancel_the_int8_weight_rounding_shift():
    import onnx

    rng = np.random.default_rng(0)
    proto = _model(rng)
    calib = [{"x": rng.normal(1.0, 1.0, (1, 4, 8, 8)).astype(np.float32)} for _ in range(8)]
    evals = [{"x": rng.normal(1.0, 1.0, (1, 4, 8, 8)).astype(np.float32)} for _ in range(8)]
    s = make_session(proto)
    ref = np.stack([s.run(None, f)[0] for f in evals])
    corrected = onnx.ModelProto()
    corrected.CopyFrom(proto)
    info = correct_conv_biases(corrected, calib)
    assert info["layers"] == 2 and info["mean_abs_shift"] > 0
    # The weights are unchanged (TFLite rounds them as simulated); the 1x1 conv got a bias.
    w = {t.name: numpy_helper.to_array(t) for t in corrected.graph.initializer}
    assert np.array_equal(w["dw"], numpy_helper.to_array(proto.graph.initializer[0]))
    assert len(corrected.graph.node[2].input) == 3 and w[corrected.graph.node[2].input[2]].shape == (8,)
    before = _mean_error(_as_tflite_rounds(proto), ref, evals)
    after = _mean_error(_as_tflite_rounds(corrected), ref, evals)
    # Held-out samples: the per-channel output mean shift shrinks (measured 1.05 -> 0.10; a sign error doubles it).
    assert after < 0.5 * before, (after, before)


def test_tflite_int8_weights_round_per_output_channel():
    w = np.array([[[[1.0, -0.5, 0.26]]], [[[100.0, 1.0, -3.0]]]], np.float32)  # [2, 1, 1, 3]
    q = tflite_int8_weights(w)
    assert np.allclose(q[0].ravel(), np.round(w[0].ravel() * 127) / 127)  # channel 0: step 1/127
    assert q[1].ravel()[0] == 100.0 and abs(q[1].ravel()[1] - 100 / 127) < 1e-6  # channel 1: step 100/127
