"""Pad, Transpose and Concat emitters."""

from __future__ import annotations

from edgec.targets.mcu.ops.eltwise import requant_fields


def _pad4(v: list[int], fill: int = 1) -> list[int]:
    return [fill] * (4 - len(v)) + list(v)


def emit_pad(op, ctx) -> list[str]:
    g = ctx.g
    x, out = g.t(op.inputs[0]), g.t(op.outputs[0])
    before = _pad4([p[0] for p in op.attrs["pads"]], 0)
    fields = {"in_dims": _pad4(list(x.shape)), "out_dims": _pad4(list(out.shape)), "pad_before": before,
              "value": op.attrs["value"]}
    p = ctx.param_struct("edgec_pad_params", fields, op)
    return [f"edgec_pad_s8(&{p}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


def emit_transpose(op, ctx) -> list[str]:
    g = ctx.g
    x = g.t(op.inputs[0])
    perm = list(op.attrs["perm"])
    k = 4 - len(perm)
    perm4 = list(range(k)) + [p + k for p in perm]
    p = ctx.param_struct("edgec_transpose_params", {"in_dims": _pad4(list(x.shape)), "perm": perm4}, op)
    return [f"edgec_transpose_s8(&{p}, {ctx.ref(op.inputs[0])}, {ctx.ref(op.outputs[0], True)});"]


def emit_concat(op, ctx) -> list[str]:
    g = ctx.g
    out = g.t(op.outputs[0])
    axis = op.attrs["axis"]
    outer = 1
    for d in out.shape[:axis]:
        outer *= d
    out_inner = out.size // outer
    lines, off = [], 0
    for name in op.inputs:
        x = g.t(name)
        in_inner = x.size // outer
        rq = "0"
        if (x.s, x.zp) != (out.s, out.zp):
            rq = "&" + ctx.param_struct("edgec_requant_params", requant_fields(x, out), op)
        lines.append(f"edgec_concat_part_s8({ctx.ref(name)}, {ctx.ref(op.outputs[0], True)}, {outer}, "
                     f"{in_inner}, {out_inner}, {off}, {rq});")
        off += in_inner
    return lines


EMITTERS = {"pad": emit_pad, "transpose": emit_transpose, "concat": emit_concat}
