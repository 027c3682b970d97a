"""A BlazeFace-like residual stream built in code, for the tests of the deep-residual recipe."""

from __future__ import annotations

import numpy as np


def blaze_stream_model(blocks: int, *, hw: int = 8, channels: int = 8, pw_std: float = 0.3, bias_std: float = 0.1,
                       head: str = "conv", outlier_last: float | None = None):
    """x [1,4,hw,hw] -> conv -> Relu, then ``blocks`` BlazeFace blocks s -> depthwise 3x3 -> pointwise -> Add(s)
    -> Relu (nodes ``dw{i}``, ``pw{i}``, ``add{i}``), and a 1x1 head.

    Args:
        blocks: Residual blocks.
        hw: Input height and width.
        channels: Stream channels.
        pw_std: Standard deviation of the pointwise weights (the branch's gain).
        bias_std: ... and of their biases.
        head: ``conv``: a 1x1 conv to 2 channels; ``depthwise``: a depthwise 1x1 (one output per channel).
        outlier_last: The last block's pointwise output gets one channel this much wider, which a depthwise
            head undoes: only that block's int8 Add then rounds a wide input.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    c = channels
    w = {"w0": rng.normal(0, 0.5, (c, 4, 3, 3)), "b0": rng.normal(0, 0.1, c)}
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["s0"], name="relu0")]
    for i in range(1, blocks + 1):
        w[f"d{i}"] = rng.normal(0, 0.5, (c, 1, 3, 3))
        w[f"p{i}"] = rng.normal(0, pw_std, (c, c, 1, 1))
        w[f"q{i}"] = rng.normal(0, bias_std, c)
        nodes += [helper.make_node("Conv", [f"s{i - 1}", f"d{i}"], [f"dw{i}"], name=f"dw{i}", group=c,
                                   pads=[1, 1, 1, 1]),
                  helper.make_node("Conv", [f"dw{i}", f"p{i}", f"q{i}"], [f"pw{i}"], name=f"pw{i}"),
                  helper.make_node("Add", [f"pw{i}", f"s{i - 1}"], [f"a{i}"], name=f"add{i}"),
                  helper.make_node("Relu", [f"a{i}"], [f"s{i}"], name=f"relu{i}")]
    if outlier_last is not None:
        w[f"p{blocks}"][1] *= outlier_last
        w[f"q{blocks}"][1] *= outlier_last
    if head == "depthwise":
        w["h"] = rng.normal(0, 0.5, (c, 1, 1, 1))
        if outlier_last is not None:
            w["h"][1] /= outlier_last
        nodes.append(helper.make_node("Conv", [f"s{blocks}", "h"], ["y"], name="head", group=c))
        out = c
    else:
        w["h"] = rng.normal(0, 0.3, (2, c, 1, 1))
        nodes.append(helper.make_node("Conv", [f"s{blocks}", "h"], ["y"], name="head"))
        out = 2
    g = helper.make_graph(nodes, "blocks", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, hw, hw])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out, hw, hw])],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m
