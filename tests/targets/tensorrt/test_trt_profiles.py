"""Optimization profiles: parsing, propagation into the bundle, and the missing-profile error."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from .trt_models import cnn, handle, make_model, samples_for, spec_for
from edgec.compiler.model import TensorSpec
from edgec.errors import ConfigError
from edgec.runtimes.onnxruntime_runner import make_session
from edgec.targets.registry import get_target
from edgec.targets.tensorrt import profiles, trt_engine as te

PROFILE = {"x": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))}


def dynamic_source_meta():
    return {"source_inputs": [TensorSpec("x", ("batch", 3, 8, 8), "float32").to_json()]}


def test_parse_shape_arg():
    assert te.parse_shape_arg("x=1x3x224x224") == ("x", ((1, 3, 224, 224),) * 3)
    assert te.parse_shape_arg("images=1x3x224x224:8x3x224x224:16x3x224x224")[1][2] == (16, 3, 224, 224)
    for bad in ("x", "x=1x3:1x3x4", "x=2x3:1x3:4x3", "x=0x3", "x=ax3"):
        with pytest.raises(te.EngineError):
            te.parse_shape_arg(bad)


def test_dynamic_input_without_profile_is_a_clear_error():
    h = handle(cnn(batch=2), meta=dynamic_source_meta())
    with pytest.raises(ConfigError) as exc:
        profiles.resolve(h, {})
    msg = str(exc.value)
    assert "input 'x'" in msg and "'batch'" in msg and "no optimization profile" in msg
    assert "--input-shape x=1x3x8x8:8x3x8x8:16x3x8x8" in msg


def test_model_with_symbolic_dims_left_needs_a_profile():
    with pytest.raises(ConfigError, match="--input-shape x="):
        profiles.resolve(handle(cnn(batch="N")), {})


def test_fixed_shape_is_fine():
    h = handle(cnn(batch=2), meta=dict(dynamic_source_meta(), fixed_shapes={"x": [2, 3, 8, 8]}))
    assert profiles.resolve(h, {}) == ({}, {})
    h = handle(cnn(batch=2), meta=dynamic_source_meta())  # min == opt == max: static
    assert profiles.resolve(h, {"x": ((2, 3, 8, 8),) * 3}) == ({}, {})


def test_profile_must_fit_the_input():
    h = handle(cnn(batch=2), meta=dynamic_source_meta())
    with pytest.raises(ConfigError, match="axis 1"):
        profiles.resolve(h, {"x": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 6, 8, 8))})
    with pytest.raises(ConfigError, match="opt is"):
        profiles.resolve(h, {"x": ((1, 3, 8, 8), (3, 3, 8, 8), (4, 3, 8, 8))})
    with pytest.raises(ConfigError, match="unknown input"):
        profiles.resolve(h, {"y": PROFILE["x"]})


def test_profiles_propagate_into_bundle(tmp_path):
    m = cnn(batch=2)
    s = samples_for(m, n=4)
    spec = spec_for(m, "fp16", samples=s, input_profiles=PROFILE)
    spec.float_model.meta.update(dynamic_source_meta())
    res = get_target("jetson").lower(handle(m), spec, tmp_path)
    model = onnx.load(tmp_path / "model.onnx")
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert res.inputs[0].shape == ("batch", 3, 8, 8) and res.outputs[0].shape == ("batch", 4)
    cfg = json.loads((tmp_path / "engine_config.json").read_text())
    assert cfg["profiles"] == {"x": {"min": [1, 3, 8, 8], "opt": [2, 3, 8, 8], "max": [4, 3, 8, 8]}}
    assert "--minShapes=x:1x3x8x8 --optShapes=x:2x3x8x8 --maxShapes=x:4x3x8x8" in res.manifest["trtexec"]
    assert res.passes[-1] == {"name": "trt-dynamic-dims", "config": {"x": {"0": "batch"}}}
    sess = make_session(str(tmp_path / "model.onnx"))
    for b in (1, 4):
        assert sess.run(None, {"x": np.zeros((b, 3, 8, 8), np.float32)})[0].shape == (b, 4)


def test_shape_baked_into_graph_is_reported(tmp_path):
    # Reshape to a constant [2, 48]: only runs at batch 2 (the opt shape).
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="flat")]
    m = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 48])],
                   {"shape": np.array([2, 48], np.int64)})
    spec = spec_for(m, "fp16", input_profiles={"x": ((1, 3, 4, 4), (2, 3, 4, 4), (4, 3, 4, 4))})
    spec.float_model.meta.update({"source_inputs": [TensorSpec("x", ("batch", 3, 4, 4), "float32").to_json()]})
    with pytest.raises(ConfigError, match="does not run at the profile's min shape"):
        get_target("jetson").lower(handle(m), spec, tmp_path)


def test_loader_dynamic_dims_meta(tmp_path):
    """The loader's meta["dynamic_dims"] (dims fixed by --input-shape) drives the bundle's dims."""
    m = cnn(batch=2)
    h = handle(m, meta={"dynamic_dims": {"x": {0: "N"}}})
    assert profiles.resolve(h, PROFILE)[1] == {"x": {0: "N"}}
    assert profiles.resolve(h, {}) == ({}, {})  # a fixed --input-shape: static engine
    spec = spec_for(m, "fp16", samples=samples_for(m, 4), input_profiles=PROFILE)
    spec.float_model.meta["dynamic_dims"] = {"x": {0: "N"}}
    res = get_target("jetson").lower(handle(m), spec, tmp_path)
    assert res.inputs[0].shape == ("N", 3, 8, 8)
