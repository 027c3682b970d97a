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
         helper.make_node("Conv", ["c", "wd", "b"], ["d"], pads=[1, 1, 1, 1], strides=[2, 2], group=4),
         helper.make_node("HardSwish", ["d"], ["h"]), helper.make_node("GlobalAveragePool", ["h"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Softmax", ["f"], ["y"], axis=-1)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32), "wd"),
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
    fast = conv.convert()
    slow = tf.lite.TFLiteConverter.from_concrete_functions([graph.concrete], keras_model)
    slow.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    assert fast == slow.convert()


def test_variables_outside_keras_layers_keep_the_signature():
    """onnx2tf keeps some kernels (a strided depthwise conv's in ShuffleNetV2 and RegNet) in
    variables no Keras layer owns: untracked, they made the converter drop the signature and
    the build failed with KeyError on the output name. The module tracks the function's own."""
    from edgec.targets.tflite.onnx2tf_step import TFGraph
    from edgec.targets.tflite.tflite_io import SIGNATURE, interpreter_class
    from edgec.targets.tflite.tools import import_tf

    tf = import_tf()
    kernel = tf.Variable(np.arange(12, dtype=np.float32).reshape(3, 4), name="outside_kernel")
    fn = tf.function(lambda x: {"logits": tf.matmul(x, kernel)},
                     input_signature=[tf.TensorSpec([1, 3], tf.float32, name="x")])
    graph = object.__new__(TFGraph)
    graph.tf, graph.keras, graph._holder = tf, tf.Module(), None
    graph.keras.weights = []  # what onnx2tf's Keras model owns: not this kernel
    graph.concrete = fn.get_concrete_function()
    conv = graph.converter()
    assert [id(v) for v in conv._trackable_obj.variables_of_model] == [id(kernel)]
    interp = interpreter_class()[0](model_content=conv.convert())
    assert list(interp.get_signature_list()[SIGNATURE]["outputs"]) == ["logits"]
    out = interp.get_signature_runner(SIGNATURE)(x=np.ones((1, 3), np.float32))["logits"]
    np.testing.assert_allclose(out, np.ones((1, 3), np.float32) @ kernel.numpy())
