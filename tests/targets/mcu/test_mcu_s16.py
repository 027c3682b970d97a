"""int16 (16x8) kernels (kernels/s16.c, ops/s16.py), TFLM ``<op>_test.cc`` style: one op with
chosen tensors, scales and weights in a hand-written .tflite, lowered to C by the mcu target,
compiled with gcc and run on the host, bit for bit against LiteRT's reference kernels
(BUILTIN_REF) in 16x8 mode. HardSwish has no int16 kernel in LiteRT (it rejects INT16), so
its int16 op is checked on an int16 Q/DQ ONNX against the float formula and onnxruntime."""

from __future__ import annotations

import numpy as np
from edgec.compiler.quality import exact_qdq_session
import pytest

from .conftest import build_bundle, tflite_handle
from .tflite_ops import T, run_reference, single_op

SAMPLES = 6


def _check(data: bytes, tmp_path, seed: int = 0, lo: int = -32768, hi: int = 32768, device: str = "host") -> dict:
    """The bundle's host build (or Cortex-M4 build under QEMU) == LiteRT BUILTIN_REF on random
    inputs; returns the manifest."""
    from edgec.runtimes.mcu_runner import MCURunner

    res, manifest = build_bundle(tflite_handle(data), tmp_path / "bundle")
    runner = MCURunner(tmp_path / "bundle", manifest, device=device).load()
    rng = np.random.default_rng(seed)
    for _ in range(SAMPLES if device == "host" else 2):
        feeds = {s.name: (rng.integers(lo, hi, size=[int(d) for d in s.shape]) if s.dtype == "int16" else
                          rng.integers(-128, 128, size=[int(d) for d in s.shape])).astype(s.dtype)
                 for s in runner.native_in}
        want = run_reference(data, list(feeds.values()))
        got = runner.run_native(feeds)
        for w, s in zip(want, runner.native_out):
            np.testing.assert_array_equal(got[s.name].reshape(w.shape), w)
    return res.manifest


def _conv_tensors(rng, in_c, out_c, k, depthwise, bias_dtype="int64"):
    # int64 bias: LiteRT 2.3's reference 16x8 conv reads an int32 bias as int64 (garbage past half).
    w_shape = (1, k, k, out_c) if depthwise else (out_c, k, k, in_c)
    w = rng.integers(-127, 128, size=w_shape).astype(np.int8)
    ws = rng.uniform(0.002, 0.02, size=out_c).astype(np.float32)
    s_in = np.float32(0.0004)
    b = rng.integers(-2_000_000, 2_000_000, size=out_c).astype(bias_dtype)
    return (T(w_shape, "int8", ws, [0] * out_c, w, 3 if depthwise else 0),
            T((out_c,), bias_dtype, ws * s_in, [0] * out_c, b), s_in)


# in_c 40 at 3x3: 360 taps, over the stack column (EDGEC_S16_COL): the direct loop.
@pytest.mark.parametrize("k,stride,padding,act,in_c", [(3, 1, 0, 0, 5), (3, 2, 0, 3, 5), (1, 1, 1, 1, 5),
                                                       (5, 2, 1, 0, 5), (3, 1, 0, 0, 40)])
def test_conv_16x8_bitexact(tmp_path, k, stride, padding, act, in_c):
    rng = np.random.default_rng(k + stride)
    out_c, h = 6, 9
    w, b, s_in = _conv_tensors(rng, in_c, out_c, k, False)
    out_h = (h + stride - 1) // stride if padding == 0 else (h - k) // stride + 1
    data = single_op("CONV_2D", [T((1, h, h, in_c), "int16", [s_in], [0]), w, b],
                     [T((1, out_h, out_h, out_c), "int16", [0.0009], [0])],
                     ("Conv2DOptions", {"padding": padding, "strideW": stride, "strideH": stride,
                                        "fusedActivationFunction": act}))
    manifest = _check(data, tmp_path)
    assert "s16.c" in manifest["kernels"] and "conv.c" not in manifest["kernels"]


