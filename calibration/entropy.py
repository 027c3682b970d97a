"""KL-divergence (entropy) threshold searches over a histogram.

The method (Migacz, "8-bit inference with TensorRT", GTC 2017): for each candidate
threshold, the reference distribution ``p`` is the histogram up to the threshold with the
clipped outliers folded into its end bin(s); the candidate ``q`` merges those bins into
``num_quantized_bins`` levels and spreads each level's count evenly over its non-empty bins;
the threshold with the smallest KL(p || q) wins.

The published implementations differ in details, and the KL curve is flat enough near its
minimum that those details move the chosen threshold a lot. Measured on 65k samples
(2048 bins): onnxruntime's port, MXNet's original and TensorRT's pick 3.9, 4.1 and 4.0 for a
standard normal; 2.7, 4.25 and 4.27 for a ReLU'd one (max 4.27); 8.9, 4.4 and 26.8 for a
normal with 0.15% uniform outliers in [-30, 30]. Rather than invent a variant that matches
nobody, two are reproduced exactly:

- `entropy_threshold_onnxruntime`: ``HistogramCollector.get_entropy_threshold`` of
  onnxruntime (a port of MXNet's): a signed histogram, windows of ``2 i + 1`` bins around
  the zero bin, the candidate truncated to integers, bins left over when the window is not a
  multiple of ``num_quantized_bins`` left out of ``q``, both distributions smoothed with
  ``eps = 1e-4``, KL in float32. Same thresholds as onnxruntime on the same histogram, about
  10x faster (the group sums are vectorised; onnxruntime loops over bins in Python).
- `entropy_threshold_tensorrt`: ``_compute_amax_entropy`` of NVIDIA's pytorch-quantization
  (TensorRT's calibrator): a histogram of magnitudes, windows ``[0, i)`` for ``i`` from 128,
  levels assigned with ``digitize`` over ``linspace`` (no bin left over), the first bin set to
  the second (so a spike of exact zeros does not dominate), ties to the largest threshold.
  All windows are evaluated at once through cumulative sums.
"""

from __future__ import annotations

import numpy as np

from edgec.errors import ConfigError

_SMOOTH_EPS = 1e-4


def _check_nq(num_quantized_bins: int, n: int) -> int:
    nq = int(num_quantized_bins)
    if nq < 2 or nq % 2 or nq > n:
        raise ConfigError(f"num_quantized_bins must be even and in [2, {n}], got {num_quantized_bins}")
    return nq


def _smooth(p: np.ndarray) -> np.ndarray | None:
    # onnxruntime's quant_utils.smooth_distribution, in float32 as there.
    is_zeros = (p == 0).astype(np.float32)
    is_nonzeros = (p != 0).astype(np.float32)
    n_zeros = float(is_zeros.sum())
    n_nonzeros = p.size - n_zeros
    if not n_nonzeros:
        return None
    eps1 = _SMOOTH_EPS * n_zeros / n_nonzeros
    hist = p.astype(np.float32)
    hist += _SMOOTH_EPS * is_zeros + (-eps1) * is_nonzeros
    return hist


