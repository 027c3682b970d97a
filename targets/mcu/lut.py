"""256-entry lookup tables for int8 element-wise functions (Sigmoid, Tanh, HardSwish ...).

An int8 element-wise function has only 256 possible inputs, so the C kernel is a table
lookup. For a ``.tflite`` source the table is produced by TFLite's own reference kernel
(LiteRT's interpreter with ``BUILTIN_REF``) on a one-op model holding the same quantization
parameters, so the C output is bit-exact with it by construction; if LiteRT is absent the
float definition is used. For an ONNX source (where onnxruntime computes DQ -> float op ->
Q) the float definition with round-half-to-even is the reference.
"""

from __future__ import annotations

import numpy as np


def float_table(fn: str, s_in: float, zp_in: int, s_out: float, zp_out: int, args: tuple = ()) -> np.ndarray:
    """The table of op record ``fn``'s float function (with its extra ``args``), rounded half to even."""
    from edgec.targets.mcu.ops import LUT_FUNCTIONS

    q = np.arange(-128, 128, dtype=np.int32)
    x = (q - zp_in).astype(np.float32) * np.float32(s_in)
    y = LUT_FUNCTIONS[fn](x.astype(np.float64), *args)
    return np.clip(np.rint(y.astype(np.float32) / np.float32(s_out)) + zp_out, -128, 127).astype(np.int8)


# Operator versions LiteRT's reference resolver registers for int8 (its default is 1).
_INT8_OP_VERSION = {"LOGISTIC": 2, "TANH": 2}


def _one_op_tflite(op_name: str, s_in: float, zp_in: int, s_out: float, zp_out: int) -> bytes:
    import flatbuffers

    from edgec.targets.mcu.import_tflite import schema

    s = schema()

    def tensor(i, name, scale, zp):
        t = s.TensorT()
        t.shape = [256]
        t.type = 9  # INT8
        t.buffer = i + 1
        t.name = name
        q = s.QuantizationParametersT()
        q.scale = [float(scale)]
        q.zeroPoint = [int(zp)]
        t.quantization = q
        return t

    code = s.OperatorCodeT()
    b = getattr(s.BuiltinOperator, op_name)
    code.builtinCode = b
    code.deprecatedBuiltinCode = b
    code.version = _INT8_OP_VERSION.get(op_name, 1)
    op = s.OperatorT()
    op.opcodeIndex = 0
    op.inputs = [0]
    op.outputs = [1]
    sg = s.SubGraphT()
    sg.tensors = [tensor(0, "x", s_in, zp_in), tensor(1, "y", s_out, zp_out)]
    sg.inputs = [0]
    sg.outputs = [1]
    sg.operators = [op]
    m = s.ModelT()
    m.version = 3
    m.operatorCodes = [code]
    m.subgraphs = [sg]
    m.buffers = [s.BufferT(), s.BufferT(), s.BufferT()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tflite_reference_table(op_name: str, s_in: float, zp_in: int, s_out: float, zp_out: int) -> np.ndarray | None:
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        return None
    interp = Interpreter(model_content=_one_op_tflite(op_name, s_in, zp_in, s_out, zp_out),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], np.arange(-128, 128, dtype=np.int8))
    interp.invoke()
    return np.asarray(interp.get_tensor(interp.get_output_details()[0]["index"]), np.int8).copy()


def lut_table(op, x, out, source: str) -> np.ndarray:
    fn = op.attrs["fn"]
    if source == "tflite" and op.attrs.get("tflite_op"):
        t = tflite_reference_table(op.attrs["tflite_op"], x.s, x.zp, out.s, out.zp)
        if t is not None:
            op.attrs["lut_source"] = "litert-reference"
            return t
    op.attrs["lut_source"] = "float"
    return float_table(fn, x.s, x.zp, out.s, out.zp, tuple(op.attrs.get("args", ())))
