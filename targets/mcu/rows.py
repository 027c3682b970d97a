"""Row-by-row in-place execution of a windowed op (Conv, DepthwiseConv, MaxPool, AveragePool).

The op's output shares its input's arena buffer (the larger of the two). Output rows are
computed one at a time (two for a regular conv of odd width, keeping conv.c's pixel pairs)
by the op's own kernel on a window of input rows (``in_h``,
``pad_h`` and ``out_h`` adjusted: bit-exact by construction, the same kernel code runs)
into a small ring of row buffers, and each row is copied to its place in the shared
buffer as soon as no later output row reads the input bytes it overwrites. The ring holds
``lag + 1`` output rows: for a 3x3 stride-1 depthwise that is 2 rows (the line buffer of
(k_h - 1) rows), for a stride-2 or shrinking op 1. Rows run top-down, or bottom-up when
that needs fewer (an op that widens the rows, e.g. a channel-expanding pointwise conv,
frees input rows from the bottom).

`schedule` decides from the shapes alone; the planner asks it for each candidate op and
`codegen` emits ``edgec_rows.c``'s driver with the returned `RowSchedule`.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgec.targets.mcu.qgraph import QGraph, QOp

# Kernels the driver wraps: QOp kind -> the kernel's C function (its row-driven twin is
# the same name with ``_rows``).
ROW_KERNELS = {"conv": "edgec_conv_s8", "dwconv": "edgec_dwconv_s8",
               "maxpool": "edgec_maxpool_s8", "avgpool": "edgec_avgpool_s8"}
# The kernel files that driver needs on top of the op's own.
ROW_FILES = {"conv": ("rows.c", "rows_conv.c"), "dwconv": ("rows.c", "rows_dwconv.c"),
             "maxpool": ("rows.c", "rows_pool.c"), "avgpool": ("rows.c", "rows_pool.c")}


@dataclass(frozen=True)
class RowSchedule:
    """How ``rows.c`` runs one op in place."""

    in_h: int
    out_h: int
    stride: int
    pad: int
    extent: int  # input rows one output row reads: (k_h - 1) * dil_h + 1
    in_row: int  # bytes of one input row
    out_row: int  # bytes of one output row
    reverse: bool
    lag: int  # a chunk of rows is copied into the buffer `lag` chunks after it is computed
    group: int = 1  # output rows per kernel call (a chunk)

    @property
    def ring_bytes(self) -> int:
        return (self.lag + 1) * self.group * self.out_row

    @property
    def mode(self) -> int:
        """The schedule as edgec_rows.h's mode constant (the geometry comes from the params)."""
        return int(self.reverse) | self.lag << 1 | self.group << 16


def row_window(g: QGraph, op: QOp) -> tuple[int, int, int] | None:
    """``(stride_h, pad_top, extent)`` of a windowed op (Conv, DepthwiseConv, pools), or None.

    ``extent`` is the input rows one output row reads: ``(k_h - 1) * dil_h + 1``.
    """
    if op.kind in ("conv", "dwconv", "conv_s16", "dwconv_s16"):
        k_h, dil = g.t(op.inputs[1]).shape[1], op.attrs["dilation"][0]
    elif op.kind in ("maxpool", "avgpool", "maxpool_s16"):
        k_h, dil = op.attrs["kernel"][0], 1
    else:
        return None
    return op.attrs["stride"][0], op.attrs["pad"][0], (k_h - 1) * dil + 1


def input_rows(o0: int, o1: int, stride: int, pad: int, extent: int, in_h: int) -> tuple[int, int]:
    """The input rows ``[a, b)`` that output rows ``[o0, o1)`` read, clipped to the input's
    ``in_h`` rows (``b <= a``: the rows read are padding only)."""
    return max(0, o0 * stride - pad), min(in_h, (o1 - 1) * stride - pad + extent)


def _lag(in_h: int, out_h: int, stride: int, pad: int, extent: int, in_row: int, out_row: int,
         reverse: bool, group: int = 1) -> int | None:
    """Chunks of ``group`` output rows (the last may be short), in the driver's order: how
    many chunks after its own each must wait before it overwrites input rows."""
    chunks = [(r, min(r + group, out_h)) for r in range(0, out_h, group)]
    chunks = chunks[::-1] if reverse else chunks
    last_read = [-1] * in_h  # the last step that reads each input row
    for step, (r0, r1) in enumerate(chunks):
        a, b = input_rows(r0, r1, stride, pad, extent, in_h)
        if b <= a:
            return None  # rows of padding only: leave such odd shapes to the plain kernel
        for i in range(a, b):
            last_read[i] = max(last_read[i], step)
    lag = 0
    for step, (r0, r1) in enumerate(chunks):
        lo, hi = r0 * out_row // in_row, min(in_h, -(-r1 * out_row // in_row))
        if lo < hi:
            lag = max(lag, max(last_read[lo:hi]) - step)
    return lag


def schedule(g: QGraph, op: QOp) -> RowSchedule | None:
    """The in-place row schedule of ``op`` (batch 1, NHWC), or None when it has none."""
    if op.kind not in ROW_KERNELS or op.attrs.get("depth_mult", 1) != 1 and op.kind == "dwconv":
        return None
    geo = row_window(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if geo is None or len(x.shape) != 4 or len(y.shape) != 4 or x.shape[0] != 1 or y.shape[0] != 1:
        return None
    if x.dtype != "int8" or y.dtype != "int8":
        return None
    stride, pad, extent = geo
    in_h, out_h = x.shape[1], y.shape[1]
    in_row, out_row = x.nbytes // in_h, y.nbytes // out_h
    # conv.c computes two pixels per pass: chunks of an even pixel count keep its pairs.
    group = 2 if op.kind == "conv" and y.shape[2] % 2 and out_h > 1 else 1
    best = None
    for reverse in (False, True):
        lag = _lag(in_h, out_h, stride, pad, extent, in_row, out_row, reverse, group)
        if lag is None:
            return None
        if best is None or lag < best.lag:
            best = RowSchedule(in_h, out_h, stride, pad, extent, in_row, out_row, reverse, lag, group)
    return best