@pytest.mark.qemu
@pytest.mark.parametrize("in_c", [5, 12, 40])
def test_conv_16x8_bitexact_on_cortex_m4(tmp_path, in_c):
    """The SMLAD dot product of SIMD32 CPUs (4 channels a step, then the tail) under QEMU."""
    from .conftest import HAVE_QEMU, QEMU_SKIP

    if not HAVE_QEMU:
        pytest.skip(QEMU_SKIP)
    rng = np.random.default_rng(in_c)
    w, b, s_in = _conv_tensors(rng, in_c, 6, 3, False)
    data = single_op("CONV_2D", [T((1, 6, 6, in_c), "int16", [s_in], [0]), w, b],
                     [T((1, 6, 6, 6), "int16", [0.0009], [0])],
                     ("Conv2DOptions", {"padding": 0, "strideW": 1, "strideH": 1}))
    _check(data, tmp_path, device="qemu")


@pytest.mark.parametrize("k,stride,mult,in_c", [(3, 1, 1, 4), (3, 2, 1, 4), (5, 1, 2, 4), (3, 1, 1, 40)])
def test_depthwise_16x8_bitexact(tmp_path, k, stride, mult, in_c):
    rng = np.random.default_rng(10 + k)
    h = 8
    w, b, s_in = _conv_tensors(rng, in_c, in_c * mult, k, True)
    out_h = (h + stride - 1) // stride
    data = single_op("DEPTHWISE_CONV_2D", [T((1, h, h, in_c), "int16", [s_in], [0]), w, b],
                     [T((1, out_h, out_h, in_c * mult), "int16", [0.0011], [0])],
                     ("DepthwiseConv2DOptions", {"padding": 0, "strideW": stride, "strideH": stride,
                                                 "depthMultiplier": mult}))
    _check(data, tmp_path)


@pytest.mark.qemu
@pytest.mark.parametrize("in_c", [4, 10])
def test_depthwise_16x8_bitexact_on_cortex_m4(tmp_path, in_c):
    """The halfword MACs (SMLABB/SMLATB/SMLABT/SMLATT) of SIMD32 CPUs, 4 channels a step and
    the tail, under QEMU."""
    from .conftest import HAVE_QEMU, QEMU_SKIP

    if not HAVE_QEMU:
        pytest.skip(QEMU_SKIP)
    rng = np.random.default_rng(20 + in_c)
    w, b, s_in = _conv_tensors(rng, in_c, in_c, 3, True)
    data = single_op("DEPTHWISE_CONV_2D", [T((1, 6, 6, in_c), "int16", [s_in], [0]), w, b],
                     [T((1, 6, 6, in_c), "int16", [0.0011], [0])],
                     ("DepthwiseConv2DOptions", {"padding": 0, "strideW": 1, "strideH": 1, "depthMultiplier": 1}))
    _check(data, tmp_path, device="qemu")


# 20 channels: a chunk of 16 and a tail; SAME padding (windows past the edges) and VALID.
@pytest.mark.parametrize("k,stride,padding,act", [(2, 2, 1, 0), (3, 2, 0, 1), (3, 1, 0, 0)])
def test_maxpool_16x8_bitexact(tmp_path, k, stride, padding, act):
    h, c = 7, 20
    out_h = (h + stride - 1) // stride if padding == 0 else (h - k) // stride + 1
    data = single_op("MAX_POOL_2D", [T((1, h, h, c), "int16", [0.0005], [0])],
                     [T((1, out_h, out_h, c), "int16", [0.0005], [0])],
                     ("Pool2DOptions", {"padding": padding, "strideW": stride, "strideH": stride, "filterWidth": k,
                                        "filterHeight": k, "fusedActivationFunction": act}))
    manifest = _check(data, tmp_path)
    assert manifest["kernels"] == ["s16.c"]


