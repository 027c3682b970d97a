"""Resize (bilinear) of an NHWC image: ONNX ``Resize`` in linear mode, TFLite ``RESIZE_BILINEAR``.

The int8 arithmetic is TFLite's integer reference kernel: the output keeps the input's scale
and zero point, and the bytes are interpolated with 10-bit fixed-point source coordinates.
ONNX's ``half_pixel`` (what tf2onnx writes for ``half_pixel_centers``), ``align_corners``
and ``asymmetric`` coordinates map onto TFLite's two flags.
"""

from __future__ import annotations

from edgec.targets.mcu.ops.record import OpRecord
from edgec.targets.mcu.qgraph import QOp, QTensor

_COORDS = {"half_pixel": (False, True), "pytorch_half_pixel": (False, True), "align_corners": (True, False),
           "asymmetric": (False, False)}


def _scale_10(in_size: int, out_size: int, align_corners: bool) -> int:
    """TFLite's ratio in 10-bit fixed point (``ResizeBilinearInteger``)."""
    if align_corners and out_size > 1:
        return ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    return ((1 << 10) * in_size + out_size // 2) // out_size


def emit_resize(op, ctx) -> list[str]:
    x, out = ctx.g.t(op.inputs[0]), ctx.g.t(op.outputs[0])
    align, half = op.attrs["align_corners"], op.attrs["half_pixel"]
    fields = {"in_dims": list(x.shape), "out_h": out.shape[1], "out_w": out.shape[2],
              "scale_h": _scale_10(x.shape[1], out.shape[1], align), "scale_w": _scale_10(x.shape[2], out.shape[2], align),
              "half_pixel": int(half)}
    p = ctx.param_struct("edgec_resize_params", fields, op)
    return [f"edgec_resize_bilinear_s8(&{p}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


def onnx_resize(ctx, node):
    x = ctx.q_of(node.input[0], node)
    y, _ = ctx.out_q(node)
    xt, yt = ctx.tensors[x], ctx.tensors[y]
    mode = next((a.s.decode() for a in node.attribute if a.name == "coordinate_transformation_mode"), "half_pixel")
    align, half = _COORDS[mode]
    flags = {"align_corners": align, "half_pixel": half}
    if (xt.s, xt.zp) == (yt.s, yt.zp):
        ctx.add_op("resize", node, [x], [y], flags)
        return
    mid = ctx.add_tensor(QTensor(ctx.fresh(y), yt.shape, xt.dtype, xt.scale, xt.zero_point))
    ctx.add_op("resize", node, [x], [mid], flags)
    ctx.add_op("requant", node, [mid], [y], {"act": (-128, 127)})


def resize_constraints(v) -> str | None:
    if v.attr("mode", "nearest") != "linear":
        return f"mode {v.attr('mode', 'nearest')} (only linear: bilinear)"
    mode = v.attr("coordinate_transformation_mode", "half_pixel")
    if mode not in _COORDS:
        return f"coordinate_transformation_mode {mode} (supported: {', '.join(_COORDS)})"
    if v.attr("antialias", 0) or v.attr("axes") is not None:
        return "antialias or axes"
    shape = v.shape(0)
    if shape is not None and len(shape) != 4:
        return "a tensor that is not a 4-D image"
    scales, sizes = v.const(2), v.const(3)
    if scales is not None and scales.size and any(float(f) != 1.0 for f in scales.reshape(-1)[:2]):
        return "resizing the batch or channel axis (only height and width)"
    if sizes is not None and sizes.size and shape is not None and tuple(sizes.reshape(-1)[:2]) != tuple(shape[:2]):
        return "resizing the batch or channel axis (only height and width)"
    if (scales is None or not scales.size) and (sizes is None or not sizes.size):
        return "scales or sizes must be constants"
    return None


def tflite_resize(g, opname, node, ins, outs, opts) -> QOp:
    return QOp("resize", node, ins[:1], outs,
               {"align_corners": bool(opts.alignCorners), "half_pixel": bool(opts.halfPixelCenters)}, opname)


RECORDS = (
    OpRecord("Resize", kinds=("resize",), emit=emit_resize, kernels=("resize.c",), headers=("edgec_resize.h",),
             onnx={"Resize": {11: onnx_resize}}, tflite={"RESIZE_BILINEAR": tflite_resize},
             constraints=(resize_constraints,), keeps_input_qparams=frozenset({"Resize"})),
)
