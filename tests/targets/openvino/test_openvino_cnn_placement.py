"""intel-cpu int8 placement on a ResNet-style CNN: OpenVINO's runtime model (`get_runtime_model`) must run
the stem MaxPool and the residual Adds on int8 data, as NNCF's placement does.

The stem MaxPool feeds both the first block's Conv and its residual Add: its Q/DQ pair moves above it for
both readers (else an f32 pool and a requantize: resnet18 ran 3 f32 kernels vs NNCF's 1). The deep-residual
recipe is measured, not assumed: a stream that holds without it keeps the target's plain scheme; either way
the residual Adds run on int8 data.
Precisions are counted, nothing is timed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec import api
from edgec.compiler.config import BuildConfig
from tests.targets.openvino.ov_runtime import model_folder, runtime_precision

pytest.importorskip("openvino", reason="the intel-cpu target needs openvino (pip install 'edgec[openvino]')")

INT8 = ("u8", "i8")


def _resnet_blocks() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits: list[onnx.TensorProto] = []

    def conv(x, y, cin, cout, k=3, scale=0.2):
        inits.append(numpy_helper.from_array((rng.standard_normal((cout, cin, k, k)) * scale).astype(np.float32),
                                             f"{y}_w"))
        inits.append(numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), f"{y}_b"))
        return helper.make_node("Conv", [x, f"{y}_w", f"{y}_b"], [y], name=y, pads=[k // 2] * 4)

    nodes = [conv("x", "stem", 3, 16), helper.make_node("Relu", ["stem"], ["stem_r"], name="stem_relu"),
             helper.make_node("MaxPool", ["stem_r"], ["pool"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1])]
    x = "pool"
    for b in (1, 2):
        nodes += [conv(x, f"b{b}c1", 16, 16), helper.make_node("Relu", [f"b{b}c1"], [f"b{b}r1"], name=f"b{b}relu1"),
                  conv(f"b{b}r1", f"b{b}c2", 16, 16, scale=0.1),
                  helper.make_node("Add", [f"b{b}c2", x], [f"b{b}sum"], name=f"add{b}"),
                  helper.make_node("Relu", [f"b{b}sum"], [f"b{b}out"], name=f"b{b}relu2")]
        x = f"b{b}out"
    inits.append(numpy_helper.from_array((rng.standard_normal((10, 16)) * 0.3).astype(np.float32), "fc_w"))
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
              helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "fc_w"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "resnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return model_folder(tmp_path_factory.mktemp("ovresnet"), _resnet_blocks(), (3, 32, 32))


def _build(d, out):
    return api.build(BuildConfig(model=str(d / "m.onnx"), output=d / out, target="intel-cpu", precision="int8",
                                 calib=str(d / "calib.npz"), force=True))


def test_stem_maxpool_read_by_a_conv_and_a_residual_add_runs_in_int8(model_dir):
    res = _build(model_dir, "plain")
    precision = runtime_precision(res.bundle)
    for node in ("pool", "add1", "add2"):
        assert precision.get(node) in INT8, (node, precision.get(node))
    assert res.report["accuracy"]["cosine"] > 0.995, res.report["accuracy"]


def test_deep_residual_recipe_applies_only_where_the_stream_needs_it(model_dir, monkeypatch):
    from edgec.targets.openvino import OpenVINOTarget

    base = OpenVINOTarget.quant_scheme
    assert base.deep_residual_cosine is not None
    for bar, applied in ((base.deep_residual_cosine, False), (1.01, True)):  # 1.01: a bar no int8 model reaches
        monkeypatch.setattr(OpenVINOTarget, "quant_scheme",
                            dataclasses.replace(base, deep_residual_adds=2, deep_residual_cosine=bar))
        res = _build(model_dir, f"deep-{applied}")
        passes = {p["name"]: p["config"] for p in res.manifest["passes"]}
        recipe = passes["deep-residual-recipe"]
        assert recipe["residual_adds"] == 2 and recipe["worst_cosine_without"] >= 0.995, recipe
        assert recipe.get("applied", True) is applied and not passes["quantize"]["scheme"]["float_residual_adds"]
        assert recipe["calib_method"] == "minmax", recipe
        precision = runtime_precision(res.bundle)
        assert precision.get("add1") in INT8, precision.get("add1")  # int8 Adds either way (as fast as NNCF's)


def test_a_layout_op_read_by_two_convs_keeps_its_pair_below_it():
    """Only MaxPool/Pad outputs move their readers' pair above them: a channel shuffle's Transpose read by two
    convs keeps it (above, it reached the Concat, whose parts then shared one scale)."""
    from edgec.calibration import collect_ranges
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.quantize import quantize_qdq
    from edgec.targets.openvino import OpenVINOTarget

    rng = np.random.default_rng(2)
    w = {k: numpy_helper.from_array((rng.standard_normal((4, 4, 1, 1)) * s).astype(np.float32), k)
         for k, s in (("wa", 1.0), ("wb", 0.01), ("w1", 0.5), ("w2", 0.5))}
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="ca"),
             helper.make_node("Conv", ["x", "wb"], ["b"], name="cb"),
             helper.make_node("Concat", ["a", "b"], ["cat"], name="cat", axis=1),
             helper.make_node("Transpose", ["cat"], ["t"], name="shuffle", perm=[0, 1, 3, 2]),
             helper.make_node("Conv", ["t", "w1"], ["y1"], name="c1", group=2),
             helper.make_node("Conv", ["t", "w2"], ["y2"], name="c2", group=2)]
    graph = helper.make_graph(nodes, "shuffle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, 4, 6, 6]) for y in ("y1", "y2")],
                              list(w.values()))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    samples = [{"x": rng.standard_normal((1, 4, 6, 6)).astype(np.float32)} for _ in range(4)]
    q, _ = quantize_qdq(ModelHandle.from_onnx(proto, "m.onnx", "0" * 64), collect_ranges(proto, samples),
                        OpenVINOTarget.quant_scheme)
    quantized = {n.input[0] for n in q.proto.graph.node if n.op_type == "QuantizeLinear"}
    assert "t" in quantized and not {"a", "b", "cat"} & quantized, quantized
