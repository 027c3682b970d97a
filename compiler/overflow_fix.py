"""int8 weights whose products cannot overflow the int16 pair sums of x86 CPUs without VNNI.

On AVX2 and AVX-512F without VNNI, oneDNN (OpenVINO's CPU plugin) and onnxruntime's MLAS multiply u8
activations by s8 weights with ``vpmaddubsw``, which adds each pair of products in saturating int16: with
inputs up to 255, two weights of 127 reach 64770, twice what int16 holds. (An s8 activation is shifted by
128 into u8 first, so the bound is the same.) `QuantScheme.overflow_fix` picks the cure per weighted op:

* ``7-bit``: every weight in ``[-63, 63]`` (NNCF's overflow fix): no pair can overflow, whatever the
  kernel pairs, at the cost of one bit.
* ``pairs``: each output channel's scale is set by its largest pair, not its largest weight, so that
  ``|q_a + q_b| <= 128`` for every pair the kernels add (255 * 128 = 32640 fits). A channel whose big
  weights sit in different pairs, or have opposite signs, keeps the full 8-bit scale; in the worst case
  (two equal largest weights of one sign side by side) it is the 7-bit grid. ``pairs-im2col`` also
  bounds the pairs of a channels-last im2col (onnxruntime).

Which products are paired was measured on an AVX2 EPYC with a weight pair of 127 against inputs of 255
(OpenVINO 2026.4, onnxruntime 1.31): adjacent input channels ``(2k, 2k + 1)`` at one kernel tap, in
convolutions (1x1, 3x3, grouped) and fully connected layers of both runtimes; onnxruntime's NHWC im2col
also pairs the last channel of one tap with the first channel of the next where a group has an odd number
of channels (OpenVINO pads it; `PAIRS_IM2COL` bounds those too). Kernel taps of one channel are never paired
in a grouped or plain conv.
Depthwise convs keep 8 bits (their kernels widen each product to int32), except those with a channel
multiplier above 1: both runtimes run them as an im2col gemm pairing consecutive kernel taps (the channels-last
pairs of a one-channel group). ConvTranspose, whose pairing was not measured, takes the 7-bit grid.
"""

from __future__ import annotations

import numpy as np

from edgec.compiler import qdq_graph as qg

SEVEN_BIT_MAX = 63  # 2 * 255 * 63 = 32130 fits int16, 2 * 255 * 127 does not
PAIR_SUM_MAX = 128  # the largest |q_a + q_b| a pair may reach: 255 * 128 = 32640 fits int16
PAIR_SCALE_MAX = PAIR_SUM_MAX - 1  # rounding moves each weight by at most 1/2, a pair by at most 1

OVERFLOW_FIXES = (None, "first-layer", "all", "all-with-depthwise", "pairs", "pairs-im2col")
# A layer's grid: every weight 7-bit; channel pairs per tap bounded; those and the channels-last im2col's too.
SEVEN_BIT, PAIRS, PAIRS_IM2COL = "7-bit", "pairs", "pairs-im2col"
PAIR_GRIDS = (PAIRS, PAIRS_IM2COL)


def weight_grids(nodes, qnodes: set[int], graph_inputs, inits, overflow_fix: str | None) -> dict[int, str]:
    """Node id -> `layer_grid` for the quantized nodes whose weights `QuantScheme.overflow_fix` bounds.

    Raises:
        ValueError: ``overflow_fix`` is none of `OVERFLOW_FIXES`.
    """
    if overflow_fix not in OVERFLOW_FIXES:
        raise ValueError(f"QuantScheme.overflow_fix {overflow_fix!r}: expected one of {OVERFLOW_FIXES}")
    if overflow_fix is None:
        return {}
    if overflow_fix == "first-layer":
        return {i: SEVEN_BIT for i in qg.first_layers(nodes, graph_inputs, inits) & qnodes}
    grids = {id(n): layer_grid(n, inits, overflow_fix) for n in nodes if id(n) in qnodes}
    return {i: g for i, g in grids.items() if g is not None}


def layer_grid(n, inits, overflow_fix: str | None) -> str | None:
    """The grid (`SEVEN_BIT`, `PAIRS`, `PAIRS_IM2COL`) of weighted node ``n`` under an ``overflow_fix`` that bounds
    every layer (``all``, ``all-with-depthwise``, ``pairs``, ``pairs-im2col``); None: 8 bits."""
    from edgec.compiler.quantize import is_depthwise

    if overflow_fix == "all-with-depthwise":
        return SEVEN_BIT
    if overflow_fix not in ("all", *PAIR_GRIDS):
        return None
    multiplier = _channel_multiplier(n, inits) if is_depthwise(n, inits) else 0
    if multiplier == 1:
        return None
    if overflow_fix == "all" or n.op_type == "ConvTranspose":
        return SEVEN_BIT
    return PAIRS_IM2COL if multiplier > 1 else overflow_fix


def _channel_multiplier(n, inits) -> int:
    """Outputs per group of a depthwise conv: at 1 its kernels widen each product to int32; above 1 (a conv
    with one input channel per group but several outputs) both runtimes run it as an im2col gemm that pairs
    consecutive kernel taps (measured as the module docstring says)."""
    group = next((a.i for a in n.attribute if a.name == "group"), 1)
    return int(inits[n.input[1]].dims[0]) // max(group, 1)


