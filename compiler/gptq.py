"""The GPTQ column update (Frantar et al., 2022), shared by int4 block weights and int8 per-channel weights.

A weight ``W [K, N]`` (``x @ W``, ``K`` inputs, ``N`` outputs) is quantized one input row at a
time; each row's rounding error is spread over the rows not yet quantized through the inverse
of the layer's input Hessian ``H = x^T x / rows``, so the layer's output ``x @ W`` moves as
little as the grid allows. What grid a row lands on (int4 blocks with their own scales, int8
with one fixed scale per output channel) is the caller's `RowQuantizer`; the order, damping and
update are here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

GPTQ_DAMP = 0.01
GPTQ_BATCH = 128

# ``quantize(rows, w1, i) -> dequantized rows``: see `run`; the callee stores its integers itself.
RowQuantizer = Callable[[int, np.ndarray, int], np.ndarray]


def hessian(x: np.ndarray) -> np.ndarray:
    """``x^T x / rows`` in float64."""
    x64 = x.astype(np.float64)
    return x64.T @ x64 / max(len(x), 1)


@dataclass
class Prepared:
    """Weights and their Hessians made ready for `run`, for ``G`` independent layers (or conv groups) of one shape.

    Attributes:
        w: The weights in float64 ``[G, K, N]``, rows of dead inputs (``diag(H) == 0``) zeroed.
        diag: ``diag(H)`` before damping (dead inputs at 1), ``[G, K]``.
        perm: The order rows are quantized in, per layer ``[G, K]``.
        hinv: Upper Cholesky factors of the damped inverse Hessians in ``perm`` order ``[G, K, K]``;
            None when one ``H`` is not positive definite even damped (the caller rounds to nearest).
    """

    w: np.ndarray
    diag: np.ndarray
    perm: np.ndarray
    hinv: np.ndarray | None


def prepare(w: np.ndarray, h: np.ndarray, damp: float = GPTQ_DAMP, act_order: bool = False) -> Prepared:
    """Damp ``h`` (``damp`` times the mean of its diagonal), order the rows, invert.

    Args:
        w: ``[K, N]``, or ``[G, K, N]`` for ``G`` layers at once (a grouped conv's groups).
        h: ``[K, K]`` (or ``[G, K, K]``) Hessian of the layer's inputs.
        damp: Added to ``diag(H)`` as a share of its mean: larger trusts the calibration inputs less.
        act_order: Quantize rows of large ``diag(H)`` first, while the most rows are left to
            absorb the error.
    """
    w3, h3 = (w[None], h[None]) if w.ndim == 2 else (w, h)
    k = w3.shape[1]
    h3 = h3.astype(np.float64).copy()
    w3 = w3.astype(np.float64).copy()
    idx = np.arange(k)
    dead = h3[:, idx, idx] == 0
    h3[:, idx, idx] = np.where(dead, 1.0, h3[:, idx, idx])
    w3[dead] = 0.0
    diag = h3[:, idx, idx].copy()
    h3[:, idx, idx] += damp * diag.mean(axis=1, keepdims=True)
    perm = np.argsort(-diag, axis=1, kind="stable") if act_order else np.broadcast_to(idx, diag.shape).copy()
    hp = np.take_along_axis(np.take_along_axis(h3, perm[:, :, None], 1), perm[:, None, :], 2)
    try:
        hinv = np.linalg.cholesky(np.linalg.inv(hp)).transpose(0, 2, 1)  # upper
    except np.linalg.LinAlgError:
        hinv = None
    return Prepared(w3, diag, perm, hinv)


def run(p: Prepared, quantize: RowQuantizer, batch: int = GPTQ_BATCH) -> None:
    """Quantize every row of ``p.w`` in ``p.perm`` order through ``quantize``, spreading each row's
    error over the rows left (lazy batches of ``batch`` rows; ``p.hinv`` must be set).

    ``quantize(rows, w1, i)`` gets the original index of the row quantized now in each layer
    (``[G]``) and the batch ``w1 [G, batch, N]`` it sits at ``w1[:, i]`` in, and returns the
    dequantized rows ``[G, N]``.
    """
    g, k, n = p.w.shape
    hinv, perm = p.hinv, p.perm
    w = np.take_along_axis(p.w, perm[:, :, None], 1)
    for i1 in range(0, k, batch):
        i2 = min(i1 + batch, k)
        w1, err1, hinv1 = w[:, i1:i2].copy(), np.zeros((g, i2 - i1, n)), hinv[:, i1:i2, i1:i2]
        for i in range(i2 - i1):
            e = (w1[:, i] - quantize(perm[:, i1 + i], w1, i)) / hinv1[:, i, i, None]
            w1[:, i + 1:] -= hinv1[:, i, i + 1:, None] * e[:, None, :]
            err1[:, i] = e
        w[:, i2:] -= hinv[:, i1:i2, i2:].transpose(0, 2, 1) @ err1
