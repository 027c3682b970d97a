"""Single-op .tflite flatbuffers written by hand (TFLM's ``<op>_test.cc`` style: chosen
tensors, scales and weights), for int16 (16x8) kernels the converter only makes for whole
graphs. Built with the schema's object API; LiteRT's BUILTIN_REF interpreter runs them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_TYPE = {"float32": 0, "int32": 2, "int64": 4, "int16": 7, "int8": 9}


@dataclass
class T:
    """A tensor: ``data`` for constants; ``scale``/``zp`` arrays (per-channel on ``qdim``)."""

    shape: tuple
    dtype: str
    scale: object = None
    zp: object = None
    data: np.ndarray | None = None
    qdim: int = 0


def single_op(op: str, inputs: list[T], outputs: list[T], options: tuple[str, dict] | None = None) -> bytes:
    """A model of one builtin ``op``; graph inputs are the non-constant inputs."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT()
    model.version = 3
    model.buffers = [s.BufferT()]
    sg = s.SubGraphT()
    sg.tensors = []
    for i, t in enumerate(inputs + outputs):
        tt = s.TensorT()
        tt.shape = list(t.shape)
        tt.type = _TYPE[t.dtype]
        tt.name = f"t{i}".encode()
        if t.scale is not None:
            q = s.QuantizationParametersT()
            q.scale = [float(v) for v in np.atleast_1d(t.scale)]
            q.zeroPoint = [int(v) for v in np.atleast_1d(t.zp if t.zp is not None else np.zeros(len(q.scale)))]
            q.quantizedDimension = t.qdim
            tt.quantization = q
        if t.data is not None:
            b = s.BufferT()
            b.data = list(np.ascontiguousarray(t.data.astype(t.dtype)).view(np.uint8).reshape(-1))
            model.buffers.append(b)
            tt.buffer = len(model.buffers) - 1
        sg.tensors.append(tt)
    n_in = len(inputs)
    sg.inputs = [i for i, t in enumerate(inputs) if t.data is None]
    sg.outputs = list(range(n_in, n_in + len(outputs)))
    code = s.OperatorCodeT()
    code.builtinCode = getattr(s.BuiltinOperator, op)
    code.deprecatedBuiltinCode = min(code.builtinCode, 127)
    code.version = 1
    model.operatorCodes = [code]
    o = s.OperatorT()
    o.opcodeIndex = 0
    o.inputs = list(range(n_in))
    o.outputs = sg.outputs
    if options:
        kind, fields = options
        opts = getattr(s, kind + "T")()
        for k, v in fields.items():
            setattr(opts, k, v)
        o.builtinOptionsType = getattr(s.BuiltinOptions, kind)
        o.builtinOptions = opts
    sg.operators = [o]
    model.subgraphs = [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def run_reference(data: bytes, feeds: list[np.ndarray]) -> list[np.ndarray]:
    """The outputs of LiteRT's reference kernels (BUILTIN_REF) on ``feeds``."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), feeds):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]
