"""`ModelHandle`: the model as it moves between pipeline stages.

ONNX is the one IR between stages. A handle wraps an `onnx.ModelProto` with its input
and output specs, where it came from, and what a later stage needs to know (the task,
the tokenizer folder, the example inputs used for export parity). An int8 ``.tflite``
given by the user is the one non-ONNX source: its handle has ``format == "tflite"`` and
carries the flatbuffer bytes instead of a proto; only targets that accept such models
(``Target.accepted_formats``) take it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

Dim = int | str


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of a model input or output.

    Attributes:
        name: Tensor name in the graph.
        shape: Dimensions; a string is a symbolic (dynamic) dimension.
        dtype: NumPy dtype name (``float32``, ``int64``, ``int8`` ...).
        scale: Quantization scale when the tensor itself is quantized (int8 I/O).
        zero_point: Quantization zero point when quantized.
        layout: ``NCHW``/``NHWC`` for image tensors when known, else None.
    """

    name: str
    shape: tuple[Dim, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None
    layout: str | None = None

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) and d > 0 for d in self.shape)

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }
        if self.layout:
            out["layout"] = self.layout
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TensorSpec":
        return cls(
            name=d["name"],
            shape=tuple(d["shape"]),
            dtype=d["dtype"],
            scale=d.get("scale"),
            zero_point=d.get("zero_point"),
            layout=d.get("layout"),
        )


def onnx_dtype_name(elem_type: int) -> str:
    """NumPy dtype name of an ONNX TensorProto element type."""
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name


def specs_from_value_infos(values) -> list[TensorSpec]:
    """`TensorSpec` list from ONNX ValueInfoProtos."""
    specs = []
    for v in values:
        tt = v.type.tensor_type
        dims: list[Dim] = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or f"{v.name}_dim{i}")
        specs.append(TensorSpec(v.name, tuple(dims), onnx_dtype_name(tt.elem_type)))
    return specs


@dataclass
class ModelHandle:
    """A model between stages.

    Attributes:
        proto: The ONNX model (None for a ``tflite`` source).
        inputs: Graph inputs that are fed at run time (initializers excluded).
        outputs: Graph outputs.
        source_path: What the user gave on the command line.
        source_sha256: Hash of the source file(s), for the manifest.
        format: ``onnx`` or ``tflite``.
        tflite_bytes: The flatbuffer for a ``tflite`` source.
        task: Task name when known (``image-classification``, ``feature-extraction``...).
        tokenizer_dir: Folder with tokenizer files to copy into the bundle.
        example_inputs: Inputs used for export parity (and as fallback verify data).
        export_parity_max_abs_err: PyTorch vs onnxruntime error on the example inputs.
        meta: Free-form facts stages record for later stages (e.g. ``source_kind``).
    """

    proto: "onnx.ModelProto | None"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    source_path: str
    source_sha256: str
    format: str = "onnx"
    tflite_bytes: bytes | None = None
    task: str | None = None
    tokenizer_dir: Path | None = None
    example_inputs: dict[str, np.ndarray] | None = None
    export_parity_max_abs_err: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_onnx(cls, proto: "onnx.ModelProto", source_path: str, source_sha256: str, **kw) -> "ModelHandle":
        init_names = {i.name for i in proto.graph.initializer}
        inputs = specs_from_value_infos([i for i in proto.graph.input if i.name not in init_names])
        outputs = specs_from_value_infos(proto.graph.output)
        return cls(proto=proto, inputs=inputs, outputs=outputs, source_path=source_path,
                   source_sha256=source_sha256, **kw)

    def with_proto(self, proto: "onnx.ModelProto") -> "ModelHandle":
        """A copy with a new graph (specs are re-read from it, metadata kept)."""
        fresh = ModelHandle.from_onnx(proto, self.source_path, self.source_sha256)
        # Keep layout facts of the I/O that the graph itself cannot express.
        old = {s.name: s for s in [*self.inputs, *self.outputs]}

        def keep(specs: list[TensorSpec]) -> list[TensorSpec]:
            return [replace(s, layout=old[s.name].layout) if s.name in old and s.layout is None else s for s in specs]

        return replace(self, proto=proto, inputs=keep(fresh.inputs), outputs=keep(fresh.outputs), meta=dict(self.meta))

    def serialize(self) -> bytes:
        """Deterministic bytes of the model (ONNX protobuf or the .tflite flatbuffer)."""
        if self.format == "tflite":
            assert self.tflite_bytes is not None
            return self.tflite_bytes
        assert self.proto is not None
        return self.proto.SerializeToString(deterministic=True)

    def op_counts(self) -> dict[str, int]:
        """Number of nodes per op type (main graph and subgraphs)."""
        if self.proto is None:
            return dict(self.meta.get("op_counts", {}))
        counts: Counter[str] = Counter()

        def walk(graph):
            for n in graph.node:
                counts[n.op_type] += 1
                for a in n.attribute:
                    if a.g is not None and a.g.node:
                        walk(a.g)
                    for g in a.graphs:
                        walk(g)

        walk(self.proto.graph)
        return dict(sorted(counts.items()))

    def parameter_count(self) -> int:
        """Elements in all initializers (weights)."""
        if self.proto is None:
            return int(self.meta.get("parameter_count", 0))
        total = 0
        for t in self.proto.graph.initializer:
            n = 1
            for d in t.dims:
                n *= d
            total += n
        return total


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted)."""
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode())
            h.update(b"\0")
            h.update(sha256_file(f).encode())
        return h.hexdigest()
    return sha256_file(path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