def entropy_threshold_onnxruntime(counts: np.ndarray, num_quantized_bins: int = 128) -> tuple[int, int, np.ndarray]:
    """onnxruntime's KL threshold search on a signed histogram symmetric around zero.

    Args:
        counts: Integer bin counts over ``[-T, T]`` (even length; bin ``n / 2`` starts at 0).
        num_quantized_bins: Quantized levels (onnxruntime's ``num_quantized_bins``).

    Returns:
        ``(start, end, kl)``: the best window is bins ``[start, end)``, so the threshold is
        ``(edges[start], edges[end])``; ``kl`` holds the divergence of every candidate.
    """
    h = np.asarray(counts).astype(np.int64)
    n = h.size
    nq = _check_nq(num_quantized_bins, n)
    z, half = n // 2, nq // 2
    cum = np.concatenate([[0], np.cumsum(h)])
    total = int(cum[-1])
    kl = np.full(z - half + 1, np.inf)
    ks = np.arange(nq + 1)
    for c, i in enumerate(range(half, z + 1)):
        start, end = z - i, min(z + i + 1, n)
        m = end - start
        p = h[start:end].copy()
        p[0] += cum[start]
        p[-1] += total - cum[end]
        merged = m // nq
        levels = cum[start + merged * ks[1:]] - cum[start + merged * ks[:-1]]
        levels[-1] += cum[end] - cum[start + nq * merged]
        norm = (p[: nq * merged] != 0).reshape(nq, merged).sum(axis=1)
        # onnxruntime stores q in an int64 array (truncating) and never fills the leftover bins.
        q = np.zeros(m, dtype=np.int64)
        q[: nq * merged] = np.repeat(np.where(norm > 0, levels // np.maximum(norm, 1), 0), merged)
        ps, qs = _smooth(p), _smooth(q)
        if ps is None or qs is None:
            continue
        pk = ps / np.sum(ps, axis=0, keepdims=True)
        qk = qs / np.sum(qs, axis=0, keepdims=True)
        kl[c] = np.sum(pk * np.log(pk / qk))
    i = half + int(np.argmin(kl))
    return z - i, min(z + i + 1, n), kl


def _window_kl(h: np.ndarray, starts: np.ndarray, ends: np.ndarray, nq: int) -> np.ndarray:
    """KL(p || q) of every window ``[starts[c], ends[c])`` of `h`, TensorRT-style.

    ``p`` is the window with the mass left of it added to its first bin and the mass right
    of it to its last; window position ``j`` of ``m`` belongs to level ``floor(j nq / m)``;
    ``q`` spreads each level's window count over the level's non-zero bins of `h`. A ``q``
    of zero where ``p`` is not gives ``inf`` (as ``scipy.stats.entropy`` does).
    """
    total = h.sum()
    m = ends - starts
    cum = np.concatenate([[0.0], np.cumsum(h)])
    cum_nz = np.concatenate([[0], np.cumsum(h > 0)])
    hlogh = np.zeros_like(h)
    pos = h > 0
    hlogh[pos] = h[pos] * np.log(h[pos])
    cum_hlogh = np.concatenate([[0.0], np.cumsum(hlogh)])

    def xlogx(v):
        return np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)

    left_out, right_out = cum[starts], total - cum[ends]
    window = cum[ends] - cum[starts]
    ks = np.arange(nq + 1)
    # Level k of a window of m bins holds positions [ceil(k m / nq), ceil((k + 1) m / nq)).
    bounds = starts[:, None] + (-(-(ks[None, :] * m[:, None]) // nq))
    level_sum = cum[bounds[:, 1:]] - cum[bounds[:, :-1]]
    level_nz = (cum_nz[bounds[:, 1:]] - cum_nz[bounds[:, :-1]]).astype(np.float64)
    first, last = h[starts], h[ends - 1]
    p_sum = level_sum.copy()
    p_sum[:, 0] += left_out
    p_sum[:, -1] += right_out
    # sum(p log p): only the two end bins differ from the window itself.
    sum_plogp = (cum_hlogh[ends] - cum_hlogh[starts]
                 - xlogx(first) + xlogx(first + left_out) - xlogx(last) + xlogx(last + right_out))
    has_q = level_sum > 0
    impossible = (((p_sum > 0) & ~has_q).any(axis=1) | (first == 0) & (left_out > 0)
                  | (last == 0) & (right_out > 0) | (window <= 0))
    log_q = np.log(np.where(has_q, level_sum, 1.0) / np.maximum(level_nz, 1.0))
    sum_plogq = (np.where(has_q, p_sum, 0.0) * log_q).sum(axis=1)
    kl = (sum_plogp - sum_plogq) / total - np.log(total) + np.log(np.where(window > 0, window, 1.0))
    return np.where(impossible, np.inf, kl)


def entropy_threshold_tensorrt(abs_counts: np.ndarray, num_quantized_bins: int = 128,
                               start_bin: int = 128) -> tuple[int, np.ndarray]:
    """TensorRT's (pytorch-quantization's) KL threshold search on a histogram of ``|x|``.

    Args:
        abs_counts: Bin counts over ``[0, T]``.
        num_quantized_bins: Quantized levels (128 for int8).
        start_bin: Smallest window tried, in bins.

    Returns:
        ``(i, kl)``: the threshold is ``edges[i]``; ``kl`` per window ``[0, start_bin..n]``.
    """
    h = np.asarray(abs_counts, dtype=np.float64).copy()
    n = h.size
    nq = _check_nq(num_quantized_bins, n)
    start_bin = max(int(start_bin), nq)
    if start_bin > n:
        raise ConfigError(f"start_bin must be at most the {n} histogram bins, got {start_bin}")
    # pytorch-quantization does this so that a spike of exact zeros (after ReLU) does not
    # dominate the divergence.
    if n > 1:
        h[0] = h[1]
    if h.sum() <= 0:
        return n, np.zeros(n - start_bin + 1)
    ends = np.arange(start_bin, n + 1)
    kl = _window_kl(h, np.zeros_like(ends), ends, nq)
    if not np.isfinite(kl).any():
        return n, kl
    # Ties go to the largest threshold, as there.
    last = kl.size - 1 - int(np.argmin(kl[::-1]))
    return int(ends[last]), kl