@pytest.mark.parametrize("op,value", [("PAD", None), ("PADV2", -1234)])
def test_pad_16x8_bitexact(tmp_path, op, value):
    """Rows, columns and channels padded (BlazeFace pads its residual shortcuts' channels)."""
    pads = T((4, 2), "int32", data=np.array([[0, 0], [1, 2], [0, 1], [0, 3]], np.int32))
    ins = [T((1, 4, 5, 6), "int16", [0.0005], [0]), pads]
    if value is not None:
        ins.append(T((1,), "int16", [0.0005], [0], np.array([value], np.int16)))
    data = single_op(op, ins, [T((1, 7, 6, 9), "int16", [0.0005], [0])])
    manifest = _check(data, tmp_path)
    assert manifest["kernels"] == ["s16.c"]


@pytest.mark.parametrize("scales", [(0.0003, 0.0005, 0.0006), (0.0007, 0.0001, 0.0004)])
def test_add_16x8_bitexact(tmp_path, scales):
    shape = (1, 4, 5, 6)
    data = single_op("ADD", [T(shape, "int16", [scales[0]], [0]), T(shape, "int16", [scales[1]], [0])],
                     [T(shape, "int16", [scales[2]], [0])], ("AddOptions", {"potScaleInt16": False}))
    _check(data, tmp_path)


@pytest.mark.parametrize("src,dst", [(("int8", 0.03, 5), ("int16", 0.0002, 0)),
                                     (("int8", 0.01, -128), ("int16", 0.00004, 0)),
                                     (("int16", 0.0002, 0), ("int8", 0.03, 5)),
                                     (("int16", 0.00005, 0), ("int8", 0.008, -3))])
def test_quantize_s8_s16_bitexact(tmp_path, src, dst):
    shape = (1, 3, 4, 5)
    data = single_op("QUANTIZE", [T(shape, src[0], [src[1]], [src[2]])], [T(shape, dst[0], [dst[1]], [dst[2]])])
    manifest = _check(data, tmp_path)
    assert manifest["kernels"] == ["s16.c"]


def test_int16_op_without_kernel_is_one_clear_error(tmp_path):
    from edgec.errors import UnsupportedOpError

    data = single_op("MUL", [T((1, 4), "int16", [0.001], [0]), T((1, 4), "int16", [0.001], [0])],
                     [T((1, 4), "int16", [0.001], [0])], ("MulOptions", {}))
    with pytest.raises(UnsupportedOpError, match="int16 \\(16x8\\) for ADD, CONCATENATION, CONV_2D"):
        build_bundle(tflite_handle(data), tmp_path / "b")


