"""Scale a recurrent cell's sequence input to its hidden state's range, for runtimes that quantize both alike.

OpenVINO's CPU plugin runs an int8 LSTMSequence through oneDNN's int8 RNN, which quantizes the hidden
state H (a tanh output: ``[-1, 1]``) with the scale and zero point of the sequence input X. A CNN's
features in front of the LSTM span far more (ddddocr's CRNN: X in ``[-7.7, 7.0]``), which leaves H some
35 int8 levels (OpenVINO cosine vs float 0.9930, worst sample 0.978; the float LSTM 0.9974 / 0.993).
Since only ``W @ X`` reads X::

    LSTM(X, W, R)  =  LSTM(X / a, W * a, R)        (a scalar)

``X / a`` is an inserted ``Mul`` by a constant (the runtime fuses it with X's quantization), ``W * a``
is absorbed by W's int8 scales, and with ``a = max |X|`` X and H then share one grid that fits both
(ddddocr: 0.9966 / 0.993). The float function is unchanged (up to float rounding).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgec.calibration import TensorRange
    from edgec.compiler.model import ModelHandle

STATE_BOUND = 1.0  # |H| of an LSTM/GRU/RNN cell with the default (tanh) output activation
MIN_CHANGE = 1.1  # X already within this factor of the state's range: left as it is


def scale_recurrent_inputs(model: "ModelHandle", ranges: "dict[str, TensorRange]", ops: frozenset[str]
                           ) -> tuple["ModelHandle", "dict[str, TensorRange]", dict[str, Any]]:
    """Insert ``Mul(X, 1/a)`` in front of each ``ops`` cell and fold ``a`` into its W.

    Returns the model, ``ranges`` with the scaled inputs' ranges added, and ``{"scaled": {node: a}}``.
    """
    import onnx
    from onnx import helper, numpy_helper

    proto = model.proto
    inits = {t.name: t for t in proto.graph.initializer}
    plan = []
    for n in proto.graph.node:
        if n.op_type not in ops or len(n.input) < 2 or n.input[0] in inits or n.input[1] not in inits:
            continue
        r = ranges.get(n.input[0])
        if r is None or inits[n.input[1]].data_type != onnx.TensorProto.FLOAT:
            continue
        a = max(abs(r.rmin), abs(r.rmax)) / STATE_BOUND
        if a > 0 and not (1 / MIN_CHANGE <= a <= MIN_CHANGE) and np.isfinite(a):
            plan.append((n.name, float(np.float32(a))))
    if not plan:
        return model, ranges, {"scaled": {}}
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    g = out.graph
    by_name = {n.name: n for n in g.node}
    ranges = dict(ranges)
    for name, a in plan:
        n = by_name[name]
        x, w = n.input[0], n.input[1]
        xs, ws, inv = f"{x}_{name}_scaled", f"{w}_{name}_scaled", f"{name}_input_scale"
        g.initializer.extend([
            numpy_helper.from_array(np.array(1.0 / a, np.float32), inv),
            numpy_helper.from_array((numpy_helper.to_array(inits[w]).astype(np.float32) * np.float32(a)), ws)])
        mul = helper.make_node("Mul", [x, inv], [xs], name=f"{name}_input_scaling")
        g.node.insert(list(g.node).index(n), mul)
        n.input[0], n.input[1] = xs, ws
        r = ranges[x]
        ranges[xs] = dataclasses.replace(r, rmin=r.rmin / a, rmax=r.rmax / a,
                                         absmax_seen=None if r.absmax_seen is None else r.absmax_seen / a)
    from edgec.compiler.qdq_graph import drop_unused_initializers

    drop_unused_initializers(g)
    return model.with_proto(out), ranges, {"scaled": {name: round(a, 4) for name, a in plan}}
