"""The TFLite converter gets a variables-only module, not the Keras model.

TFLiteConverter saves its trackable object as a SavedModel before converting; for onnx2tf's
Keras model that walks every layer's config (most of an arm build of a real MobileNetV3:
172 s of 205 s). The module holding only the captured variables must give the same bytes.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from .conftest import handle_from_proto

pytestmark = pytest.mark.slow  # onnx2tf + TFLiteConverter


def test_variables_only_module_converts_to_the_same_bytes(tmp_path):
    from edgec.targets.tflite.onnx2tf_step import TFGraph, run_onnx2tf
    from edgec.targets.tflite.tools import captured_output, import_tf

    rng = np.random.default_rng(0)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("HardSwish", ["c"], ["h"]), helper.make_node("GlobalAveragePool", ["h"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Softmax", ["f"], ["y"], axis=-1)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = handle_from_proto(proto, "tiny")
    tf = import_tf()
    samples = [{"x": rng.random((1, 3, 8, 8), np.float32)}]
    keras_model = run_onnx2tf(proto, tmp_path)
    with captured_output():
        graph = TFGraph(tf, keras_model, model, samples)
    conv = graph.converter()
    assert isinstance(conv._trackable_obj, tf.Module) and not isinstance(conv._trackable_obj, type(keras_model))
    assert len(conv._trackable_obj.variables_of_model) == len(keras_model.weights)
    fast = conv.convert()
    slow = tf.lite.TFLiteConverter.from_concrete_functions([graph.concrete], keras_model)
    slow.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    assert fast == slow.convert()
