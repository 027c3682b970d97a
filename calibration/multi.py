"""Ranges of every float tensor under several calibration methods, in one pass over the data.

`collect_ranges_multi` feeds each tensor to one observer per method while onnxruntime runs
the model once per sample; ``--calib-method auto`` and the accuracy gate's per-tensor
method switching compare those ranges by the error they cause (see
`edgec.compiler.quant_stage`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import numpy as np

from edgec.calibration.collect import _FLOAT_TYPES, _add_outputs, _augment, _session
from edgec.calibration.observers import make_observer
from edgec.calibration.types import TensorRange
from edgec.errors import CalibrationDataError

if TYPE_CHECKING:
    import onnx

ALL_METHODS = ("minmax", "mean-minmax", "percentile", "entropy", "mse")


def collect_ranges_multi(model: "onnx.ModelProto", samples: Iterable[dict[str, np.ndarray]],
                         methods: tuple[str, ...] = ALL_METHODS,
                         tensors: list[str] | None = None) -> dict[str, dict[str, TensorRange]]:
    """``{method: {tensor: TensorRange}}`` for the float graph inputs and node outputs.

    Args:
        model: Float ONNX model.
        samples: Feeds in the model convention.
        methods: Observer names.
        tensors: Only these tensors (default: every float input and node output).

    Raises:
        CalibrationDataError: No samples, or onnxruntime failing on one.
    """
    for m in methods:
        make_observer(m)
    g = model.graph
    init_names = {i.name for i in g.initializer}
    runtime_inputs = [i.name for i in g.input if i.name not in init_names]
    aug, types = _augment(model)
    node_outputs = [o for n in g.node for o in n.output if o and types.get(o, 1) in _FLOAT_TYPES]
    observed_inputs = [n for n in runtime_inputs if types.get(n, 1) in _FLOAT_TYPES]
    if tensors is not None:
        wanted = set(tensors)
        node_outputs = [o for o in node_outputs if o in wanted]
        observed_inputs = [o for o in observed_inputs if o in wanted]
    obs = {t: {m: make_observer(m) for m in methods} for t in [*observed_inputs, *node_outputs]}
    _add_outputs(aug, node_outputs, types)
    sess = _session(aug)
    del aug
    n_seen = 0
    for k, sample in enumerate(samples):
        feed = {n: sample[n] for n in runtime_inputs}
        try:
            results = sess.run(node_outputs, feed) if node_outputs else []
        except Exception as exc:  # onnxruntime's own exception types
            raise CalibrationDataError(f"onnxruntime failed on calibration sample {k}: {exc}") from exc
        for name in observed_inputs:
            for o in obs[name].values():
                o.update(feed[name])
        for name, value in zip(node_outputs, results):
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                for o in obs[name].values():
                    o.update(value)
        n_seen += 1
    if n_seen == 0:
        raise CalibrationDataError("no calibration samples were given; expected at least one")
    out: dict[str, dict[str, TensorRange]] = {m: {} for m in methods}
    for t, per in obs.items():
        for m, o in per.items():
            out[m][t] = o.compute_range() if o.count else TensorRange(0.0, 0.0, m, 0.0)
    return out
