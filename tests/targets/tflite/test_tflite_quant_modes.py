"""arm int8 beyond full-integer: 16x8 (int16 activations), deny-listed float ops, the gate's moves."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.errors import ConfigError
from edgec.targets.tflite.tflite_io import interpreter_class

from .conftest import lower

pytestmark = pytest.mark.slow  # TensorFlow conversions (onnx2tf, TFLite converter)


def _tensor_types(data: bytes) -> dict[str, type]:
    Interpreter, _ = interpreter_class()
    return {d["name"]: d["dtype"] for d in Interpreter(model_content=data).get_tensor_details()}


def _max_err(built, evals) -> float:
    from edgec.compiler.quality import run_onnx
    from edgec.runtimes.registry import create_runner

    runner = create_runner("litert", built.bundle, built.manifest)
    refs = run_onnx(built.model.proto, evals)
    return max(float(np.abs(runner.infer(f)["logits"] - r["logits"]).max()) for f, r in zip(evals, refs))


def test_16x8_runs_in_litert_with_int16_activations(cnn, cnn_int8, tmp_session):
    model, calib, evals = cnn
    built = lower(model, calib, "int8", tmp_session / "cnn_16x8", activations="int16")
    q = built.result.manifest["quantization"]
    assert q["mode"] == "16x8" and q["activations"].startswith("int16")
    types = _tensor_types((built.bundle / "model.tflite").read_bytes())
    assert sum(t == np.int16 for t in types.values()) >= 4  # the activations between ops
    assert not any(t == np.uint8 for t in types.values())
    # int16 steps are 256x finer than int8's: the error left is the int8 weights', well under int8's
    # (measured on calibration samples: no clipping of out-of-range values, which both modes share).
    seen = list(calib.samples[:8])
    err16, err8 = _max_err(built, seen), _max_err(cnn_int8, seen)
    assert err16 < 0.5 * err8, (err16, err8)


def test_denylist_keeps_named_ops_float(cnn, tmp_session):
    model, calib, evals = cnn
    worst = lower(model, calib, "int8", tmp_session / "cnn_float1", float_ops=1)
    q = worst.result.manifest["quantization"]
    (name,) = q["float_nodes"]
    assert q["debugger_worst"][0]["tensor"] == name
    types = _tensor_types((worst.bundle / "model.tflite").read_bytes())
    assert types[name] == np.float32
    assert sum(t == np.int8 for t in types.values()) >= 4  # the rest stays int8
    named = lower(model, calib, "int8", tmp_session / "cnn_named", float_nodes=(name,))
    assert named.result.manifest["quantization"]["float_nodes"] == [name]
    assert _tensor_types((named.bundle / "model.tflite").read_bytes())[name] == np.float32
    with pytest.raises(ConfigError, match="unknown TFLite tensor"):
        lower(model, calib, "int8", tmp_session / "cnn_bad", float_nodes=("no_such_tensor",))
    with pytest.raises(ConfigError, match="16x8"):
        lower(model, calib, "int8", tmp_session / "cnn_both", float_ops=1, activations="int16")


def _compute_ops(data: bytes) -> list[tuple[str, type]]:
    """``(op type, output dtype)`` of every op but QUANTIZE/DEQUANTIZE, in execution order."""
    Interpreter, _ = interpreter_class()
    interp = Interpreter(model_content=data)
    dtypes = {d["index"]: d["dtype"] for d in interp.get_tensor_details()}
    return [(op["op_name"], dtypes[op["outputs"][0]]) for op in interp._get_ops_details()
            if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")]


def test_float_prefix_keeps_the_first_ops_float_and_the_rest_int8(cnn, cnn_int8, tmp_session):
    model, calib, evals = cnn
    built = lower(model, calib, "int8", tmp_session / "cnn_prefix", float_prefix=0.5)
    q = built.result.manifest["quantization"]
    ops = _compute_ops((built.bundle / "model.tflite").read_bytes())
    k = -(-len(ops) // 2)  # half the ops, rounded up
    assert q["float_prefix"] == 0.5 and q["float_prefix_ops"] == k == len(q["float_nodes"]), (q, ops)
    # Exactly the first k ops compute in float (a cut at the wrong end or off by one breaks this) ...
    assert [t for _, t in ops[:k]] == [np.float32] * k, ops
    # ... and every later one in int8: the deny-list holds no op past the cut.
    assert all(t == np.int8 for _, t in ops[k:]), ops
    # It runs in LiteRT with an int8 model's error: the Quantize at the cut takes the calibrated range (a
    # boundary with a wrong scale is off by far more). This small CNN's error is its int8 tail's, not its front's.
    seen = list(calib.samples[:8])
    err_prefix, err8 = _max_err(built, seen), _max_err(cnn_int8, seen)
    assert err_prefix < 2 * err8, (err_prefix, err8)
    with pytest.raises(ConfigError, match="float-prefix"):
        lower(model, calib, "int8", tmp_session / "cnn_prefix_bad", float_prefix=1.0)
    with pytest.raises(ConfigError, match="16x8"):
        lower(model, calib, "int8", tmp_session / "cnn_prefix16", float_prefix=0.5, activations="int16")


def test_ladder_scores_float_prefix_rungs_after_16x8_as_the_gate_moves_build_them(cnn, tmp_session, monkeypatch):
    from edgec.targets.tflite import TFLiteTarget, int8_floor

    model, calib, evals = cnn
    monkeypatch.setattr(int8_floor, "CNN_BAR", 1.01)  # no rung holds it: the ladder scores them all
    built = lower(model, calib, "int8", tmp_session / "cnn_ladder_all")
    fb = built.result.manifest["quantization"]["fallback"]
    names = [r["rung"] for r in fb["rungs"]]
    assert names[-3:] == ["16x8", "float-prefix 0.6", "float-prefix 0.75"], fb
    rungs = {r["rung"]: r for r in fb["rungs"]}
    scored = [r for r in fb["rungs"] if r.get("worst_cosine") is not None]
    assert fb["chosen"] == max(scored, key=lambda r: r["worst_cosine"])["rung"], fb  # none holds: the best ships
    # The rung is the model the gate's move builds (same calibration, ranges and cut), so the gate may skip it.
    pinned = lower(model, calib, "int8", tmp_session / "cnn_prefix06", float_prefix=0.6)
    q = pinned.result.manifest["quantization"]
    assert rungs["float-prefix 0.6"]["float_ops"] == q["float_prefix_ops"] < rungs["float-prefix 0.75"]["float_ops"]
    m = {"target_info": {"quantization": built.result.manifest["quantization"]}}
    assert "float-prefix 0.6 rung" in TFLiteTarget().move_scored({"float_prefix": 0.6}, m)


def _outlier_onnx(path, act: str = "LeakyRelu"):
    """x -> Conv(1->8) -> act -> Conv(8->4) with channel 0 of the first conv x1000, undone in the second.

    Through a ``Relu`` the arm target's cross-layer equalization moves the spread into the
    weights; through ``LeakyRelu`` it stays for the gate to win back."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.5, (8, 1, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 8).astype(np.float32)
    w2 = rng.normal(0, 0.5, (4, 8, 1, 1)).astype(np.float32)
    w1[0] *= 1000.0
    b1[0] *= 1000.0
    w2[:, 0] /= 1000.0
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node(act, ["h"], ["r"], name="relu1"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2")]
    g = helper.make_graph(nodes, "outlier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"))])
    import onnx

    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(path))
    xs = rng.normal(0, 1, (40, 1, 1, 8, 8)).astype(np.float32)
    np.savez(path.with_suffix(".calib.npz"), x=xs[:24, 0])
    np.savez(path.with_suffix(".eval.npz"), x=xs[24:, 0])
    return path


