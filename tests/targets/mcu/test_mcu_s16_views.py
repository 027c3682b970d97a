"""int16 tensors meeting views, pools and joins in a mixed 16x8 mcu graph (`ops/s16.retype`).

Regression: an int16 tensor behind Reshape/Transpose (views) or MaxPool on its way to an
int8 tensor once came out constant (the view kept the int16 source's scale, so the last
requantization was built for the wrong scale) or failed to build (MaxPool's input and output
parameters differed). Both graphs here run the C (host gcc) against onnxruntime on the same
promoted Q/DQ model, to 2 LSB of each output (the 16x8 kernels' fixed-point rounding), with
the graph outputs int8 (heads int8) and int16 (heads, views and Concat int16)."""

from __future__ import annotations

import numpy as np
from edgec.compiler.quality import exact_qdq_session
import pytest

from .conftest import build_bundle, edgec_qdq, onnx_handle, tflite_handle


def _heads_model(pool: bool = True):
    """BlazeFace's tail in miniature: a conv trunk, two 1x1 heads each Transposed (NHWC) and
    Reshaped to [1, anchors, k], joined by a Concat; the trunk MaxPooled and Flattened, and
    Flattened as it is. Nothing is computed after an int16 -> int8 rounding, so the C stays
    within a rounding or two of onnxruntime."""
    import io

    import onnx
    import torch
    from torch import nn

    class Heads(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.Conv2d(3, 8, 3, padding=1)
            self.a = nn.Conv2d(8, 4, 1)
            self.b = nn.Conv2d(8, 4, 1)
            with torch.no_grad():  # another range than head a: the Concat rescales both
                self.b.weight.mul_(3.0)

        def forward(self, x):
            y = torch.relu(self.trunk(x))
            ha = self.a(y).permute(0, 2, 3, 1).reshape(1, -1, 2)
            hb = self.b(y).permute(0, 2, 3, 1).reshape(1, -1, 2)
            pooled = nn.functional.max_pool2d(y, 2) if pool else y.permute(0, 2, 3, 1)
            return torch.cat([ha, hb], 1), pooled.flatten(1), y.flatten(1)

    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.onnx.export(Heads().eval(), torch.randn(1, 3, 8, 8), buf, input_names=["x"], output_names=["heads", "pooled", "trunk"],
                      opset_version=17, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("producers,pool", [(("Conv",), False), (("Conv",), True),
                                           (("Conv", "Transpose", "Reshape", "Flatten", "Concat"), True),
                                           (("Conv", "MaxPool", "Transpose", "Reshape", "Flatten", "Concat"), True)],
                         ids=["views-outputs-int8", "outputs-int8", "outputs-int16", "pool-int16"])
def test_int16_through_views_pool_and_concat_tracks_onnxruntime(tmp_path, producers, pool):
    """(views-outputs-int8: without the MaxPool, whose build error hid the views' collapse.)"""
    from edgec.runtimes.mcu_runner import MCURunner
    from edgec.targets.mcu import promote16

    rng = np.random.default_rng(0)
    calib = [{"x": rng.uniform(-2, 2, size=(1, 3, 8, 8)).astype(np.float32)} for _ in range(8)]
    _, qh = edgec_qdq(_heads_model(pool), calib)
    names = promote16.int16_tensors(qh.proto, frozenset(producers))
    promoted = onnx_handle(promote16.promote(qh.proto, names))
    res, manifest = build_bundle(promoted, tmp_path / "b")
    want_out = "int16" if "Concat" in producers else "int8"
    assert [s.dtype for s in res.outputs] == [want_out] * 3, res.outputs
    kinds = {layer["op"] for layer in res.manifest["layers"]}
    assert {"MaxPool" if pool else "Transpose", "Concat"} <= kinds and "s16.c" in res.manifest["kernels"], kinds
    if pool:  # an int16 input: the int16 MaxPool (its int8 output, if any, requantized after it)
        c_src = (tmp_path / "b" / "c" / "edgec_model.c").read_text()
        assert "edgec_maxpool_s16(" in c_src and "edgec_maxpool_s8(" not in c_src
    runner = MCURunner(tmp_path / "b", manifest).load()
    feeds = [{"x": rng.uniform(-2, 2, size=(1, 3, 8, 8)).astype(np.float32)} for _ in range(6)]
    got = [runner.infer(f) for f in feeds]
    for name in ("heads", "pooled", "trunk"):  # a collapsed (constant) output cannot stay within 1 LSB
        assert np.std(np.stack([g[name] for g in got])) > 0, name
    # Each output to 2 LSB (two roundings: the 16x8 conv's 16-bit multiplier, then the Concat's
    # rescale or a requantization) of the coarsest step on its way: the pooled path rounds to
    # the MaxPool's int8 step (a 1-LSB int16 difference can tip it). A wrong scale is far off.
    steps = {o.name: spec.scale for o, spec in zip(promoted.outputs, res.outputs)}
    if pool:
        steps["pooled"] = max(steps["pooled"], _pool_step(promoted.proto))
    sess = exact_qdq_session(promoted.proto)
    for f, g in zip(feeds, got):
        for o, w in zip(promoted.outputs, sess.run(None, f)):
            d = np.abs(np.asarray(g[o.name]).reshape(w.shape) - w) / steps[o.name]
            assert d.max() <= 2.01, f"{o.name}: {d.max():.1f} steps off onnxruntime"


def _pool_step(proto) -> float:
    """The scale of the QuantizeLinear after the MaxPool (its int8 output)."""
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    pool = next(n for n in proto.graph.node if n.op_type == "MaxPool")
    q = next(n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == pool.output[0])
    return float(init[q.input[1]])


def _two_stage_detector():
    """A BlazeFace in miniature: residual blocks at 32x32 and 16x16, a classifier and a
    regressor head at each resolution, each head Transposed and Reshaped, joined per kind."""
    import io

    import onnx
    import torch
    from torch import nn

    def block(c):
        return nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c), nn.Conv2d(c, c, 1))

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.b32 = nn.Conv2d(3, 8, 3, padding=1), block(8)
            self.down, self.b16 = nn.Conv2d(8, 16, 3, stride=2, padding=1), block(16)
            self.cls = nn.ModuleList([nn.Conv2d(8, 1, 1), nn.Conv2d(16, 1, 1)])
            self.reg = nn.ModuleList([nn.Conv2d(8, 4, 1), nn.Conv2d(16, 4, 1)])

        def forward(self, x):
            y32 = torch.relu(self.stem(x))
            y32 = torch.relu(y32 + self.b32(y32))
            y16 = torch.relu(self.down(y32))
            y16 = torch.relu(y16 + self.b16(y16))
            feats = (y32, y16)

            def heads(convs, k):
                return torch.cat([c(f).permute(0, 2, 3, 1).reshape(1, -1, k) for c, f in zip(convs, feats)], 1)

            return heads(self.reg, 4), heads(self.cls, 1)

    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.onnx.export(Detector().eval(), torch.randn(1, 3, 32, 32), buf, input_names=["x"],
                      output_names=["regressors", "classificators"], opset_version=17, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("device", ["host", pytest.param("qemu", marks=pytest.mark.qemu)])
def test_stream_and_heads_promotion_takes_the_longest_suffix_that_fits_the_ram(tmp_path, monkeypatch, device):
    """The "fit" rule: int16 from the first resolution stage whose plan fits --ram-budget on,
    heads and output Concats included (graph outputs int16); the C (host, and Cortex-M4 under
    QEMU) tracks onnxruntime."""
    from edgec.calibration.types import CalibrationData
    from edgec.runtimes.mcu_runner import MCURunner
    from edgec.targets.base import LowerSpec
    from edgec.targets.mcu import MCUTarget, planner, promote16
    from edgec.targets.mcu.build import load_graph, patch_and_fuse

    from .conftest import HAVE_QEMU, QEMU_SKIP

    if device == "qemu" and not HAVE_QEMU:
        pytest.skip(QEMU_SKIP)
    monkeypatch.setattr(promote16, "BAR", 1.01)
    rng = np.random.default_rng(0)
    calib = [{"x": rng.uniform(-2, 2, size=(1, 3, 32, 32)).astype(np.float32)} for _ in range(8)]
    fh, qh = edgec_qdq(_two_stage_detector(), calib)
    names = promote16.int16_tensors(qh.proto, promote16.PROMOTIONS[1][1])
    suffixes = promote16.stages(qh.proto, names)
    assert [len(s) for s in suffixes] == [len(names), 11], suffixes  # the 32x32 stage on; the 16x16 stage on

    def arena(names16):
        g, _ = patch_and_fuse(load_graph(qh, promote16.promote(qh.proto, names16)), {"patch_inference": "off"}, True)
        return planner.plan(g, io_in_arena=True).arena_bytes

    budget = arena(names) - 1  # the whole int16 graph misses by a byte
    assert arena(suffixes[1]) <= budget
    out = tmp_path / "b"
    out.mkdir()
    spec = LowerSpec("int8", fh, quant_model=qh, calibration=CalibrationData(calib, "test"),
                     options={"cpu": "cortex-m4", "ram_budget": budget, "patch_inference": "off"})
    res = MCUTarget().lower(qh, spec, out)
    info = res.manifest["int16"]
    assert info.get("chosen") == "stream+heads" and info["rules"][-1]["from_resolution"] == 16 * 16, info
    assert info["rules"][-1]["tensors"] == len(suffixes[1]) and len(info["tensors"]) >= len(suffixes[1])
    assert res.report["arena_bytes"] <= budget and [s.dtype for s in res.outputs] == ["int16", "int16"]
    manifest = {"artifact": {"path": res.model_artifact.path}, "runner": "mcu", "target": "mcu",
                "model_inputs": [s.to_json() for s in qh.inputs], "model_outputs": [s.to_json() for s in qh.outputs],
                "inputs": [s.to_json() for s in res.inputs], "outputs": [s.to_json() for s in res.outputs],
                "target_info": res.manifest}
    runner = MCURunner(out, manifest, device=device).load()
    promoted = promote16.replay(qh.proto, info)
    sess = exact_qdq_session(promoted)
    for _ in range(4 if device == "host" else 1):
        f = {"x": rng.uniform(-2, 2, size=(1, 3, 32, 32)).astype(np.float32)}
        got = runner.infer(f)
        for o, spec_out, w in zip(qh.outputs, res.outputs, sess.run(None, f)):
            d = np.abs(got[o.name].reshape(w.shape) - w) / spec_out.scale
            # int16 LSBs: the int8 32x32 stage's 1-LSB flips grow to a few int16 steps past the boundary
            assert d.max() <= 64 and np.median(d) <= 2, (o.name, d.max(), np.median(d))
    if device == "qemu":
        assert runner.info()["extra"]["matches_host"] is True


@pytest.mark.parametrize("op,src,dst", [("QUANTIZE", ("float32", 1.0, 0), ("int16", 0.0071, 0)),
                                        ("DEQUANTIZE", ("int16", 0.0003, 0), ("float32", 1.0, 0))])
def test_float_io_of_int16_tensors_bitexact(tmp_path, op, src, dst):
    """A 16x8 .tflite's float inputs and outputs: QUANTIZE float -> int16 and DEQUANTIZE
    int16 -> float run their int16 kernels (float_io.c), bit for bit with LiteRT."""
    from .test_mcu_s16 import _check
    from .tflite_ops import T, single_op

    shape = (1, 3, 4, 5)
    t_src = T(shape, src[0], None if src[0] == "float32" else [src[1]], None if src[0] == "float32" else [src[2]])
    t_dst = T(shape, dst[0], None if dst[0] == "float32" else [dst[1]], None if dst[0] == "float32" else [dst[2]])
    manifest = _check(single_op(op, [t_src], [t_dst]), tmp_path)
    assert manifest["kernels"] == ["float_io.c"]


def _qdq_int16_concat():
    """x (int16) and x requantized to int8, concatenated into a third int16 scale: the int16
    Concat rescales both inputs, the int8 one after its exact int8 -> int16 step (opset 21)."""
    from onnx import TensorProto, helper, numpy_helper

    init = [numpy_helper.from_array(a, n) for a, n in [
        (np.float32(0.00031), "xs"), (np.float32(0.08371), "bs"), (np.int8(3), "bz"), (np.float32(0.00093), "ys"),
        (np.int16(0), "z")]]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "z"], ["xd"]),
             helper.make_node("QuantizeLinear", ["xd", "bs", "bz"], ["bq"], name="requant"),
             helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["bd"]),
             helper.make_node("Concat", ["xd", "bd"], ["yf"], axis=1, name="concat"),
             helper.make_node("QuantizeLinear", ["yf", "ys", "z"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "z"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4096, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8192, 16])], init)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def test_qdq_int16_requantize_and_concat_bitexact(tmp_path):
    """The int16 Concat's rescale and the int16 -> int8 requantization round once, as
    onnxruntime's QuantizeLinear: on every int16 input value the C equals onnxruntime bit for bit (the
    scales are not whole multiples: exact ties round half up in the C, half to even in onnxruntime)."""
    import onnxruntime as ort

    from edgec.runtimes.mcu_runner import MCURunner

    proto = _qdq_int16_concat()
    res, manifest = build_bundle(onnx_handle(proto), tmp_path / "b")
    assert res.manifest["kernels"] == ["s16.c", "shape.c"] and res.outputs[0].dtype == "int16"
    host = MCURunner(tmp_path / "b", manifest).load()
    (spec_in,), (spec_out,) = res.inputs, res.outputs
    xq = np.arange(-32768, 32768, dtype=np.int16).reshape(spec_in.shape)  # every int16 value once
    got = next(iter(host.run_native({spec_in.name: xq}).values()))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # QuantizeLinear's own rounding
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": xq.astype(np.float32) * np.float32(0.00031)})[0]
    want_q = np.rint(want / np.float32(0.00093)).astype(np.int16)
    np.testing.assert_array_equal(got.reshape(want_q.shape), want_q)


