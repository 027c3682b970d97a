"""`TensorRTTarget.lower` called directly: bundle contents, manifest/report, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from .trt_models import cnn, handle, spec_for
from edgec.errors import ConfigError, MissingDependencyError, UnsupportedOpError
from edgec.targets.registry import TARGETS, get_target
from edgec.targets.tensorrt import TensorRTTarget, accuracy, trt_engine as te
from edgec.targets.tensorrt.bundle import engine_package_files
from edgec.targets.tensorrt.qdq_rules import check_qdq

FILES = {"model.onnx", "engine_config.json", "build_engine.py", "bench_trt.py", "reference/io.npz", "README.md",
         *engine_package_files()}


def lower(model, qdq, samples, precision, out, **kw):
    spec = spec_for(model, precision, qdq=qdq if precision in ("int8", "best") else None, samples=samples, **kw)
    return get_target("jetson").lower(handle(qdq if qdq is not None and precision in ("int8", "best") else model),
                                      spec, out)


def listing(d):
    return {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()}


def test_target_attributes():
    assert TARGETS.canonical("trt") == TARGETS.canonical("tensorrt") == "jetson"
    t = get_target("tensorrt")
    assert isinstance(t, TensorRTTarget)
    assert t.availability() is None  # usable without tensorrt
    assert t.default_precision == "fp16" and t.calibrated_precisions == ("int8", "best")
    assert t.quant_scheme.activation_symmetric and t.quant_scheme.placement == "weighted"
    assert {o.name: o.kind for o in t.options} == {"engine": "flag", "workspace": "bytes", "sparsity": "flag",
                                                   "dla_core": "int", "timing_cache": "str"}
    assert {"Conv", "QuantizeLinear", "DequantizeLinear", "LayerNormalization"} <= t.supported_ops
    assert "QLinearConv" not in t.supported_ops
    # no GPU/TensorRT in CI: the listing says so
    assert t.engine_availability() is not None and t.status_note().startswith("bundle only")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_float_bundle(tmp_path, cnn_qdq, precision):
    m, _, s = cnn_qdq
    res = lower(m, None, s, precision, tmp_path)
    assert listing(tmp_path) == FILES
    assert res.model_artifact.path == "model.onnx" and res.model_artifact.kind == "onnx"
    assert {a.path: a.role for a in res.artifacts}["bench_trt.py"] == "harness"
    assert not any(n.op_type == "QuantizeLinear" for n in onnx.load(tmp_path / "model.onnx").graph.node)
    cfg = json.loads((tmp_path / "engine_config.json").read_text())
    assert cfg["precision"] == precision and cfg["explicit_quantization"] is False
    assert res.manifest["builder_flags"] == ([] if precision == "fp32" else ["FP16"])
    assert "onnxruntime on the float ONNX" in res.report["accuracy_measured_with"]


@pytest.mark.parametrize("precision,flags", [("int8", "--int8"), ("best", "--fp16 --int8")])
def test_int8_bundle(tmp_path, cnn_qdq, precision, flags):
    m, q, s = cnn_qdq
    res = lower(m, q, s, precision, tmp_path, options={"workspace": 512 * 2**20, "timing_cache": "/x/y/my.cache"})
    assert listing(tmp_path) == FILES
    assert res.model_artifact.kind == "onnx-qdq"
    bundled = onnx.load(tmp_path / "model.onnx")
    assert check_qdq(bundled).ok  # what we ship follows TensorRT's rules
    assert res.manifest["qdq"]["legalize"] == {"bias_folded": 3, "weights_requantized": 3}
    assert res.passes[0]["name"] == "trt-legalize-qdq"
    gate = res.report["int8_gate"]
    assert gate["checked"] and gate["outputs"]["y"]["nrmse"] < 0.2
    assert "Q/DQ ONNX" in res.report["accuracy_measured_with"]
    line = res.manifest["trtexec"]
    assert line.startswith("trtexec --onnx=model.onnx --saveEngine=model.engine " + flags)
    assert "--memPoolSize=workspace:512" in line and "--timingCacheFile=my.cache" in line
    cfg = json.loads((tmp_path / "engine_config.json").read_text())
    assert cfg["timing_cache"] == "my.cache" and cfg["workspace_bytes"] == 512 * 2**20
    assert 0.5 <= cfg["min_cosine"] <= te.MIN_COSINE[precision]
    readme = (tmp_path / "README.md").read_text()
    assert line in readme and "python3 build_engine.py" in readme and "python3 bench_trt.py" in readme


def test_reference_outputs_match_onnxruntime(tmp_path, cnn_qdq):
    m, q, s = cnn_qdq
    res = lower(m, q, s, "int8", tmp_path)
    ref = te.load_reference(tmp_path / "reference" / "io.npz")
    assert len(ref) == 4 == res.manifest["reference"]["samples"]
    want = accuracy.run_model(m, [inp for inp, _ in ref])
    for (inp, out), w, sample in zip(ref, want, s):
        np.testing.assert_array_equal(inp["x"], sample["x"])
        np.testing.assert_allclose(out["y"], w["y"], rtol=1e-6, atol=1e-6)
    # The Q/DQ model (what TensorRT builds from) agrees closely with the float reference.
    got = accuracy.run_model(onnx.load(tmp_path / "model.onnx"), [inp for inp, _ in ref])
    check = te.check_outputs(got, [out for _, out in ref], 0.99)
    assert check["passed"], check


def test_rebuild_is_byte_identical(tmp_path, cnn_qdq):
    m, q, s = cnn_qdq
    lower(m, q, s, "int8", tmp_path / "a")
    lower(m, q, s, "int8", tmp_path / "b")
    for f in FILES:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_scripts_are_standalone(tmp_path, cnn_qdq):
    m, _, s = cnn_qdq
    lower(m, None, s, "fp16", tmp_path)
    for script in ("build_engine.py", "bench_trt.py"):
        src = (tmp_path / script).read_text()
        imports = [ln.strip() for ln in src.splitlines() if ln.strip().startswith(("import ", "from "))]
        assert not [ln for ln in imports if "edgec" in ln], imports
        top = [ln for ln in src.splitlines() if ln.startswith(("import ", "from "))]  # module level
        assert {ln.split()[1].split(".")[0] for ln in top} <= {"__future__", "sys", "pathlib", "trt_engine"}, top
        compile(src, script, "exec")
    # The package they import is a verbatim copy: standard library and numpy at module level,
    # edgec only as the fallback of `_shared` when running inside edgec's own tree.
    pkg = Path(te.__file__).parent
    for f in sorted((tmp_path / "trt_engine").glob("*.py")):
        src = f.read_text()
        want = pkg / f.name if (pkg / f.name).is_file() else Path(te.__file__).parents[3] / "runtimes" / f.name
        assert src == want.read_text(), f.name
        top = [ln for ln in src.splitlines() if ln.startswith(("import ", "from "))]
        assert {ln.split()[1].split(".")[0] for ln in top} <= {"__future__", "argparse", "json", "math", "os", "sys",
                                                               "time", "pathlib", "numpy", ""}, (f.name, top)


def test_engine_requested_without_tensorrt(tmp_path, cnn_qdq):
    m, _, s = cnn_qdq
    with pytest.raises(MissingDependencyError) as exc:
        lower(m, None, s, "fp16", tmp_path, options={"engine": True})
    assert "pip install 'edgec[tensorrt]'" in str(exc.value) and "GPU" in str(exc.value)


def test_engine_requested_without_gpu(tmp_path, cnn_qdq, monkeypatch):
    import edgec.targets.tensorrt as trt_target

    monkeypatch.setattr(trt_target, "has_module", lambda name: True)
    monkeypatch.setenv("EDGEC_TRT_NO_GPU", "1")
    m, _, s = cnn_qdq
    with pytest.raises(MissingDependencyError, match="no CUDA GPU here.*drop --engine"):
        lower(m, None, s, "fp16", tmp_path, options={"engine": True})


def test_option_errors(tmp_path, cnn_qdq):
    m, q, s = cnn_qdq
    with pytest.raises(ConfigError, match="DLA cores have no fp32"):
        lower(m, None, s, "fp32", tmp_path, options={"dla_core": 0})
    with pytest.raises(ConfigError, match="needs the Q/DQ model"):
        lower(m, None, s, "int8", tmp_path)
    res = lower(m, q, s, "int8", tmp_path / "dla", options={"dla_core": 1, "sparsity": True})
    assert res.manifest["builder_flags"] == ["INT8", "SPARSE_WEIGHTS", "GPU_FALLBACK"]
    assert "--useDLACore=1 --allowGPUFallback" in res.manifest["trtexec"]
    assert any("2:4" in w for w in res.report["warnings"])


def test_qdq_violation_fails_lower_naming_node(tmp_path, cnn_qdq):
    m, q, s = cnn_qdq
    bad = onnx.ModelProto()
    bad.CopyFrom(q)
    for n in bad.graph.node:  # put conv2's weight scales on the input-channel axis
        if n.op_type == "DequantizeLinear" and n.input[0].startswith("w2"):
            n.attribute[0].i = 1
    with pytest.raises(ConfigError) as exc:
        lower(m, bad, s, "int8", tmp_path)
    assert "TensorRT's quantization rules" in str(exc.value) and "[weight-axis]" in str(exc.value)


def test_check_reports_unsupported_ops_by_name():
    nodes = [helper.make_node("Unique", ["x"], ["y"], name="uniq"),
             helper.make_node("FusedGemm", ["y", "y"], ["z"], name="fused", domain="com.microsoft")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    t = get_target("jetson")
    rep = t.check(handle(m), spec_for(cnn()))
    assert [(n, op) for n, op, _ in rep.unsupported] == [("uniq", "Unique"), ("fused", "com.microsoft.FusedGemm")]
    with pytest.raises(UnsupportedOpError) as exc:
        rep.raise_if_unsupported()
    assert "node 'uniq'" in str(exc.value) and "target 'jetson'" in str(exc.value) and "1 more" in str(exc.value)
    assert t.check(handle(cnn()), spec_for(cnn())).ok


def test_verify_runner_falls_back_to_onnxruntime_on_the_bundle(tmp_path, cnn_qdq):
    m, q, s = cnn_qdq
    res = lower(m, q, s, "int8", tmp_path)
    h = handle(m)
    manifest = {"runner": "tensorrt", "artifact": {"path": "model.onnx", "kind": "onnx-qdq"},
                "model_inputs": [x.to_json() for x in h.inputs], "model_outputs": [x.to_json() for x in h.outputs],
                "inputs": [x.to_json() for x in res.inputs], "outputs": [x.to_json() for x in res.outputs],
                "target_info": res.manifest}
    runner = get_target("jetson").verify_runner(tmp_path, manifest)
    assert runner.name == "onnxruntime" and runner.model_path.name == "model.onnx"
    with runner:
        out = runner.infer(s[0])
    ref = accuracy.run_model(m, [s[0]])[0]
    assert te.cosine(out["y"], ref["y"]) > 0.999
