"""``relu(a + b)``: the part of ``a`` below ``-max(b)`` is zeroed anyway, so its int8 range drops it
(`edgec.compiler.qdq_graph.clip_dead_relu_ranges`): real onnxruntime runs of a tiny residual block."""

from __future__ import annotations

import dataclasses

import numpy as np

from edgec.calibration import collect_ranges

from ._quant_util import run_first_output as _run


def _block():
    """x -> Relu (the skip, <= ~3) -> 1x1 conv whose channel 0 reaches -60 -> Add(skip) -> Relu -> 1x1 conv."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.5, (4, 4, 1, 1)).astype(np.float32)
    b1 = np.array([-40.0, 0.0, 0.0, 0.0], np.float32)  # a dead-ish channel: a residual block's negative tail
    w2 = rng.normal(0, 0.5, (3, 4, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Relu", ["x"], ["skip"], name="skip"),
             helper.make_node("Conv", ["skip", "w1", "b1"], ["a"], name="pw"),
             helper.make_node("Add", ["a", "skip"], ["sum"], name="add"),
             helper.make_node("Relu", ["sum"], ["act"], name="act"),
             helper.make_node("Conv", ["act", "w2"], ["y"], name="head")]
    g = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _samples(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32)} for _ in range(n)]


def test_the_dead_tail_is_clamped_and_int8_gets_finer(monkeypatch):
    import edgec.compiler.qdq_graph as qg
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.quantize import quantize_qdq
    from edgec.targets.registry import get_target

    proto = _block()
    calib, evals = _samples(16, 1), _samples(8, 2)
    ranges = collect_ranges(proto, calib, "minmax")
    clamped, names = qg.clip_dead_relu_ranges(proto.graph, ranges)
    assert names == ["a"]  # the skip also feeds the conv: it keeps its range
    assert ranges["a"].rmin < -30 and clamped["a"].rmin == -ranges["skip"].rmax
    assert clamped["skip"] == ranges["skip"]
    assert qg.clip_dead_relu_ranges(proto.graph, ranges, keep_float=("act",))[1] == []  # a float Relu sees all of a

    model = ModelHandle.from_onnx(proto, "block.onnx", "0" * 64)
    ref = _run(proto, evals)
    err = {}
    for name in ("clamped", "plain"):
        if name == "plain":
            monkeypatch.setattr(qg, "clip_dead_relu_ranges", lambda g, r, keep_float=(): (r, []))
        # The Add's inputs quantized (as mcu, arm and jetson do; onnxruntime keeps residual Adds float).
        scheme = dataclasses.replace(get_target("onnxruntime").quant_scheme, float_residual_adds=False)
        q, summary = quantize_qdq(model, ranges, scheme)
        assert summary.get("relu_dead_ranges_clamped", 0) == (1 if name == "clamped" else 0)
        err[name] = float(np.sqrt(np.mean((_run(q.proto, evals) - ref) ** 2)))
    # a's step was ~(40 + 3) / 255; clamped to the skip's range it is ~6 / 255: a few times less noise
    assert err["clamped"] < 0.6 * err["plain"], err
