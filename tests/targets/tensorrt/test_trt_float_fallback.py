"""jetson int8's cheap fallback: residual Adds whose symmetric int8 error dominates run in fp16."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgec.calibration import CalibrationData
from edgec.compiler import float_fallback as ff
from edgec.compiler.progress import Progress
from edgec.compiler.quality import run_onnx
from edgec.compiler.quant_stage import Int8Quantizer
from edgec.targets.tensorrt import TensorRTTarget
from edgec.targets.tensorrt.qdq_rules import check_qdq, legalize

from .trt_models import _w, handle, make_model

SCHEME = TensorRTTarget.quant_scheme


def test_search_takes_the_fp16_gain_gives_back_idle_layers_never_worse():
    gain = {"a": 0.5, "b": 0.2, "c": 0.0, "d": 0.001}  # share of the output error each node in fp16 removes
    calls = []

    def evaluate(nodes):
        calls.append(nodes)
        err = 0.1 * np.prod([1.0 - gain[n] for n in nodes])
        return err, 1.0 - err

    found = ff.search(list(gain), evaluate, bar=0.99)
    assert found["kept_float"] == ["a", "b"]  # c and d go back to int8: within KEEP_SHARE of the gain
    assert found["error"] == 0.1 * 0.5 * 0.8 and found["error_before"] == 0.1
    assert found["evaluations"] == len(calls) == 1 + 1 + 4  # plain, all in fp16, each tried back (not the last)
    assert calls[1] == ("a", "b", "c", "d") and calls[2] == ("a", "b", "c")  # the last candidate first
    # Already above the bar: nothing measured beyond the plain model, nothing kept.
    found = ff.search(list(gain), lambda nodes: (0.001, 0.995), bar=0.99)
    assert found["kept_float"] == [] and found["evaluations"] == 1
    # fp16 does not help: the plain model is what comes back.
    found = ff.search(list(gain), lambda nodes: (0.1 + 0.01 * len(nodes), 0.9), bar=0.99)
    assert found["kept_float"] == [] and found["error"] == 0.1 and found["evaluations"] == 2
    # At most max_back nodes are tried back.
    found = ff.search(list("abcdefgh"), lambda nodes: (0.1 * 0.5 ** len(nodes), 0.5), bar=0.99, max_back=3)
    assert found["evaluations"] == 1 + 1 + 3 and found["kept_float"] == list("abcde")  # within the share


def _residual(seed=0):
    """x -> 1x1 conv ``s`` (channel 0 about 1000x channel 1) + 1x1 conv ``b`` -> Add -> Mul by [1e-4, 1].

    The output reads channel 1 of the sum: per-tensor symmetric int8 on the Add's input ``s``
    (its scale set by channel 0) leaves channel 1 a level or two; in fp16 it is exact.
    """
    rng = np.random.default_rng(seed)
    w1 = _w(rng, 2, 4, 1, 1)
    w1[0] *= 1000.0
    nodes = [helper.make_node("Conv", ["x", "w1"], ["s"], name="conv_s"),
             helper.make_node("Conv", ["x", "w2"], ["b"], name="conv_b"),
             helper.make_node("Add", ["s", "b"], ["y"], name="add"),
             helper.make_node("Mul", ["y", "c"], ["z"], name="mul")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                      [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2, 8, 8])],
                      {"w1": w1, "w2": _w(rng, 2, 4, 1, 1), "c": np.array([1e-4, 1.0], np.float32).reshape(1, 2, 1, 1)})


def _samples(n=8, seed=1):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, 4, 8, 8)).astype(np.float32)} for _ in range(n)]


def test_residual_add_input_error_goes_to_fp16():
    model = handle(_residual())
    samples = _samples()
    q = Int8Quantizer(model, model, {}, SCHEME, CalibrationData(samples, "test"))
    q.choose_auto()
    info = q.float_fallback(Progress())
    assert info["kept_float"] == ["add"] and info["candidates"] == 1
    assert info["worst_cosine_before"] < 0.9 and info["worst_cosine"] > 0.99, info
    quant, summary = q.quantize()  # every later quantization keeps it
    assert "add" in summary["keep_float"]
    refs = run_onnx(model.proto, samples)
    assert ff.worst_cosine(run_onnx(quant.proto, samples), refs) > 0.99
    legal = legalize(quant.proto)[0]
    report = check_qdq(legal)
    assert report.ok and {"conv_s", "conv_b"} <= set(report.quantized_nodes)
    producers = {o: n.op_type for n in legal.graph.node for o in n.output}
    add = next(n for n in legal.graph.node if n.name == "add")
    assert all(producers[i] == "Conv" for i in add.input)  # no Q/DQ: TensorRT runs it in fp16


def test_jetson_build_records_the_fallback(tmp_path):
    from edgec import api
    from edgec.compiler.config import BuildConfig

    onnx.save(_residual(), tmp_path / "r.onnx")
    np.savez(tmp_path / "calib.npz", x=np.concatenate([s["x"] for s in _samples(12)]))
    res = api.build(BuildConfig.from_flat(model=str(tmp_path / "r.onnx"), output=tmp_path / "b", target="jetson",
                                          precision="int8", calib=str(tmp_path / "calib.npz"), force=True))
    passes = {p["name"]: p["config"] for p in res.manifest["passes"]}
    assert passes["float-fallback"]["kept_float"] == ["add"]
    assert passes["float-fallback"]["ops"] == ["Add"]
    assert passes["quantize"]["keep_float"] == ["add"]
    assert passes["calibrate"]["tensors"] > 0  # counted after auto's own collection pass
    assert res.report["accuracy"]["cosine"] > 0.99


def test_auto_build_calibrates_once_and_only_readable_tensors(tmp_path, monkeypatch):
    """``auto`` takes min/max from its own multi-observer pass: no second (or third) min/max pass,
    and no histograms for tensors no Q/DQ can read (the Add output, the Mul output)."""
    from edgec import api
    from edgec.calibration import collect
    from edgec.compiler.config import BuildConfig

    passes = []
    observe = collect._observe

    def counting(model, samples, methods, tensors, *args, **kw):
        passes.append((tuple(m if isinstance(m, str) else m[0] for m in methods), tensors))
        return observe(model, samples, methods, tensors, *args, **kw)

    monkeypatch.setattr(collect, "_observe", counting)
    onnx.save(_residual(), tmp_path / "r.onnx")
    np.savez(tmp_path / "calib.npz", x=np.concatenate([s["x"] for s in _samples(12)]))
    api.build(BuildConfig.from_flat(model=str(tmp_path / "r.onnx"), output=tmp_path / "b", target="jetson",
                                    precision="int8", calib=str(tmp_path / "calib.npz"), force=True))
    assert len(passes) == 1, passes
    methods, tensors = passes[0]
    assert len(methods) == 5 and sorted(tensors) == ["b", "s", "x"]


def test_auto_measures_fewer_samples_only_on_large_models():
    from edgec.compiler.range_search import AUTO_MIN_SAMPLES, AUTO_SAMPLES, auto_samples

    class H:
        def __init__(self, total):
            self.total = total

    assert auto_samples({"a": H(16 * 1e6)}, 16) == AUTO_SAMPLES  # 1e6 values a sample: all 16
    assert auto_samples({"a": H(16 * 1e8), "b": H(16 * 1e8)}, 16) == AUTO_MIN_SAMPLES  # 2e8: 4 fit, 8 kept
    assert AUTO_MIN_SAMPLES < auto_samples({"a": H(16 * 6e7)}, 16) < AUTO_SAMPLES
