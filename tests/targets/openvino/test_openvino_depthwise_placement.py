"""intel-cpu int8 placement of a depthwise conv read by a pointwise conv, no activation between (BlazeBlocks,
ShuffleNet, separable convs): its signed output is quantized without a zero point, as NNCF's placement does.

OpenVINO's CPU plugin ran those depthwise kernels about twice as slow writing an asymmetric int8 output
(iris-landmark: 26 depthwise convs, whole-model thread-CPU min 608-722 -> 540-560 us, NNCF 530-559). Nothing is
timed here: the test checks the placement (zero points) and that both convs still run int8 in the CPU plugin.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec import api
from edgec.compiler.config import BuildConfig
from tests.targets.openvino.ov_runtime import runtime_precision

pytest.importorskip("openvino", reason="the intel-cpu target needs openvino (pip install 'edgec[openvino]')")

INT8 = ("u8", "i8")


def _blaze_block() -> onnx.ModelProto:
    """conv + Relu -> depthwise 3x3 (output shifted positive: a lopsided signed range) -> 1x1 conv -> Relu."""
    rng = np.random.default_rng(0)
    arr = {"stem_w": rng.standard_normal((16, 3, 3, 3)) * 0.3, "stem_b": rng.standard_normal(16) * 0.1,
           "dw_w": rng.standard_normal((16, 1, 3, 3)) * 0.3, "dw_b": np.full(16, 1.5),
           "pw_w": rng.standard_normal((16, 16, 1, 1)) * 0.3, "pw_b": rng.standard_normal(16) * 0.1}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in arr.items()]
    nodes = [helper.make_node("Conv", ["x", "stem_w", "stem_b"], ["stem"], name="stem", pads=[1] * 4),
             helper.make_node("Relu", ["stem"], ["stem_r"], name="stem_relu"),
             helper.make_node("Conv", ["stem_r", "dw_w", "dw_b"], ["dw"], name="dw", pads=[1] * 4, group=16),
             helper.make_node("Conv", ["dw", "pw_w", "pw_b"], ["pw"], name="pw"),
             helper.make_node("Relu", ["pw"], ["y"], name="pw_relu")]
    graph = helper.make_graph(nodes, "blaze", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 16, 16])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _zero_points(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    return {n.input[0]: inits[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear"}


def test_signed_depthwise_output_has_no_zero_point():
    from edgec.calibration import collect_ranges
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.quantize import quantize_qdq
    from edgec.targets.openvino import OpenVINOTarget

    proto = _blaze_block()
    rng = np.random.default_rng(1)
    ranges = collect_ranges(proto, [{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(4)])
    assert ranges["dw"].rmin < 0 < ranges["dw"].rmax, ranges["dw"]
    scheme = OpenVINOTarget.quant_scheme
    assert scheme.symmetric_depthwise_outputs
    handle = ModelHandle.from_onnx(proto, "m.onnx", "0" * 64)
    # The block has one depthwise conv: the rule applies from a count of 1, not from 2 (a shallow net: no gain).
    for rule, symmetric in ((1, True), (2, False), (None, False)):
        q, _ = quantize_qdq(handle, ranges, dataclasses.replace(scheme, symmetric_depthwise_outputs=rule))
        zp = _zero_points(q.proto)
        assert (int(zp["dw"]) == 0) is symmetric, (rule, zp["dw"])
        assert int(zp["stem_r"]) == -128  # a Relu output keeps its unsigned grid either way


def test_depthwise_and_pointwise_convs_run_int8(tmp_path, monkeypatch):
    from edgec.targets.openvino import OpenVINOTarget

    monkeypatch.setattr(OpenVINOTarget, "quant_scheme",
                        dataclasses.replace(OpenVINOTarget.quant_scheme, symmetric_depthwise_outputs=1))
    (tmp_path / "m.onnx").write_bytes(_blaze_block().SerializeToString())
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((16, 3, 16, 16)).astype(np.float32))
    res = api.build(BuildConfig(model=str(tmp_path / "m.onnx"), output=tmp_path / "out", target="intel-cpu",
                                precision="int8", calib=str(tmp_path / "calib.npz"), force=True))
    quantized = onnx.load(str(res.bundle / "reference" / "quantized.onnx"))
    assert int(_zero_points(quantized)["dw"]) == 0
    precision = runtime_precision(res.bundle)
    for node in ("dw", "pw"):
        assert precision.get(node) in INT8, (node, precision.get(node))
    assert res.report["accuracy"]["cosine"] > 0.995, res.report["accuracy"]