def test_arm_gate_improves_a_planted_outlier_model(tmp_path):
    from edgec import api
    from edgec.compiler.config import BuildConfig
    from edgec.errors import AccuracyError

    src = _outlier_onnx(tmp_path / "outlier.onnx")
    common = dict(model=str(src), target="arm", precision="int8", calib=str(src.with_suffix(".calib.npz")),
                  eval_data=str(src.with_suffix(".eval.npz")), force=True)
    plain = api.build(BuildConfig.from_flat(output=tmp_path / "plain", accept_low_accuracy=True,
                                            target_options={"activations": "int8"}, **common))
    plain_drop = 100 * (1.0 - plain.report["accuracy"]["cosine"])  # cosine points, the gate's unit
    assert plain_drop > 5  # the planted channel eats the other channels' int8 levels
    # Unpinned, the CNN's full-integer model is under its bar (0.99) on the check samples: its 16x8
    # rebuild (conv biases corrected for the int8 weight rounding) scores better, and the first rung that
    # holds the bar ships: 16x8, or (measured: 16x8 0.986) the float-prefix rung after it.
    auto = api.build(BuildConfig.from_flat(output=tmp_path / "auto", accept_low_accuracy=True, **common))
    q = auto.manifest["target_info"]["quantization"]
    fb = q["fallback"]
    assert fb["bar"] == 0.99 and fb["full_integer_worst_cosine"] + 0.02 < fb["16x8_worst_cosine"], fb
    held = [r["rung"] for r in fb["rungs"] if (r.get("worst_cosine") or 0.0) >= fb["bar"]]
    assert held and fb["chosen"] == held[0] in ("16x8", "float-prefix 0.6", "float-prefix 0.75"), fb
    assert q["mode"] == ("16x8" if held[0] == "16x8" else "full-integer with float ops"), q
    assert (held[0] == "16x8") == any(p["name"] == "weight-rounding-bias-correction" for p in auto.manifest["passes"])
    assert 100 * (1.0 - auto.report["accuracy"]["cosine"]) < plain_drop / 2
    # The gate starts from that build (never worse than no gate) and keeps it or a move within budget.
    res = api.build(BuildConfig.from_flat(output=tmp_path / "gated", max_accuracy_drop=0.1, metric="cosine", **common))
    gate = res.report["accuracy_gate"]
    assert gate["passed"] and gate["drop"] <= 0.1 < plain_drop
    assert 100 * (1.0 - res.report["accuracy"]["cosine"]) <= 0.1
    # A budget no move meets fails with the moves tried and the debugger's worst ops; no bundle. The 16x8 move
    # is not built again: the plain build's ladder scored that model.
    with pytest.raises(AccuracyError, match="tried .*rmse/scale") as failed:
        api.build(BuildConfig.from_flat(output=tmp_path / "impossible", max_accuracy_drop=1e-9, metric="cosine", **common))
    assert "activations=int16: scored by the int8 ladder's 16x8 rung" in str(failed.value)
    assert not (tmp_path / "impossible").exists()


