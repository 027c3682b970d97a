"""The accuracy gate's group phase: error spread over many layers, where single fallbacks stall."""

from __future__ import annotations

import numpy as np

LAYERS = 10


def _spread_error_chain(path):
    """A chain of 3x3 convs with similar weights: each layer adds a similar share of int8 noise."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    c = 8
    nodes, inits, x = [], [], "x"
    for i in range(LAYERS):
        w = (rng.normal(size=(c, c, 3, 3)) / np.sqrt(c * 9 / 2)).astype(np.float32)
        b = (rng.normal(size=c) * .1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        x = f"c{i}"
        if i < LAYERS - 1:  # leaky: the noise of every layer reaches the output
            nodes.append(helper.make_node("LeakyRelu", [x], [f"r{i}"], name=f"act{i}", alpha=0.5))
            x = f"r{i}"
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 8, 8])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, c, 8, 8])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    np.savez(path.parent / "calib.npz", x=rng.normal(size=(32, c, 8, 8)).astype(np.float32))
    np.savez(path.parent / "eval.npz", x=rng.normal(size=(32, c, 8, 8)).astype(np.float32))
    return path


def test_group_phase_reaches_the_budget_where_single_moves_stall(cli, tmp_path, monkeypatch):
    """Greedy single moves (here: one per ranking) cannot reach a budget a quarter of the plain drop;
    the group phase keeps a ranked prefix of layers in float, fewer than all, and the target verifies it."""
    from edgec.compiler import accuracy_gate
    from edgec.targets.onnxruntime import ONNXRuntimeTarget

    model = _spread_error_chain(tmp_path / "chain.onnx")
    args = ("--target", "ort", "--precision", "int8", "--calib", tmp_path / "calib.npz", "--eval",
            tmp_path / "eval.npz", "--metric", "cosine", "--json", "--force", "--accept-low-accuracy")
    plain = cli("build", model, "-o", tmp_path / "plain", *args)
    assert plain.code == 0, plain.err
    plain_drop = 100 * (1 - plain.json()["report"]["accuracy"]["cosine"])
    assert plain_drop > 0.01, "int8 noise must be measurable for the budget to mean anything"
    budget = plain_drop / 4
    monkeypatch.setattr(ONNXRuntimeTarget, "accuracy_fallbacks", ("keep-float",))
    monkeypatch.setattr(accuracy_gate, "MAX_ROUNDS", 1)
    monkeypatch.setattr(accuracy_gate, "MAX_TRIES_PER_ROUND", 1)
    r = cli("build", model, "-o", tmp_path / "gated", *args, "--max-accuracy-drop", f"{budget:.6g}")
    assert r.code == 0, r.err
    gate = r.json()["report"]["accuracy_gate"]
    assert gate["passed"] and gate["drop"] <= budget < plain_drop  # within budget, so never worse than plain
    group = gate["group_phase"]
    assert group["layers_ranked"] >= LAYERS - 1
    assert 2 <= group["float_layers"] <= group["layers_ranked"]
    assert 2 <= len(gate["kept_float"]) < LAYERS  # more than one single move, fewer than every layer
    group_fbs = gate["fallbacks"][-group["float_layers"]:]
    assert all("kept in float with the ones ranked above" in fb["why"] for fb in group_fbs)
    # Binary search: about log2(N) measurements per search, plus the all-float check.
    assert len(group["searches"][0]["trace"]) <= 2 + int(np.ceil(np.log2(group["layers_ranked"])))
    # The bundle is the verified one: its quantize pass keeps exactly the gate's float layers.
    q = next(p for p in r.json()["manifest"]["passes"] if p["name"] == "quantize")
    assert sorted(q["config"]["keep_float"]) == sorted(gate["kept_float"])


def test_shortest_prefix_is_measured_to_fit_and_none_when_all_float_does_not():
    from edgec.compiler.gate_groups import shortest_prefix
    from edgec.compiler.sensitivity import Fallback, FallbackState

    class Drops:  # the drop as a function of how many layers are in float (not monotonic at k=3)
        def __init__(self, table):
            self.table = table

        def drop(self, state):
            return self.table[len(state.keep_float)]

    ranked = [Fallback("keep-float", f"n{i}") for i in range(6)]
    table = [5.0, 4.0, 3.0, 0.5, 2.0, 0.8, 0.1]
    trace: list = []
    k, d = shortest_prefix(Drops(table), FallbackState(), ranked, 1.0, 0, trace)
    assert d <= 1.0 and table[k] == d and k in (3, 5)
    assert trace[0]["float_layers"] == 6 and len(trace) <= 1 + 3
    assert shortest_prefix(Drops([5.0] * 7), FallbackState(), ranked, 1.0, 0, []) is None



def test_shrink_keeps_the_layer_the_fit_hinges_on_and_drops_the_rest():
    from edgec.compiler.gate_groups import shortest_prefix, shrink
    from edgec.compiler.sensitivity import Fallback, FallbackState

    class Drops:  # only n5 (ranked 6th) and n1 together fit
        def drop(self, state):
            return 0.5 if {"n1", "n5"} <= set(state.keep_float) else 3.0

    ranked = [Fallback("keep-float", f"n{i}") for i in range(8)]
    k, _ = shortest_prefix(Drops(), FallbackState(), ranked, 1.0, 0, [])
    assert k == 6
    kept, d = shrink(Drops(), FallbackState(), ranked, k, 1.0, [])
    assert sorted(fb.key for fb in kept) == ["n1", "n5"] and d == 0.5
