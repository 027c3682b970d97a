"""Per-channel activation ranges, for the tensors a target quantizes per channel.

OpenVINO runs depthwise convolutions on int8 inputs with one scale per channel (each
output channel reads only its own input channel, so the scale folds into the weights);
NNCF quantizes them that way too. A per-tensor scale there wastes most of the int8 levels
of the channels with a small range: on PP-LCNet (a real MobileNet-style classifier) it cost
top-1 agreement 0.75 -> 1.0 and cosine 0.93 -> 0.99.

Each channel's range is the largest magnitude over all samples, as NNCF's per-channel
statistics are: the mean over samples of each sample's maximum (tried first) clips the
channels whose peaks come from a few images, and on PP-LCNet and the PP-OCRv4 detector that
cost more than the int8 levels it saved (cosine 0.971 -> 0.996 and 0.936 -> 0.973 with max,
16 calibration samples, benchmarks/quant_quality.py --parts corpus).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import numpy as np

from edgec.errors import CalibrationDataError

if TYPE_CHECKING:
    import onnx


def collect_channel_absmax(model: "onnx.ModelProto", samples: Iterable[dict[str, np.ndarray]], tensors: list[str],
                           axis: int = 1) -> dict[str, np.ndarray]:
    """``{tensor: absmax per channel}``: the largest magnitude per channel over all samples.

    Args:
        model: Float ONNX model.
        samples: Feeds in the model convention.
        tensors: Node outputs or graph inputs to observe.
        axis: Channel axis (1: NCHW).
    """
    if not tensors:
        return {}
    from edgec.runtimes.onnx_graph import make_session, mark_outputs, typed_copy

    g = model.graph
    init_names = {i.name for i in g.initializer}
    runtime_inputs = [i.name for i in g.input if i.name not in init_names]
    aug, types = typed_copy(model)
    fetch = [t for t in tensors if t not in runtime_inputs]
    mark_outputs(aug, fetch, types)
    sess = make_session(aug, optimize=False)
    del aug
    absmax: dict[str, np.ndarray] = {}
    n = 0
    for k, sample in enumerate(samples):
        feed = {i: sample[i] for i in runtime_inputs}
        try:
            values = dict(zip(fetch, sess.run(fetch, feed) if fetch else []))
        except Exception as exc:  # onnxruntime's own exception types
            raise CalibrationDataError(f"onnxruntime failed on calibration sample {k}: {exc}") from exc
        values.update({t: feed[t] for t in tensors if t in feed})
        for t in tensors:
            v = np.abs(np.nan_to_num(np.asarray(values[t], np.float64), posinf=0.0, neginf=0.0))
            red = tuple(i for i in range(v.ndim) if i != axis)
            m = v.max(axis=red)
            absmax[t] = np.maximum(absmax[t], m) if t in absmax else m
        n += 1
    if n == 0:
        raise CalibrationDataError("no calibration samples were given; expected at least one")
    return absmax