def test_arm_int8_equalizes_a_conv_relu_conv_outlier(tmp_path):
    """The planted 1000x channel through a Relu: equalized before conversion, plain int8 agrees."""
    from edgec import api
    from edgec.compiler.config import BuildConfig

    src = _outlier_onnx(tmp_path / "outlier.onnx", act="Relu")
    res = api.build(BuildConfig.from_flat(model=str(src), target="arm", precision="int8", output=tmp_path / "eq",
                                          calib=str(src.with_suffix(".calib.npz")),
                                          eval_data=str(src.with_suffix(".eval.npz")), force=True))
    eq = [p for p in res.manifest["passes"] if p["name"] == "equalize-conv-pairs"]
    assert eq and eq[0]["config"]["equalized"] == 1
    assert res.report["accuracy"]["cosine"] > 0.99  # 0.93 without the equalization (the gate test's plain build)


def test_16x8_keeps_ops_without_a_16x8_kernel_float(tmp_path, monkeypatch):
    """HARD_SWISH has no 16x8 kernel: it stays float, named, after one calibration pass over the samples (the
    converter's own 16x8 path calibrated twice, and twice more on the retry with float builtins)."""
    from edgec.calibration.types import CalibrationData
    from edgec.targets.tflite import quant_modes

    from .conftest import handle_from_proto

    drawn = []
    dataset = quant_modes.representative_dataset

    def counted(graph, samples):
        gen = dataset(graph, samples)
        return lambda: (drawn.append(1) or feed for feed in gen())

    monkeypatch.setattr(quant_modes, "representative_dataset", counted)

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.5, (4, 4, 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("HardSwish", ["c"], ["h"], name="hswish"),
             helper.make_node("Conv", ["h", "w2"], ["y"], name="conv2")]
    g = helper.make_graph(nodes, "hs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    model = handle_from_proto(proto, "hs.onnx")
    calib = CalibrationData([{"x": rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)} for _ in range(8)], "test")
    built = lower(model, calib, "int8", tmp_path / "hs16", activations="int16")
    q = built.result.manifest["quantization"]
    assert q["mode"] == "16x8" and "HARD_SWISH" in q["float_ops"] and "CONV_2D" not in q["float_ops"]
    assert len(drawn) == len(calib), drawn
    assert any(t == np.int16 for t in _tensor_types((built.bundle / "model.tflite").read_bytes()).values())


