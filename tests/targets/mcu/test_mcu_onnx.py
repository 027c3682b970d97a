"""Q/DQ ONNX -> C: within 1 LSB of onnxruntime on >= 99 % of outputs."""

from __future__ import annotations

import numpy as np
from edgec.compiler.quality import exact_qdq_session
import pytest

from .conftest import build_bundle, onnx_handle, random_native


@pytest.mark.parametrize("name", ["onnx_ds_cnn", "onnx_residual", "onnx_mlp", "onnx_concat_pad"])
def test_qdq_onnx_within_one_lsb(onnx_models, tmp_path, name):
    from edgec.runtimes.mcu_runner import MCURunner

    proto = onnx_models[name]
    h = onnx_handle(proto)
    res, manifest = build_bundle(h, tmp_path / "b")
    runner = MCURunner(tmp_path / "b", manifest).load()
    sess = exact_qdq_session(proto)
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



def _qdq_conv(group: int):
    """x -> Q -> DQ -> Conv (3x3, int8 per-channel weights) -> Q -> DQ, with scales whose
    requantization multiplier is 0.33: LiteRT's first rounding is then to half an LSB."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    c = 8
    w = rng.integers(-12, 13, size=(c, c // group, 3, 3)).astype(np.int8)
    init = [numpy_helper.from_array(a, n) for a, n in [
        (np.float32(0.05), "xs"), (np.int8(0), "xz"), (w, "w"), (np.full(c, 0.02, np.float32), "ws"),
        (np.zeros(c, np.int8), "wz"), (rng.integers(-300, 300, size=c).astype(np.int32), "b"),
        (np.full(c, 0.001, np.float32), "bs"), (np.zeros(c, np.int32), "bz"), (np.float32(0.003), "ys"),
        (np.int8(0), "yz")]]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"], axis=0),
             helper.make_node("Conv", ["xd", "wd", "bd"], ["yf"], pads=[1, 1, 1, 1], group=group, name="conv"),
             helper.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 10, 10])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 10, 10])], init)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.qemu
@pytest.mark.parametrize("cpu,group", [("cortex-m4", 1), ("cortex-m4", 8), ("cortex-m55", 1), ("cortex-m55", 8)])
def test_qdq_onnx_conv_rounds_once(tmp_path, cpu, group):
    """A Q/DQ ONNX model's convolutions requantize with one rounding, as its QuantizeLinear
    does (LiteRT's second rounding flips outputs by one LSB, which a deep int8 detector such
    as BlazeFace amplifies into a lost output): the C equals onnxruntime, on the host and in
    QEMU (the M4 SIMD32 and M55 Helium requantization)."""
    import onnxruntime as ort

    from edgec.runtimes.mcu_runner import MCURunner

    from .conftest import HAVE_QEMU, QEMU_SKIP

    proto = _qdq_conv(group)
    h = onnx_handle(proto)
    res, manifest = build_bundle(h, tmp_path / "b", cpu=cpu)
    assert "#define EDGEC_CONV_SINGLE_ROUNDING 1" in (tmp_path / "b/c/edgec_config.h").read_text()
    host = MCURunner(tmp_path / "b", manifest).load()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # QuantizeLinear's own rounding
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    same = total = 0
    for _ in range(4):
        feeds = {"x": rng.uniform(-1, 1, size=(1, 8, 10, 10)).astype(np.float32)}
        want, got = sess.run(None, feeds)[0], host.infer(feeds)["y"]
        same += int((np.rint(want / 0.003) == np.rint(got / 0.003)).sum())
        total += want.size
    assert same / total >= 0.995, f"{same}/{total} equal to onnxruntime"
    if not HAVE_QEMU:
        pytest.skip(QEMU_SKIP)
    qemu = MCURunner(tmp_path / "b", manifest, device="qemu").load()
    native = random_native(host.native_in, np.random.default_rng(0))
    want_native = host.run_native(native)
    for k, v in qemu.run_native(native).items():
        np.testing.assert_array_equal(v, want_native[k])


def _qdq_requant_concat():
    """x -> Q -> DQ, then the same data requantized to a scale 27x coarser (DQ -> Q), both
    concatenated into a third scale: BlazeFace-back's classifier head, whose Concat input
    scale is 0.037 of the output's (a right shift of 4 after the multiply)."""
    from onnx import TensorProto, helper, numpy_helper

    init = [numpy_helper.from_array(a, n) for a, n in [
        (np.float32(0.34652936), "xs"), (np.int8(119), "xz"), (np.float32(9.357094), "bs"), (np.int8(127), "bz"),
        (np.float32(9.366632), "ys"), (np.int8(127), "yz")]]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("QuantizeLinear", ["xd", "bs", "bz"], ["bq"], name="requant"),
             helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["bd"]),
             helper.make_node("Concat", ["xd", "bd"], ["yf"], axis=1, name="concat"),
             helper.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])], init)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_qdq_onnx_requantize_and_concat_round_once(tmp_path):
    """A Q/DQ ONNX model's Requantize and Concat rescaling round once, as QuantizeLinear does:
    on every int8 input value the C equals onnxruntime bit for bit (LiteRT's two roundings gave
    -1 for -0.481 LSB on 16 of BlazeFace-back's 896 classifier outputs)."""
    import onnxruntime as ort

    from edgec.runtimes.mcu_runner import MCURunner

    proto = _qdq_requant_concat()
    res, manifest = build_bundle(onnx_handle(proto), tmp_path / "b")
    kinds = [layer["op"] for layer in res.manifest["layers"]]
    assert "Concat" in kinds and any(k in ("QuantizeLinear", "requant") for k in kinds), kinds
    host = MCURunner(tmp_path / "b", manifest).load()
    (spec_in,), (spec_out,) = res.inputs, res.outputs
    xq = np.arange(-128, 128, dtype=np.int8).reshape(spec_in.shape)  # every int8 value once
    got = next(iter(host.run_native({spec_in.name: xq}).values()))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # QuantizeLinear's own rounding
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = (xq.astype(np.float32) - np.float32(119)) * np.float32(0.34652936)
    want = sess.run(None, {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
    want_q = (np.rint(want / np.float32(9.366632)) + 127).astype(np.int8).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(got.reshape(want_q.shape), want_q)
