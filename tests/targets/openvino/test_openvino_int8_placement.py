"""intel-cpu int8 placement: the ops OpenVINO's CPU plugin can run on int8 data get quantized inputs.

A small CNN with the blocks of a real detector (residual Add, squeeze-excite gate, FPN upsample
+ Add, Concat, a decomposed HardSwish) is built for intel-cpu int8; OpenVINO's runtime model
(`get_runtime_model`) must then execute the residual Add, the SE Mul, the pool, Interpolate and
Concat in int8, while the HardSwish stays one fused op, and the result must stay close to float.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec import api
from edgec.compiler.config import BuildConfig
from tests.targets.openvino.ov_runtime import model_folder

pytest.importorskip("openvino", reason="the intel-cpu target needs openvino (pip install 'edgec[openvino]')")

INT8 = ("u8", "i8")


def _detector_blocks() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits: list[onnx.TensorProto] = []

    def w(name, *shape, scale=0.3):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def c(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    conv = lambda x, wn, y, k=3, **kw: helper.make_node(  # noqa: E731
        "Conv", [x, wn, w(wn + "_b", int(dict((i.name, i) for i in inits)[wn].dims[0]), scale=0.1)], [y], name=y,
        pads=[k // 2] * 4, **kw)
    nodes = [
        conv("x", w("w1", 16, 3, 3, 3), "c1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        conv("r1", w("w2", 16, 16, 3, 3, scale=0.1), "c2"),
        helper.make_node("Add", ["c2", "r1"], ["res"], name="residual_add"),
        # squeeze-excite: x * HardSigmoid(Conv(Relu(Conv(GAP(x)))))
        helper.make_node("GlobalAveragePool", ["res"], ["gap"], name="se_pool"),
        conv("gap", w("wse1", 4, 16, 1, 1), "se1", k=1),
        helper.make_node("Relu", ["se1"], ["se1r"], name="se_relu"),
        conv("se1r", w("wse2", 16, 4, 1, 1), "se2", k=1),
        helper.make_node("HardSigmoid", ["se2"], ["gate"], name="se_gate", alpha=0.2, beta=0.5),
        helper.make_node("Mul", ["res", "gate"], ["se"], name="se_mul"),
        # decomposed HardSwish: x * Clip(x + 3, 0, 6) / 6 (OpenVINO fuses it into one HSwish)
        helper.make_node("Add", ["se", c("three", 3.0)], ["hs_a"], name="hs_add"),
        helper.make_node("Clip", ["hs_a", c("zero", 0.0), c("six", 6.0)], ["hs_c"], name="hs_clip"),
        helper.make_node("Mul", ["se", "hs_c"], ["hs_m"], name="hs_mul"),
        helper.make_node("Div", ["hs_m", c("six_d", 6.0)], ["hs"], name="hs_div"),
        # FPN: a stride-2 branch upsampled and added back, then both concatenated
        conv("hs", w("w3", 16, 16, 3, 3, scale=0.1), "down", strides=[2, 2]),
        helper.make_node("Resize", ["down", "", c("scales", [1, 1, 2, 2])], ["up"], name="upsample", mode="nearest"),
        conv("hs", w("w4", 16, 16, 1, 1), "lat", k=1),
        helper.make_node("Add", ["lat", "up"], ["fpn"], name="fpn_add"),
        helper.make_node("Concat", ["fpn", "up"], ["cat"], name="concat", axis=1),
        conv("cat", w("w5", 4, 32, 3, 3, scale=0.1), "y"),
    ]
    graph = helper.make_graph(nodes, "blocks", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = model_folder(tmp_path_factory.mktemp("ovplace"), _detector_blocks(), (3, 16, 16))
    res = api.build(BuildConfig(model=str(d / "m.onnx"), output=d / "b", target="intel-cpu", precision="int8",
                                calib=str(d / "calib.npz")))
    return res


def _runtime_layers(bundle):
    import openvino as ov

    compiled = ov.Core().compile_model(str(bundle / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    out = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        out.append((info["layerType"].astype(str), info["runtimePrecision"].astype(str),
                    info["originalLayersNames"].astype(str).split(",")))
    return out


def _precision_of(layers, onnx_node: str) -> tuple[str, str]:
    found = [(t, p) for t, p, names in layers if onnx_node in names]
    assert found, f"{onnx_node} is not in OpenVINO's runtime model"
    return found[0]


@pytest.mark.parametrize("node", ["residual_add", "se_pool", "se_mul", "upsample", "fpn_add", "concat"])
def test_detector_block_runs_in_int8_in_the_cpu_plugin(built, node):
    layer, precision = _precision_of(_runtime_layers(built.bundle), node)
    assert precision in INT8, f"{node} runs as {layer} in {precision}: a float island between int8 convolutions"


def test_decomposed_hardswish_keeps_its_fusion_and_stays_close_to_float(built):
    names = [n for _, _, names in _runtime_layers(built.bundle) for n in names]
    # OpenVINO fused x * Clip(x + 3, 0, 6) / 6 into one HSwish: no Q/DQ was put between its parts.
    assert any(n.startswith("HSwish") for n in names) and "hs_mul" not in names, names
    acc = built.report["accuracy"]
    assert acc["cosine"] > 0.995, acc