def _hardswish_qdq(s_in: float, s_out: float):
    """DQ(int16) -> HardSwish -> Q(int16), opset 21 (int16 Q/DQ)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("si", s_in), ("so", s_out))]
    inits.append(numpy_helper.from_array(np.array(0, np.int16), "z"))
    nodes = [helper.make_node("QuantizeLinear", ["x", "si", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "si", "z"], ["xf"]),
             helper.make_node("HardSwish", ["xf"], ["yf"]),
             helper.make_node("QuantizeLinear", ["yf", "so", "z"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "z"], ["y"])]
    g = helper.make_graph(nodes, "hswish16", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4096])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4096])], inits)
    return onnx.helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


@pytest.mark.parametrize("s_in,s_out", [(8.0 / 32767, 8.0 / 32767), (0.0002, 0.00013), (0.001, 0.0004)])
def test_hardswish_s16_within_one_lsb_of_float(tmp_path, s_in, s_out):
    from edgec.runtimes.mcu_runner import MCURunner

    from .conftest import onnx_handle

    proto = _hardswish_qdq(s_in, s_out)
    res, manifest = build_bundle(onnx_handle(proto), tmp_path / "bundle")
    assert res.manifest["kernels"] == ["s16.c"]
    runner = MCURunner(tmp_path / "bundle", manifest).load()
    x = np.arange(-32768, 32768, 16, dtype=np.int16).reshape(1, 4096)
    got = next(iter(runner.run_native({runner.native_in[0].name: x}).values())).reshape(-1).astype(np.int64)
    xf = x.reshape(-1).astype(np.float64) * np.float32(s_in)
    exact = np.clip(np.round(xf * np.clip(xf + 3, 0, 6) / 6 / np.float32(s_out)), -32768, 32767)
    assert np.abs(got - exact).max() <= 1
    assert np.mean(got == exact) > 0.99
    sess = exact_qdq_session(proto)
    ref = sess.run(None, {"x": xf.astype(np.float32).reshape(1, -1)})[0].reshape(-1) / np.float32(s_out)
    assert np.abs(got - np.round(ref)).max() <= 1


def _conv_hardswish_model():
    import io

    import onnx
    import torch
    from torch import nn

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Hardswish(),
                      nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Hardswish(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 32))
    buf = io.BytesIO()
    torch.onnx.export(m.eval(), torch.randn(1, 3, 16, 16), buf, input_names=["x"], opset_version=17, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("device", ["host", pytest.param("qemu", marks=pytest.mark.qemu)])
def test_mixed_int16_graph_promoted_and_run(tmp_path, monkeypatch, device):
    """With the bar raised past any int8 score, the mcu build promotes the conv and HardSwish
    outputs to int16: the manifest lists them, the C (host, and Cortex-M4 under QEMU) agrees
    with onnxruntime on the promoted Q/DQ model to 1 LSB of the int8 output."""
    from edgec.calibration.types import CalibrationData
    from edgec.runtimes.mcu_runner import MCURunner
    from edgec.targets.base import LowerSpec
    from edgec.targets.mcu import MCUTarget, promote16

    from .conftest import HAVE_QEMU, QEMU_SKIP, edgec_qdq, lsb_agreement

    if device == "qemu" and not HAVE_QEMU:
        pytest.skip(QEMU_SKIP)
    monkeypatch.setattr(promote16, "BAR", 1.01)
    rng = np.random.default_rng(0)
    calib = [{"x": rng.uniform(-2, 2, size=(1, 3, 16, 16)).astype(np.float32)} for _ in range(8)]
    fh, qh = edgec_qdq(_conv_hardswish_model(), calib)
    out = tmp_path / "b"
    out.mkdir()
    spec = LowerSpec("int8", fh, quant_model=qh, calibration=CalibrationData(calib, "test"),
                     options={"cpu": "cortex-m4", "ram_budget": 64 * 1024})
    res = MCUTarget().lower(qh, spec, out)
    info = res.manifest["int16"]
    assert info.get("chosen") == "conv+hardswish" and info["rules"][0]["tensors"] == 4, info
    assert "s16.c" in res.manifest["kernels"] and len(info["tensors"]) >= 4
    manifest = {"artifact": {"path": res.model_artifact.path}, "runner": "mcu", "target": "mcu",
                "model_inputs": [s.to_json() for s in qh.inputs], "model_outputs": [s.to_json() for s in qh.outputs],
                "inputs": [s.to_json() for s in res.inputs], "outputs": [s.to_json() for s in res.outputs],
                "target_info": res.manifest}
    runner = MCURunner(out, manifest, device=device).load()
    n = 2 if device == "qemu" else 8
    feeds = [{"x": rng.uniform(-2, 2, size=(1, 3, 16, 16)).astype(np.float32)} for _ in range(n)]
    promoted = promote16.promote(qh.proto, promote16.int16_tensors(qh.proto, frozenset({"Conv", "HardSwish"})))
    within, total, worst = lsb_agreement(promoted, qh, [runner.infer(f) for f in feeds], feeds, res.outputs)
    assert worst <= 1, f"{within}/{total} within 1 LSB, worst {worst}"
    if device == "qemu":
        assert runner.info()["extra"]["matches_host"] is True