def pair_indices(shape: tuple[int, ...], node, input_index: int, grid: str = PAIRS) -> tuple[np.ndarray, int]:
    """The flat indices ``[P, 2]`` of the weight pairs the kernels add in int16 (-1: padding), and the
    output-channel axis.

    Conv ``[O, C, k...]``: channels ``(2k, 2k + 1)`` at each tap, plus, for odd ``C`` on the `PAIRS_IM2COL`
    grid, consecutive entries of the channels-last flattening of each output channel's ``k... x C`` (an NHWC
    im2col). Gemm / MatMul: consecutive entries along the summed axis.
    """
    from edgec.compiler.weight_axis import weight_axis

    rank = len(shape)
    out = weight_axis(node, input_index, rank) if rank >= 2 else None
    red = weight_axis(node, input_index, rank, reduction=True) if rank >= 2 else None
    idx = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    if out is None or red is None:  # a vector weight: one row
        out, red, idx = 0, 1, idx.reshape(1, -1)
    rows = np.moveaxis(idx, (out, red), (0, -1))  # [O, ..., C]
    lanes = [rows.reshape(rows.shape[0], -1, rows.shape[-1])]  # [O, taps, C]: channel pairs per tap
    if grid == PAIRS_IM2COL and node.op_type == "Conv" and rows.shape[-1] % 2:
        lanes.append(rows.reshape(rows.shape[0], 1, -1))  # [O, 1, taps * C]: NHWC im2col pairs
    pairs = []
    for lane in lanes:
        if lane.shape[-1] % 2:
            lane = np.concatenate([lane, np.full(lane.shape[:-1] + (1,), -1, np.int64)], axis=-1)
        pairs.append(lane.reshape(-1, 2))
    return np.concatenate(pairs), out


def _reach(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``max(|a|, |b|, |a + b|)``: the largest |sum| a pair of weights reaches over inputs in [0, 255] / 255."""
    return np.maximum(np.maximum(np.abs(a), np.abs(b)), np.abs(a + b))


def _pair_reach(v: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """`_reach` of each pair of flat indices ``pairs`` into ``v`` (-1: the zero padding)."""
    flat = np.concatenate([v.reshape(-1), np.zeros(1, v.dtype)])
    return _reach(flat[pairs[:, 0]], flat[pairs[:, 1]])


def pair_scales(w: np.ndarray, node, input_index: int, axis: int | None, min_scale: float,
                grid: str = PAIRS) -> np.ndarray:
    """Per-channel weight scales (along ``axis``; None: one per tensor) under which every pair of ``grid``'s
    integers sums to at most `PAIR_SUM_MAX` in magnitude and every integer to at most 127."""
    pairs, out = pair_indices(w.shape, node, input_index, grid)
    reach = _pair_reach(w.astype(np.float64), pairs)
    if axis is None:
        worst = np.array(reach.max(initial=0.0))
    else:
        channel = np.unravel_index(np.where(pairs[:, 0] >= 0, pairs[:, 0], 0), w.shape)[axis]
        worst = np.zeros(w.shape[axis], np.float64)
        np.maximum.at(worst, channel, reach)
    scales = (worst / PAIR_SCALE_MAX).astype(np.float32)
    return np.where(scales > min_scale, scales, np.float32(1.0)).astype(np.float32)


def recurrent_pair_reach(w: np.ndarray) -> np.ndarray:
    """Per gate row of a recurrent cell's W or R (``[directions, rows, size]``): the largest `_reach` of
    consecutive entries along ``size``, over both directions."""
    if w.shape[-1] % 2:
        w = np.concatenate([w, np.zeros(w.shape[:-1] + (1,), w.dtype)], axis=-1)
    return _reach(w[..., 0::2].astype(np.float64), w[..., 1::2].astype(np.float64)).max(axis=(0, 2))


def pairs_fit(q: np.ndarray, node, input_index: int, grid: str = PAIRS) -> bool:
    """Whether every pair of ``grid`` in the int8 weight ``q`` stays within `PAIR_SUM_MAX`."""
    pairs, _ = pair_indices(q.shape, node, input_index, grid)
    return bool(_pair_reach(q.astype(np.int32), pairs).max(initial=0) <= PAIR_SUM_MAX)


def fit_pairs(q: np.ndarray, node, input_index: int, grid: str = PAIRS) -> np.ndarray:
    """``q`` with the larger integer of each pair over `PAIR_SUM_MAX` moved toward zero until it fits (for a
    rounding that does not keep the bound itself, GPTQ's error feedback)."""
    pairs, _ = pair_indices(q.shape, node, input_index, grid)
    flat = np.concatenate([q.reshape(-1).astype(np.int32), np.zeros(1, np.int32)])
    while True:
        a, b = flat[pairs[:, 0]], flat[pairs[:, 1]]
        excess = np.abs(a + b) - PAIR_SUM_MAX
        bad = np.flatnonzero(excess > 0)
        if bad.size == 0:
            break
        for p in bad:  # one pair at a time: an entry may sit in two pairs (odd channel counts)
            i, j = pairs[p]
            s = flat[i] + flat[j]
            over = abs(s) - PAIR_SUM_MAX
            if over <= 0:
                continue
            k = i if abs(flat[i]) >= abs(flat[j]) else j
            flat[k] -= int(np.sign(s)) * over
    return flat[:-1].reshape(q.shape).astype(np.int8)
