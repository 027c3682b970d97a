"""One place for running ONNX graphs in onnxruntime (CPU): sessions, intermediate outputs, runs.

Calibration, the quantizer's error searches, bias correction, ``debug layers`` and the
onnxruntime runner all read tensors of an ONNX graph. They share this module instead of
each building sessions and marking outputs their own way (Polygraphy's ``SessionFromOnnx``
plus ``ModifyOutputs(outputs=MARK_ALL)`` is the pattern).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

if TYPE_CHECKING:
    import onnx

# ONNX element types of float tensors: FLOAT, FLOAT16, DOUBLE, BFLOAT16.
FLOAT_TYPES = frozenset({1, 10, 11, 16})

# `with_outputs(model, MARK_ALL)`: every float node output becomes a graph output.
MARK_ALL = None


def make_session(model: Any, threads: int | None = None, *, optimize: bool = True):
    """An onnxruntime CPU session.

    Args:
        model: An ``onnx.ModelProto``, serialized bytes, or a path to an ``.onnx`` file.
        optimize: False turns graph optimizations off, so fusions cannot remove nodes
            whose outputs were marked.
        threads: Intra-op threads (with one inter-op thread, for repeatable timing);
            None leaves onnxruntime's default.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if hasattr(model, "SerializeToString"):
        src: Any = model.SerializeToString()
    elif isinstance(model, (bytes, bytearray)):
        src = bytes(model)
    else:
        src = str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


def typed_copy(model: "onnx.ModelProto") -> tuple["onnx.ModelProto", dict[str, int]]:
    """A copy of ``model`` without value_info, and the element type of every tensor.

    value_info is dropped from the copy: onnxruntime infers what it needs, and a stale entry
    (an exporter's wrong dtype, shapes from before the dims were fixed) could contradict an
    intermediate tensor once it is made a graph output. Types come from shape inference on
    that clean copy; if inference fails (custom domains), from the model's own annotations.
    """
    import onnx

    aug = onnx.ModelProto()
    aug.CopyFrom(model)
    del aug.graph.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(aug)
    except Exception:  # custom domains: fall back to the model's own annotations
        inferred = model
    types: dict[str, int] = {}
    g = inferred.graph
    for vi in [*g.value_info, *g.input, *g.output]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    return aug, types


def float_tensors(model: "onnx.ModelProto") -> set[str]:
    """Names of the tensors of ``model`` whose element type is float."""
    _, types = typed_copy(model)
    return {n for n, t in types.items() if t in FLOAT_TYPES}


def mark_outputs(aug: "onnx.ModelProto", names: Iterable[str], types: dict[str, int]) -> None:
    """Make ``names`` graph outputs of ``aug`` (a `typed_copy`), declared by element type only."""
    import onnx
    from onnx import helper

    existing = {o.name for o in aug.graph.output}
    for name in names:
        if name in existing:
            continue
        existing.add(name)
        if name in types:
            aug.graph.output.append(helper.make_tensor_value_info(name, types[name], None))
        else:  # onnxruntime accepts an untyped output and infers it
            aug.graph.output.append(onnx.ValueInfoProto(name=name))


def with_outputs(model: "onnx.ModelProto", names: Iterable[str] | None = MARK_ALL) -> "onnx.ModelProto":
    """A copy of ``model`` whose graph outputs also include ``names`` (`MARK_ALL`: every float node output)."""
    aug, types = typed_copy(model)
    if names is MARK_ALL:
        names = [o for n in model.graph.node for o in n.output if o and types.get(o, 1) in FLOAT_TYPES]
    mark_outputs(aug, names, types)
    return aug


def run(model: Any, samples: Iterable[dict[str, np.ndarray]], *, outputs: list[str] | None = None,
        session=None) -> list[dict[str, np.ndarray]]:
    """Outputs of ``model`` (its graph outputs, or ``outputs``) for each sample.

    Args:
        model: What `make_session` accepts; unused when ``session`` is given.
        samples: Feeds in the model convention; keys beyond the model's inputs are ignored.
        outputs: Tensor names to fetch (they must be graph outputs: see `with_outputs`).
        session: An existing session to reuse.
    """
    sess = session or make_session(model)
    names = outputs or [o.name for o in sess.get_outputs()]
    inputs = [i.name for i in sess.get_inputs()]
    result = []
    for s in samples:
        values = sess.run(names, {n: s[n] for n in inputs})
        result.append(dict(zip(names, values)))
    return result
