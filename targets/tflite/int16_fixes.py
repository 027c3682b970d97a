"""Fixes that make a 16x8 (int16 activations) .tflite convert and run in LiteRT.

TFLite's 16x8 mode goes through the converter's older quantizer, whose op table and
LiteRT's kernels disagree in three places that real transformers hit:

* an all-zero constant (a LayerNorm's zero beta, folded by onnx2tf to a scalar 0) gets the
  scale 0, and LiteRT's int16 SUB CHECK-fails on it in prepare, aborting the process
  (DeiT-tiny): `zero_constants_take_output_scale`;
* SQUARED_DIFFERENCE (Keras LayerNorm's variance) is quantized to int16, but LiteRT has no
  int16 kernel for it ("SquaredDifference only supports FLOAT32 and INT32"):
  `float_islands` runs such ops in float between DEQUANTIZE and QUANTIZE;
* onnx2tf's negative-index fix-up before a Gather of token ids (``ids + (ids < 0) * vocab``,
  int64) makes the quantizer ask for a float range of an integer tensor ("Max and min for
  dynamic tensors should be recorded during calibration: Failed for tensor Cast", MiniLM):
  `quantize_16x8_without_index_fixups` quantizes a float model with those ops removed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Ops the 16x8 quantizer makes int16 but LiteRT has no int16 kernel for (LiteRT 2.x).
NO_INT16_KERNEL = ("SQUARED_DIFFERENCE",)


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    return schema, flatbuffer_utils


def _op_names(schema) -> dict[int, str]:
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _opcode(model, schema, name: str) -> int:
    """Index of builtin ``name`` in the model's operator codes (added when missing)."""
    code = getattr(schema.BuiltinOperator, name)
    for i, oc in enumerate(model.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def zero_constants_take_output_scale(data: bytes) -> tuple[bytes, int]:
    """``(model, how many)``: each all-zero quantized constant with scale 0 gets its consumer's output scale.

    Zeros are exact at any scale; the consumer's output scale keeps LiteRT's requantization
    multipliers in range.
    """
    _, fb = _schema()
    model = fb.read_model_from_bytearray(data)
    fixed = 0
    for sub in model.subgraphs:
        for op in sub.operators:
            outs = [sub.tensors[i].quantization for i in op.outputs if i >= 0]
            scale = next((q.scale for q in outs if q is not None and q.scale is not None and len(q.scale) == 1
                          and float(q.scale[0]) > 0), None)
            if scale is None:
                continue
            for i in op.inputs:
                t = sub.tensors[i] if i >= 0 else None
                q = t.quantization if t is not None else None
                buf = model.buffers[t.buffer].data if t is not None else None
                if (q is None or q.scale is None or len(q.scale) != 1 or float(q.scale[0]) != 0.0 or buf is None
                        or not len(buf) or np.any(np.asarray(buf))):
                    continue
                q.scale = np.array(scale, np.float32)
                fixed += 1
    if not fixed:
        return data, 0
    return bytes(fb.convert_object_to_bytearray(model)), fixed


def float_islands(data: bytes, op_types: tuple[str, ...] = NO_INT16_KERNEL) -> tuple[bytes, list[str]]:
    """``(model, op types changed)``: every int16 op of ``op_types`` computes in float between DEQUANTIZE/QUANTIZE."""
    schema, fb = _schema()
    model = fb.read_model_from_bytearray(data)
    names = _op_names(schema)
    int16 = schema.TensorType.INT16
    changed: set[str] = set()
    for sub in model.subgraphs:
        ops = []
        for op in sub.operators:
            oc = model.operatorCodes[op.opcodeIndex]
            name = names.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), "")
            if name not in op_types or not any(sub.tensors[i].type == int16 for i in op.outputs):
                ops.append(op)
                continue
            changed.add(name)
            before, after = [], []
            inputs = list(op.inputs)
            for k, i in enumerate(inputs):
                if i >= 0 and sub.tensors[i].type == int16:
                    inputs[k] = _float_twin(model, sub, schema, i, "_float_in")
                    before.append(_simple_op(schema, _opcode(model, schema, "DEQUANTIZE"), [i], [inputs[k]]))
            outputs = list(op.outputs)
            for k, i in enumerate(outputs):
                if sub.tensors[i].type == int16:
                    outputs[k] = _float_twin(model, sub, schema, i, "_float_out")
                    after.append(_simple_op(schema, _opcode(model, schema, "QUANTIZE"), [outputs[k]], [i]))
            op.inputs, op.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
            ops += [*before, op, *after]
        sub.operators = ops
    if not changed:
        return data, []
    return bytes(fb.convert_object_to_bytearray(model)), sorted(changed)


