"""Block-wise INT4 of one weight matrix: round to nearest, GPTQ, AWQ scales, and error-aware group scales.

Each weight ``W [K, N]`` (``x @ W``) is cut into blocks of ``block`` rows along the input
dimension ``K``; every block of every output column has its own scale (and, for ``asym``, a
uint4 zero point):

- ``sym``: int4 in [-8, 7], ``scale = max|w| / 7``, zero point 0.
- ``asym``: uint4 in [0, 15], ``scale = (max - min) / 15``, zero point ``round(-min / scale)``.

Data-aware pieces (``x [rows, K]`` are the layer's calibration inputs, ``H = x^T x / rows``):

- `group_params` with an ``importance`` per input row (``diag(H)``) shrinks each block's range
  by the factor from `CLIP_GRID` that minimizes the importance-weighted squared error of that
  block, column by column (AWQ's clip search and NNCF's scale estimation do the same against
  the layer output; the diagonal of ``H`` keeps it to one pass over the weights).
- `gptq` (Frantar et al., 2022; the column update in `edgec.compiler.gptq`) quantizes rows one at
  a time and spreads each row's error over the rows not yet quantized through the inverse Hessian,
  in lazy batches of `GPTQ_BATCH` rows. ``act_order`` quantizes rows of large ``diag(H)`` first,
  while the most rows are left to absorb the error; block scales are then fixed before the loop from
  the original weights ("static groups"), so the stored layout stays plain blocks of consecutive rows.
- `awq_scale` (Lin et al., 2023): a per-input-channel scale ``s = mean|x| ** a`` with ``a``
  searched on a grid.
- `output_error` is a layer's relative output error ``tr(E^T H E) / tr(W^T H W)``, the
  sensitivity the quantizer ranks layers by when it keeps some of them int8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgec.compiler import gptq as _gptq
from edgec.compiler.gptq import GPTQ_BATCH, GPTQ_DAMP, hessian

AWQ_GRID = tuple(i / 10 for i in range(11))
CLIP_GRID = tuple(1.0 - i / 40 for i in range(13))  # 1.0 down to 0.7


@dataclass
class Int4Weight:
    """One quantized weight.

    Attributes:
        q: Integer values ``[K, N]`` (int8 array holding int4 or uint4 values).
        scale: ``[K // block, N]`` float32.
        zero_point: ``[K // block, N]`` (asym) or None.
        block: Block size along K.
    """

    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray | None
    block: int

    def dequantize(self) -> np.ndarray:
        k = self.q.shape[0]
        s = np.repeat(self.scale, self.block, axis=0)[:k]
        z = np.repeat(self.zero_point, self.block, axis=0)[:k] if self.zero_point is not None else 0
        return ((self.q.astype(np.float32) - z) * s).astype(np.float32)

    def bits(self) -> int:
        """Storage bits: 4 per value, 32 per (float32) scale, 4 per zero point."""
        return 4 * self.q.size + 32 * self.scale.size + (4 * self.zero_point.size if self.zero_point is not None else 0)


def _block_params(w: np.ndarray, sym: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Scale (and zero point) of one block ``w [g, N]`` -> ``[N]`` each."""
    if sym:
        s = np.abs(w).max(0) / 7.0
        return np.where(s > 1e-12, s, 1.0).astype(np.float32), None
    lo, hi = np.minimum(w.min(0), 0.0), np.maximum(w.max(0), 0.0)
    s = (hi - lo) / 15.0
    s = np.where(s > 1e-12, s, 1.0).astype(np.float32)
    z = np.clip(np.round(-lo / s), 0, 15).astype(np.int8)
    return s, z


def _q(w: np.ndarray, s: np.ndarray, z: np.ndarray | None) -> np.ndarray:
    if z is None:
        return np.clip(np.round(w / s), -8, 7).astype(np.int8)
    return np.clip(np.round(w / s) + z, 0, 15).astype(np.int8)


def _dq(q: np.ndarray, s: np.ndarray, z: np.ndarray | None) -> np.ndarray:
    return (q.astype(np.float32) - (0 if z is None else z)) * s


def group_params(w: np.ndarray, block: int, sym: bool,
                 importance: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Every block's scale (and zero point), ``[K // block, N]`` each.

    Without ``importance``: the block's full range (round to nearest). With it (``[K]``, the
    weight of each input row's squared error): the shrink factor of `CLIP_GRID` with the
    smallest weighted error, per block and column.
    """
    k, n = w.shape
    nb = -(-k // block)
    scale = np.zeros((nb, n), np.float32)
    zp = None if sym else np.zeros((nb, n), np.int8)
    for b in range(nb):
        rows = slice(b * block, min((b + 1) * block, k))
        wb = w[rows].astype(np.float32)
        s, z = _block_params(wb, sym)
        if importance is not None:
            d = importance[rows].astype(np.float32)[:, None]
            best = (d * (wb - _dq(_q(wb, s, z), s, z)) ** 2).sum(0)
            for r in CLIP_GRID[1:]:
                sr, zr = _block_params(wb * np.float32(r), sym)
                err = (d * (wb - _dq(_q(wb, sr, zr), sr, zr)) ** 2).sum(0)
                better = err < best
                best = np.where(better, err, best)
                s = np.where(better, sr, s)
                if z is not None:
                    z = np.where(better, zr, z)
        scale[b] = s
        if zp is not None:
            zp[b] = z
    return scale, zp


def _quantize_with(w: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, block: int) -> Int4Weight:
    k = w.shape[0]
    s = np.repeat(scale, block, axis=0)[:k]
    z = np.repeat(zp, block, axis=0)[:k] if zp is not None else None
    return Int4Weight(_q(w, s, z), scale, zp, block)


def rtn(w: np.ndarray, block: int, sym: bool, importance: np.ndarray | None = None) -> Int4Weight:
    """Block-wise int4 of ``w [K, N]``: round to nearest (with ``importance``: on error-aware scales)."""
    scale, zp = group_params(w, block, sym, importance)
    return _quantize_with(w, scale, zp, block)


def gptq(w: np.ndarray, x: np.ndarray, block: int, sym: bool, act_order: bool = False,
         clip: bool = False, h: np.ndarray | None = None, damp: float = GPTQ_DAMP) -> Int4Weight:
    """GPTQ of ``w [K, N]`` given calibration inputs ``x [rows, K]`` (or their `hessian` ``h``).

    The column update is `edgec.compiler.gptq`'s; this picks the int4 block grid of each row.

    Args:
        act_order: Quantize rows in order of decreasing ``diag(H)``, with every block's scale
            fixed up front (static groups).
        clip: Block scales from `group_params` with ``diag(H)`` as importance (else full range).
        damp: Added to ``diag(H)``, as a share of its mean: larger trusts the calibration
            inputs less (few samples, where ``H`` spans only part of the input space).
    """
    k, n = w.shape
    p = _gptq.prepare(w, hessian(x) if h is None else h, damp, act_order)
    w0, diag = p.w[0], p.diag[0]
    if p.hinv is None:
        return rtn(w0.astype(np.float32), block, sym, diag if clip else None)
    static = act_order or clip
    if static:
        scale, zp = group_params(w0, block, sym, diag if clip else None)
    else:
        scale = np.zeros((-(-k // block), n), np.float32)
        zp = None if sym else np.zeros(scale.shape, np.int8)
    q = np.zeros((k, n), np.int8)

    def quantize(rows: np.ndarray, w1: np.ndarray, i: int) -> np.ndarray:
        row = int(rows[0])
        b = row // block
        if not static and row % block == 0:  # dynamic groups: the scale of the weights as updated so far
            s, z = _block_params(w1[0, i:i + block].astype(np.float32), sym)
            scale[b] = s
            if zp is not None:
                zp[b] = z
        s, z = scale[b], (zp[b] if zp is not None else None)
        qi = _q(w1[0, i].astype(np.float32), s, z)
        q[row] = qi
        return _dq(qi, s, z)[None]

    _gptq.run(p, quantize, block * max(1, GPTQ_BATCH // block))  # a block never straddles two batches
    return Int4Weight(q, scale, zp, block)


def output_error(w: np.ndarray, wq: np.ndarray, h: np.ndarray) -> float:
    """Relative output error ``tr(E^T H E) / tr(W^T H W)`` of ``wq`` for ``w`` under Hessian ``h``."""
    e = (wq - w).astype(np.float64)
    w64 = w.astype(np.float64)
    num = float(np.sum(e * (h @ e)))
    den = float(np.sum(w64 * (h @ w64)))
    return num / den if den > 0 else 0.0


def awq_scale(ws: list[np.ndarray], x: np.ndarray, block: int, sym: bool) -> tuple[np.ndarray, float]:
    """Per-input-channel scale ``s`` (and the chosen exponent) for weights sharing input ``x``."""
    xmean = np.abs(x).mean(0).astype(np.float64)
    xmean = np.where(xmean > 0, xmean, xmean[xmean > 0].min() if (xmean > 0).any() else 1.0)
    ref = [x @ w for w in ws]
    best = (np.inf, np.ones_like(xmean, dtype=np.float32), 0.0)
    for a in AWQ_GRID:
        s = np.power(xmean, a)
        s = (s / np.sqrt(s.max() * s.min())).astype(np.float32)
        err = 0.0
        for w, r in zip(ws, ref):
            wq = rtn(w * s[:, None], block, sym).dequantize() / s[:, None]
            err += float(((x @ wq - r) ** 2).mean())
        if err < best[0]:
            best = (err, s, a)
    return best[1], best[2]


def int8_weight(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 of ``w`` with one scale per index of ``axis``."""
    red = tuple(i for i in range(w.ndim) if i != axis)
    s = (np.abs(w).max(axis=red) / 127.0).astype(np.float32)
    s = np.where(s > 1e-12, s, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    return np.clip(np.round(w / s.reshape(shape)), -127, 127).astype(np.int8), s
