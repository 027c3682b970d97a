"""Per-channel scales for depthwise-conv inputs on runtimes with per-tensor activation scales only.

A depthwise convolution's input channels often differ in range by 100x (PP-LCNet, MobileNet):
one per-tensor int8 scale leaves the small channels a few levels. OpenVINO takes per-channel
activation scales there (`QuantScheme.per_channel_depthwise_inputs`); TensorRT does not (its
activation scales are per tensor). Since each output channel of a depthwise conv reads only
its own input channel, the per-channel scale can be moved into the weights instead:

    y = dwconv(x, W)  =  dwconv(x / s, W * s)        (s per channel)

``x / s`` is an inserted ``Mul`` by a constant vector (TensorRT fuses it into the pointwise
kernel of the producer's activation and the following QuantizeLinear), and ``W * s`` is
absorbed exactly by the per-output-channel int8 weight scales. ``s_c = a_c / max(a)`` with
``a_c`` the channel's mean per-sample max ``|x_c|``, so every channel of ``x / s`` spans the
int8 grid; nearly dead channels are floored (their scale would blow up their int32 bias).
The float function is unchanged (up to float rounding).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgec.compiler.model import ModelHandle

MIN_RATIO = 1e-2  # a channel is scaled up by at most 100x
MIN_SPREAD = 2.0  # below this max/min channel ratio a per-tensor scale already serves every channel


def scale_depthwise_inputs(model: "ModelHandle", samples: list[dict[str, np.ndarray]]
                           ) -> tuple["ModelHandle", dict[str, Any]]:
    """Insert ``Mul(x, 1/s)`` in front of each depthwise conv and fold ``s`` into its weights."""
    import onnx
    from onnx import helper, numpy_helper

    from edgec.calibration.channels import collect_channel_absmax
    from edgec.compiler.quantize import depthwise_inputs, is_depthwise

    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    tensors = depthwise_inputs(proto)
    absmax = collect_channel_absmax(proto, samples, tensors)
    used = set(inits) | {o for n in g.node for o in n.output} | {i.name for i in g.input}
    weight_users: dict[str, int] = {}
    for n in g.node:
        for i in n.input[1:]:
            weight_users[i] = weight_users.get(i, 0) + 1

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        return name

    ordered, scaled = [], []
    for n in g.node:
        x = n.input[0] if n.input else None
        a = absmax.get(x) if x is not None and is_depthwise(n, inits) else None
        if a is None or a.max(initial=0.0) <= 0 or weight_users.get(n.input[1], 0) != 1:
            ordered.append(n)
            continue
        top = float(a.max())
        ratio = np.maximum(a / top, MIN_RATIO)
        if float(ratio.min()) * MIN_SPREAD > 1.0:
            ordered.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
        mult = w.shape[0] // ratio.size  # output channel o reads input channel o // multiplier
        s = np.repeat(ratio, mult).astype(np.float32).reshape([-1] + [1] * (w.ndim - 1))
        w_name, inv_name, out = fresh(f"{n.input[1]}_dw_scaled"), fresh(f"{x}_dw_inv_scale"), fresh(f"{x}_dw_scaled")
        g.initializer.append(numpy_helper.from_array((w * s).astype(np.float32), w_name))
        inv = (1.0 / ratio).astype(np.float32).reshape([1, -1] + [1] * (w.ndim - 2))
        g.initializer.append(numpy_helper.from_array(inv, inv_name))
        ordered.append(helper.make_node("Mul", [x, inv_name], [out], name=fresh(f"{n.name or out}_input_scale")))
        n.input[0], n.input[1] = out, w_name
        ordered.append(n)
        scaled.append(n.name or n.output[0])
    del g.node[:]
    g.node.extend(ordered)
    keep = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    live = [t for t in g.initializer if t.name in keep]
    del g.initializer[:]
    g.initializer.extend(live)
    return model.with_proto(proto), {"scaled_depthwise": len(scaled), "nodes": scaled}