def _float_twin(model, sub, schema, i: int, suffix: str) -> int:
    """A new float32 tensor shaped like tensor ``i``; returns its index."""
    src = sub.tensors[i]
    t = schema.TensorT()
    t.shape = None if src.shape is None else np.array(src.shape, np.int32)
    t.shapeSignature = None if src.shapeSignature is None else np.array(src.shapeSignature, np.int32)
    t.type = schema.TensorType.FLOAT32
    name = src.name.decode() if isinstance(src.name, bytes) else str(src.name)
    t.name = (name + suffix).encode()
    model.buffers.append(schema.BufferT())
    t.buffer = len(model.buffers) - 1
    sub.tensors.append(t)
    return len(sub.tensors) - 1


def _simple_op(schema, opcode: int, inputs: list[int], outputs: list[int]):
    op = schema.OperatorT()
    op.opcodeIndex = opcode
    op.inputs, op.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
    return op


def drop_index_fixups(float_data: bytes) -> tuple[bytes, int]:
    """``(float model, how many)`` with onnx2tf's ``ids + (ids < 0) * n`` before a GATHER's indices removed.

    The GATHER reads ``ids`` directly: token ids are non-negative (a tokenizer's), where the
    fix-up adds 0. The fix-up's ops, now unused, are dropped.
    """
    schema, fb = _schema()
    model = fb.read_model_from_bytearray(float_data)
    names = _op_names(schema)
    dropped = 0
    for sub in model.subgraphs:
        producer = {int(o): op for op in sub.operators for o in op.outputs}

        def kind(op) -> str:
            oc = model.operatorCodes[op.opcodeIndex]
            return names.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), "")

        for op in sub.operators:
            if kind(op) != "GATHER" or len(op.inputs) < 2:
                continue
            add = producer.get(int(op.inputs[1]))
            if add is None or kind(add) != "ADD":
                continue
            ids = _fixed_up_ids(add, producer, kind)
            if ids is not None:
                inputs = np.array(op.inputs, np.int32)  # the flatbuffer's arrays are read-only
                inputs[1] = ids
                op.inputs = inputs
                dropped += 1
        if dropped:
            _drop_dead_ops(sub)
    if not dropped:
        return float_data, 0
    _drop_unused_opcodes(model)
    return bytes(fb.convert_object_to_bytearray(model)), dropped


def _fixed_up_ids(add, producer, kind) -> int | None:
    """``ids`` when ``add`` is ``ids + MUL(CAST(LESS(ids, 0)), n)`` (either operand order)."""
    for a, b in ((0, 1), (1, 0)):
        ids, mul = int(add.inputs[a]), producer.get(int(add.inputs[b]))
        if mul is None or kind(mul) != "MUL":
            continue
        for m in mul.inputs:
            cast = producer.get(int(m))
            if cast is None or kind(cast) != "CAST":
                continue
            less = producer.get(int(cast.inputs[0]))
            if less is not None and kind(less) == "LESS" and int(less.inputs[0]) == ids:
                return ids
    return None


def _drop_dead_ops(sub) -> None:
    outputs = {int(o) for o in sub.outputs}
    while True:
        used = {int(i) for op in sub.operators for i in op.inputs} | outputs
        keep = [op for op in sub.operators if any(int(o) in used for o in op.outputs)]
        if len(keep) == len(sub.operators):
            return
        sub.operators = keep


def _drop_unused_opcodes(model) -> None:
    """The calibrator's op resolver registers only the ops in use and fails on an unused operator code."""
    used = sorted({op.opcodeIndex for sub in model.subgraphs for op in sub.operators})
    remap = {old: new for new, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[i] for i in used]
    for sub in model.subgraphs:
        for op in sub.operators:
            op.opcodeIndex = remap[op.opcodeIndex]


def quantize_16x8_without_index_fixups(tf, graph, calib, allow_float: bool) -> tuple[bytes, dict[str, Any]]:
    """16x8 through the converter's quantizer, on the float model with the Gather index fix-ups removed."""
    from tensorflow.lite.python.optimize import calibrator

    from edgec.targets.tflite.converter_step import representative_dataset, run_converter
    from edgec.targets.tflite.tools import TFLiteConversionError, captured_output

    float_data = run_converter(graph.converter(), "fp32")
    cleaned, n = drop_index_fixups(float_data)
    if not n:
        raise TFLiteConversionError("TFLiteConverter (16x8) failed: an integer tensor needs a float range")
    gen = representative_dataset(graph, calib)
    with captured_output():
        try:
            cal = calibrator.Calibrator(calibrator.add_intermediate_tensors(cleaned))
            data = cal.calibrate_and_quantize(gen, tf.float32, tf.float32, allow_float, tf.int16, tf.int64)
        except Exception as exc:  # noqa: BLE001 - one line, as the converter's errors
            raise TFLiteConversionError(f"TFLiteConverter (16x8) failed: {str(exc).splitlines()[0][:300]}") from exc
    return bytes(data), {"index_fixups_removed": n}