def _outlier_mlp():
    """x -> MatMul -> h -> MatMul -> y (and Softmax(y)) where one channel of h is 100x the others and y ignores it.

    Per-tensor int8 spends h's 256 steps on the outlier (a step of ~2 against values of ~3):
    y is mostly rounding noise. int16's 65536 steps keep the small channels. The Softmax next
    to MatMuls makes it a transformer to the arm target (bar 0.99).
    """
    from edgec.calibration.types import CalibrationData

    from .conftest import handle_from_proto

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 16)).astype(np.float32)
    w1[:, 15] *= 100.0
    w2 = rng.standard_normal((16, 4)).astype(np.float32)
    w2[15] = 0.0
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"]),
                           helper.make_node("Softmax", ["y"], ["p"])],
                          "outlier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]),
                           helper.make_tensor_value_info("p", TensorProto.FLOAT, [1, 4])],
                          [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    samples = [{"x": rng.standard_normal((1, 8)).astype(np.float32)} for _ in range(24)]
    return handle_from_proto(proto, "outlier.onnx"), CalibrationData(samples[:16], "synthetic"), samples[16:]


def test_int8_below_the_bar_ships_16x8_with_both_scores(tmp_session, monkeypatch):
    """Default int8 of a transformer (no mode pinned): full-integer misses cosine 0.99 on the check samples, 16x8
    holds it. The shipped model runs on the check samples once: the ladder's scoring run also gives the build's
    int8 error report (16x8 runs on LiteRT's reference kernels)."""
    import hashlib

    from edgec.runtimes.harness import compare
    from edgec.runtimes.litert_runner import LiteRTRunner
    from edgec.targets.tflite import convert, tflite_io

    from .test_tflite_cnn import _OrtReference

    runs: list[str] = []
    run_all = tflite_io.run_tflite

    def counted(data, graph, samples):
        runs.append(hashlib.sha256(data).hexdigest())
        return run_all(data, graph, samples)

    monkeypatch.setattr(tflite_io, "run_tflite", counted)
    monkeypatch.setattr(convert, "run_tflite", counted)
    model, calib, evals = _outlier_mlp()
    built = lower(model, calib, "int8", tmp_session / "outlier_auto")
    assert runs.count(hashlib.sha256((built.bundle / "model.tflite").read_bytes()).hexdigest()) == 1, runs
    assert "int8_tflite_max_abs_err" in built.result.report
    q = built.result.manifest["quantization"]
    assert q["mode"] == "16x8", q
    fb = q["fallback"]
    assert fb["bar"] == 0.99 and fb["full_integer_worst_cosine"] < 0.99 <= fb["16x8_worst_cosine"]
    # The ladder's float-ops rung (h's outlier range is in the int8 tensor between the two MatMuls, so
    # one op kept float cannot win it back) misses the bar before 16x8 is built.
    assert [r["rung"] for r in fb["rungs"]] == ["full-integer", "float-ops 1", "16x8"] and fb["chosen"] == "16x8", fb
    assert fb["rungs"][1]["worst_cosine"] < 0.99, fb
    assert built.result.manifest["io_dtype"] == "float32"
    with LiteRTRunner(built.bundle, built.manifest, threads=1) as runner:
        acc = compare(runner, _OrtReference(built.model), evals, classification=False)
    assert acc["cosine"] > 0.99, acc
    # Pinned int8 activations keep full-integer (the accuracy gate's and the user's choice).
    pinned = lower(model, calib, "int8", tmp_session / "outlier_int8", activations="int8")
    assert pinned.result.manifest["quantization"]["mode"] == "full-integer"


def test_16x8_keeps_a_comparison_float(tmp_session):
    """A comparison has no 16x8 kernel: with float builtins allowed it stays float and is named."""
    from edgec.calibration.types import CalibrationData

    from .conftest import handle_from_proto

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w")
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    tenth = numpy_helper.from_array(np.array(0.1, np.float32), "tenth")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Greater", ["h", "zero"], ["pos"]),
             helper.make_node("Mul", ["h", "tenth"], ["leak"]), helper.make_node("Where", ["pos", "h", "leak"], ["y"])]
    g = helper.make_graph(nodes, "where", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w, zero, tenth])
    model = handle_from_proto(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), "w.onnx")
    calib = CalibrationData([{"x": rng.standard_normal((1, 8)).astype(np.float32)} for _ in range(8)], "synthetic")
    built = lower(model, calib, "int8", tmp_session / "where_16x8", activations="int16")
    q = built.result.manifest["quantization"]
    assert q["mode"] == "16x8" and q.get("float_ops"), q
