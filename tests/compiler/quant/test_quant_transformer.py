"""Transformers behind a conv stem on intel-cpu (`QuantScheme.transformer_overrides`): the residual
stream of a ViT-style model (patch-embedding Conv, attention blocks with LayerNorm) stays float,
although `in_conv_network` finds the stem's Conv up the chain of residual Adds. Real onnxruntime
runs of a two-block ViT with an outlier stream channel, as trained ViTs have."""

from __future__ import annotations

import numpy as np

from edgec.runtimes.metrics import cosine

from ._quant_util import run_first_output

DIM, TOKENS = 16, 4


def _vit(blocks: int = 2):
    """x [1, 3, 8, 8] -> 4x4 patch Conv (channel 0 x40: an outlier stream channel) -> tokens [1, 4, 16]
    -> ``blocks`` x (x + Wo(softmax(q kT) v) on LN(x); x + W2 relu(W1 LN(x))) -> LN."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def const(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a, np.float32), name))
        return name

    w = rng.normal(0, 0.3, (DIM, 3, 4, 4))
    w[0] *= 40.0
    nodes.append(helper.make_node("Conv", ["x", const("stem_w", w)], ["stem"], strides=[4, 4], name="stem"))
    inits.append(numpy_helper.from_array(np.array([1, DIM, TOKENS], np.int64), "tok_shape"))
    nodes += [helper.make_node("Reshape", ["stem", "tok_shape"], ["tok"], name="tok"),
              helper.make_node("Transpose", ["tok"], ["s0"], perm=[0, 2, 1], name="tokT")]
    const("ln_g", np.ones(DIM))
    const("ln_b", np.zeros(DIM))
    s = "s0"

    def mm(a, w_name, out):
        nodes.append(helper.make_node("MatMul", [a, const(w_name, rng.normal(0, DIM ** -0.5, (DIM, DIM)))], [out],
                                      name=out))
        return out

    for b in range(blocks):
        p = f"b{b}_"
        nodes.append(helper.make_node("LayerNormalization", [s, "ln_g", "ln_b"], [p + "h"], axis=-1, name=p + "ln1"))
        q, k, v = (mm(p + "h", p + c + "_w", p + c) for c in "qkv")
        nodes += [helper.make_node("Transpose", [k], [p + "kT"], perm=[0, 2, 1], name=p + "kT"),
                  helper.make_node("MatMul", [q, p + "kT"], [p + "qk"], name=p + "qk"),
                  helper.make_node("Softmax", [p + "qk"], [p + "att"], axis=-1, name=p + "softmax"),
                  helper.make_node("MatMul", [p + "att", v], [p + "av"], name=p + "av")]
        nodes.append(helper.make_node("Add", [s, mm(p + "av", p + "o_w", p + "o")], [p + "s1"], name=p + "add1"))
        nodes.append(helper.make_node("LayerNormalization", [p + "s1", "ln_g", "ln_b"], [p + "h2"], axis=-1,
                                      name=p + "ln2"))
        nodes.append(helper.make_node("Relu", [mm(p + "h2", p + "f1_w", p + "f1")], [p + "r"], name=p + "relu"))
        nodes.append(helper.make_node("Add", [p + "s1", mm(p + "r", p + "f2_w", p + "f2")], [p + "s2"],
                                      name=p + "add2"))
        s = p + "s2"
    nodes.append(helper.make_node("LayerNormalization", [s, "ln_g", "ln_b"], ["y"], axis=-1, name="ln_out"))
    graph = helper.make_graph(nodes, "vit", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, TOKENS, DIM])], inits)
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _samples(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)} for _ in range(n)]


def _add_inputs_from_dq(proto) -> int:
    dq = {n.output[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    return sum(i in dq for n in proto.graph.node if n.op_type == "Add" for i in n.input)


def test_attention_blocks_counts_softmax_weighing_a_matmul():
    from edgec.compiler.qdq_graph import attention_blocks

    from .test_quant_equalize_stream import _stream_model

    assert attention_blocks(_vit(2)) == 2
    assert attention_blocks(_stream_model()) == 0  # a CNN


def test_intel_cpu_keeps_a_conv_stem_transformers_residual_stream_float():
    from edgec.calibration import collect_ranges
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.model_recipes import transformer_scheme
    from edgec.compiler.quantize import quantize_qdq
    from edgec.targets.registry import get_target

    model = ModelHandle.from_onnx(_vit(2), "vit.onnx", "0" * 64)
    calib, evals = _samples(16, 1), _samples(8, 2)
    ranges = collect_ranges(model.proto, calib, "minmax")
    base = get_target("intel-cpu").quant_scheme
    scheme, recipe = transformer_scheme(base, model)
    assert recipe == {"name": "transformer-recipe",
                      "config": {"attention_blocks": 2, "int8_input_ops": sorted(scheme.int8_input_ops),
                                 "hoist_scalar_muls": True}}
    assert "Add" in base.int8_input_ops and "Add" not in scheme.int8_input_ops
    ref = run_first_output(model.proto, evals)
    out = {}
    for name, s in (("transformer recipe", scheme), ("cnn rules", base)):
        q, summary = quantize_qdq(model, ranges, s)
        out[name] = (_add_inputs_from_dq(q.proto), cosine(run_first_output(q.proto, evals), ref),
                     summary["activation_pairs"])
    # The CNN rules quantize all 4 residual Adds' inputs (the stem's Conv is up their chain).
    assert out["transformer recipe"][0] == 0 and out["cnn rules"][0] == 8, out
    assert out["transformer recipe"][2] >= 8  # the MatMuls stay int8: not just a float model
    # The outlier channel sets the stream's per-tensor int8 step; LayerNorm then divides it out and
    # the other channels' rounding noise is what is left (measured 1 - cosine 0.0003 float vs 0.0073 int8).
    err = {k: 1.0 - v[1] for k, v in out.items()}
    assert out["transformer recipe"][1] > 0.99 and err["transformer recipe"] < 0.5 * err["cnn rules"], err