def test_tflite_int16_concatenation_reshape_transpose_bitexact(tmp_path):
    """A 16x8 .tflite's CONCATENATION, RESHAPE and TRANSPOSE in int16, bit for bit with LiteRT's
    reference kernels; a CONCATENATION whose int16 inputs are quantized unlike its output
    (LiteRT copies them unscaled) is one clear error."""
    from edgec.errors import UnsupportedOpError

    from .test_mcu_s16 import _check
    from .tflite_ops import T, single_op

    def concat(scales):
        a, b, out = (T((1, 3, 4, c), "int16", [s], [0]) for c, s in zip((2, 5, 7), scales))
        return single_op("CONCATENATION", [a, b], [out], ("ConcatenationOptions", {"axis": 3}))

    _check(concat((0.0004, 0.0004, 0.0004)), tmp_path / "c")
    shape = T((2,), "int32", data=np.array([3, 20], np.int32))
    _check(single_op("RESHAPE", [T((1, 3, 4, 5), "int16", [0.0004], [0]), shape],
                     [T((3, 20), "int16", [0.0004], [0])]), tmp_path / "r")
    perm = T((4,), "int32", data=np.array([0, 2, 3, 1], np.int32))
    _check(single_op("TRANSPOSE", [T((1, 3, 4, 5), "int16", [0.0004], [0]), perm],
                     [T((1, 4, 5, 3), "int16", [0.0004], [0])]), tmp_path / "t")
    with pytest.raises(UnsupportedOpError, match="copies them unscaled"):
        build_bundle(tflite_handle(concat((0.0003, 0.0007, 0.0005))), tmp_path / "x")
