"""intel-cpu int8 placement on a ShuffleNet V2-style CNN and on ReLU-fed depthwise convs: OpenVINO's runtime
model (`get_runtime_model`) must run the channel shuffles, Splits, Concats and the stem MaxPool on int8 data,
as NNCF's placement does (shufflenet_v2_x1_0: 62 f32 kernels before, NNCF 1), and a depthwise conv after a
ReLU reads its per-channel pair on the unsigned grid (mobilenet_v2: a symmetric grid there cost 0.87x NNCF's
speed). Precisions and zero points are checked, nothing is timed.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec import api
from edgec.compiler.config import BuildConfig
from tests.targets.openvino.ov_runtime import NO_COMPUTE, model_folder, runtime_precision

pytest.importorskip("openvino", reason="the intel-cpu target needs openvino (pip install 'edgec[openvino]')")

INT8 = ("u8", "i8")
C = 16  # channels after the stem; each branch carries C // 2


class _Net:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def conv(self, x: str, y: str, cin: int, cout: int, k: int = 1, stride: int = 1, dw: bool = False,
             relu: bool = True, gain: float = 1.0) -> str:
        w = self.rng.standard_normal((cout, 1 if dw else cin, k, k)) * gain * (0.5 if dw else 1 / np.sqrt(cin * k * k))
        self.const(f"{y}_w", w.astype(np.float32))
        self.const(f"{y}_b", (self.rng.standard_normal(cout) * 0.1).astype(np.float32))
        self.nodes.append(helper.make_node("Conv", [x, f"{y}_w", f"{y}_b"], [y], name=y, pads=[k // 2] * 4,
                                           strides=[stride] * 2, group=cout if dw else 1))
        if not relu:
            return y
        self.nodes.append(helper.make_node("Relu", [y], [f"{y}_r"], name=f"{y}_relu"))
        return f"{y}_r"

    def shuffle(self, parts: list[str], name: str, hw: int) -> str:
        """Concat -> Reshape [1, 2, C/2, H, W] -> Transpose -> Reshape [1, C, H, W], as torchvision exports it."""
        self.nodes += [
            helper.make_node("Concat", parts, [f"{name}_cat"], name=f"{name}_cat", axis=1),
            helper.make_node("Reshape", [f"{name}_cat", self.const(f"{name}_s5", np.array([1, 2, C // 2, hw, hw]))],
                             [f"{name}_v"], name=f"{name}_view"),
            helper.make_node("Transpose", [f"{name}_v"], [f"{name}_t"], name=f"{name}_transpose",
                             perm=[0, 2, 1, 3, 4]),
            helper.make_node("Reshape", [f"{name}_t", self.const(f"{name}_s4", np.array([1, C, hw, hw]))],
                             [f"{name}_out"], name=f"{name}_unview")]
        return f"{name}_out"


def _shufflenet() -> onnx.ModelProto:
    """Stem conv + MaxPool, a stride-2 unit, two stride-1 units (Split, one half through), a head."""
    net = _Net(0)
    x = net.conv("x", "stem", 3, C, k=3, stride=2)
    net.nodes.append(helper.make_node("MaxPool", [x], ["pool"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
                                      pads=[1, 1, 1, 1]))
    left = net.conv(net.conv("pool", "l_dw", C, C, k=3, stride=2, dw=True, relu=False), "l_pw", C, C // 2)
    right = net.conv("pool", "r_pw1", C, C // 2)
    right = net.conv(net.conv(right, "r_dw", C // 2, C // 2, k=3, stride=2, dw=True, relu=False), "r_pw2", C // 2,
                     C // 2)
    x = net.shuffle([left, right], "shuffle0", 4)
    for u in (1, 2):
        net.nodes.append(helper.make_node("Split", [x, net.const(f"split{u}_sizes", np.array([C // 2, C // 2]))],
                                          [f"split{u}_a", f"split{u}_b"], name=f"split{u}", axis=1))
        b = net.conv(f"split{u}_b", f"u{u}_pw1", C // 2, C // 2)
        # Branch outputs in ranges alike (within `layout_region_max_spread`), as a trained ShuffleNet's are.
        b = net.conv(net.conv(b, f"u{u}_dw", C // 2, C // 2, k=3, dw=True, relu=False), f"u{u}_pw2", C // 2, C // 2,
                     gain=(0.35, 0.7)[u - 1])
        x = net.shuffle([f"split{u}_a", b], f"shuffle{u}", 4)
    x = net.conv(x, "last", C, 32)
    net.const("fc_w", (net.rng.standard_normal((10, 32)) * 0.3).astype(np.float32))
    net.nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
                  helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
                  helper.make_node("Gemm", ["flat", "fc_w"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(net.nodes, "shufflenet", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                      [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], net.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = model_folder(tmp_path_factory.mktemp("ovshuffle"), _shufflenet(), (3, 32, 32))
    return api.build(BuildConfig(model=str(d / "m.onnx"), output=d / "out", target="intel-cpu", precision="int8",
                                 calib=str(d / "calib.npz"), force=True))


def test_channel_shuffles_splits_and_the_stem_pool_run_in_int8(built):
    precision = runtime_precision(built.bundle, NO_COMPUTE)
    # The plugin fuses each Reshape -> Transpose -> Reshape into one ShuffleChannels named after the last Reshape.
    for node in ("pool", "shuffle0_cat", "shuffle0_unview", "split1", "shuffle1_cat", "shuffle1_unview", "split2",
                 "shuffle2_cat", "shuffle2_unview"):
        assert precision.get(node) in INT8, (node, precision.get(node))
    f32 = sorted(n for n, p in precision.items() if p == "f32" and not n.endswith("QuantizeLinear"))
    assert len(f32) <= 2, f32  # the input's quantize (and the Gemm's float output), as NNCF's placement
    assert built.report["accuracy"]["cosine"] > 0.995, built.report["accuracy"]


def test_the_shuffle_chain_shares_one_grid_from_its_branch_outputs(built):
    """Pairs on the Concat inputs (branch outputs) with one scale; none after a Split or on the shuffles."""
    q = onnx.load(str(built.bundle / "reference" / "quantized.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    quantized = {n.input[0]: n for n in q.graph.node if n.op_type == "QuantizeLinear"}
    assert not {"split1_b", "split2_b", "shuffle0_out", "shuffle1_out"} & set(quantized), sorted(quantized)
    entries = ["l_pw_r", "r_pw2_r", "u1_pw2_r", "u2_pw2_r"]
    scales = {float(inits[quantized[t].input[1]]) for t in entries}
    assert len(scales) == 1, scales


def test_a_relu_fed_depthwise_conv_reads_the_unsigned_per_channel_grid(built):
    """``r_dw`` reads ``r_pw1_r`` (a ReLU output): per-channel scales with zero point -128 (all 256 levels)."""
    q = onnx.load(str(built.bundle / "reference" / "quantized.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    ql = next(n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "r_pw1_r")
    scale, zp = inits[ql.input[1]], inits[ql.input[2]]
    assert scale.shape == (C // 2,) and zp.shape == (C // 2,) and (zp == -128).all(), (scale, zp)


def test_a_shuffle_whose_branches_differ_in_range_keeps_a_pair_per_conv():
    """Parts 100x apart in range would share a grid too coarse for the smaller one: no shared region then."""
    from edgec.calibration import collect_ranges
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.quantize import quantize_qdq
    from edgec.targets.openvino import OpenVINOTarget

    rng = np.random.default_rng(2)
    w = {k: numpy_helper.from_array((rng.standard_normal((4, 4, 1, 1)) * s).astype(np.float32), k)
         for k, s in (("wa", 1.0), ("wb", 0.01), ("w1", 0.5), ("w2", 0.5))}
    sizes = numpy_helper.from_array(np.array([4, 4]), "sizes")
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="ca"),
             helper.make_node("Conv", ["x", "wb"], ["b"], name="cb"),
             helper.make_node("Concat", ["a", "b"], ["cat"], name="cat", axis=1),
             helper.make_node("Transpose", ["cat"], ["t"], name="shuffle", perm=[0, 1, 3, 2]),
             helper.make_node("Split", ["t", "sizes"], ["s1", "s2"], name="split", axis=1),
             helper.make_node("Conv", ["s1", "w1"], ["y1"], name="c1"),
             helper.make_node("Conv", ["s2", "w2"], ["y2"], name="c2")]
    graph = helper.make_graph(nodes, "shuffle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, 4, 6, 6]) for y in ("y1", "y2")],
                              [*w.values(), sizes])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    samples = [{"x": rng.standard_normal((1, 4, 6, 6)).astype(np.float32)} for _ in range(4)]
    ranges = collect_ranges(proto, samples)
    q, _ = quantize_qdq(ModelHandle.from_onnx(proto, "m.onnx", "0" * 64), ranges, OpenVINOTarget.quant_scheme)
    quantized = {n.input[0] for n in q.proto.graph.node if n.op_type == "QuantizeLinear"}
    assert {"s1", "s2"} <= quantized and not {"a", "b"} & quantized, quantized
    # The same graph with both branches alike: one grid from the branch outputs on.
    w["wb"] = numpy_helper.from_array((rng.standard_normal((4, 4, 1, 1))).astype(np.float32), "wb")
    graph = helper.make_graph(nodes, "shuffle", list(graph.input), list(graph.output), [*w.values(), sizes])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    ranges = collect_ranges(proto, samples)
    q, _ = quantize_qdq(ModelHandle.from_onnx(proto, "m.onnx", "0" * 64), ranges, OpenVINOTarget.quant_scheme)
    quantized = {n.input[0] for n in q.proto.graph.node if n.op_type == "QuantizeLinear"}
    assert {"a", "b"} <= quantized and not {"s1", "s2", "t", "cat"} & quantized, quantized


def test_a_relu6_fed_depthwise_grid_stops_at_the_clip_bound():
    """Clip(0, 6) -> depthwise: unsigned per-channel grid up to twice the calibrated maximum, but never past 6
    (past the bound the plugin no longer fuses the two: mobilenet_v2 lost 7 % of its speed); a Clip that can go
    negative keeps the symmetric grid."""
    from edgec.calibration import collect_ranges
    from edgec.calibration.channels import collect_channel_absmax
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.quantize import depthwise_inputs, quantize_qdq
    from edgec.targets.openvino import OpenVINOTarget

    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array((rng.standard_normal((4, 1, 3, 3)) * 0.5).astype(np.float32), w)
             for w in ("w1", "w2")]
    inits += [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("lo", 0.0), ("hi", 6.0), ("neg", -1.0))]
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["r6"], name="relu6"),
             helper.make_node("Conv", ["r6", "w1"], ["y1"], name="dw1", group=4, pads=[1] * 4),
             helper.make_node("Clip", ["x", "neg", "hi"], ["c"], name="clip"),
             helper.make_node("Conv", ["c", "w2"], ["y2"], name="dw2", group=4, pads=[1] * 4)]
    graph = helper.make_graph(nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, 4, 6, 6]) for y in ("y1", "y2")],
                              inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    # Channel 0 reaches the bound, channel 1 stays small: 2x its maximum is under 6.
    x = (rng.uniform(0, 1, (4, 1, 4, 6, 6)) * np.array([8.0, 1.0, 4.0, 5.0]).reshape(1, 1, 4, 1, 1)).astype(np.float32)
    samples = [{"x": s} for s in x]
    absmax = collect_channel_absmax(proto, samples, depthwise_inputs(proto))
    q, _ = quantize_qdq(ModelHandle.from_onnx(proto, "m.onnx", "0" * 64), collect_ranges(proto, samples),
                        OpenVINOTarget.quant_scheme, channel_absmax=absmax)
    consts = {t.name: numpy_helper.to_array(t) for t in q.proto.graph.initializer}
    ql = {n.input[0]: n for n in q.proto.graph.node if n.op_type == "QuantizeLinear"}
    scale, zp = consts[ql["r6"].input[1]], consts[ql["r6"].input[2]]
    assert (zp == -128).all() and np.all(scale * 255 <= 6.0 * (1 + 1e-6)), (scale * 255, zp)
    np.testing.assert_allclose(scale[1], absmax["r6"][1] / 127, rtol=1e-5)  # the symmetric grid's step
    assert (consts[ql["c"].input[2]] == 0).all()  # Clip(-1, 6): signed, the symmetric grid
