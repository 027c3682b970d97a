"""One-pass histograms with bounded memory, and the range searches run on them.

`GrowingHistogram` keeps a fixed number of bins over ``[-T, T]`` (signed values) or
``[0, T]`` (magnitudes). When new data exceeds ``T``, ``T`` is doubled as many times as
needed and groups of ``2**k`` old bins are merged into one new bin. Because the number of
bins is a power of two and zero is always a bin edge, every old bin falls entirely into one
new bin: the result is exactly the histogram a second pass over all the data would build
with the final edges (up to float rounding of values lying on an edge), at the cost of at
most half the resolution of a histogram sized to the exact final range.

The range searches (`percentile_range`, `mse_range`, and the KL searches in
`edgec.calibration.entropy`) are pure numpy over the histogram, so the observers stay thin
and the searches are testable alone.
"""

from __future__ import annotations

import math

import numpy as np

from edgec.errors import ConfigError


def finite_values(x: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """``(finite values of x, flattened; their min; their max)``, or None when there are none.

    Masked attention scores and the like hold inf: it carries no range, so it is dropped
    here once for every observer.
    """
    x = np.asarray(x).ravel()
    if x.size == 0:
        return None
    lo, hi = float(x.min()), float(x.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        x = x[np.isfinite(x)]
        if x.size == 0:
            return None
        lo, hi = float(x.min()), float(x.max())
    return x, lo, hi


class GrowingHistogram:
    """Histogram over a range that doubles when data falls outside it.

    Args:
        num_bins: Number of bins; a power of two (so merges stay exact), at least 2.
        absolute: Histogram of ``|x|`` over ``[0, T]`` instead of ``x`` over ``[-T, T]``.

    Attributes:
        counts: Bin counts (int64, ``num_bins``).
        limit: Current ``T`` (0 until a non-zero value has been seen).
        min: Smallest finite value seen (signed, also for ``absolute``).
        max: Largest finite value seen.
        total: Number of finite values seen.
    """

    def __init__(self, num_bins: int = 2048, *, absolute: bool = False):
        if num_bins < 2 or num_bins & (num_bins - 1):
            raise ConfigError(f"histogram num_bins must be a power of two >= 2, got {num_bins}")
        self.num_bins = int(num_bins)
        self.absolute = absolute
        self.counts = np.zeros(self.num_bins, dtype=np.int64)
        self.limit = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.total = 0
        # Zeros seen before any non-zero value: there is no range to bin them into yet.
        self._pending_zeros = 0

    @property
    def lower(self) -> float:
        """Left edge of the first bin."""
        return 0.0 if self.absolute else -self.limit

    @property
    def edges(self) -> np.ndarray:
        """``num_bins + 1`` bin edges (float64)."""
        return np.linspace(self.lower, self.limit, self.num_bins + 1)

    @property
    def zero_bin(self) -> int:
        """Index of the bin whose left edge is 0."""
        return 0 if self.absolute else self.num_bins // 2

    def update(self, x: np.ndarray) -> None:
        """Add the finite values of `x` (any shape); NaN and +-inf are ignored."""
        seen = finite_values(x)
        if seen is None:
            return
        x, lo, hi = seen
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self.total += int(x.size)
        amax = max(abs(lo), abs(hi))
        if amax == 0.0:
            if self.limit == 0.0:
                self._pending_zeros += int(x.size)
            else:
                self.counts[self.zero_bin] += x.size
            return
        if self.limit == 0.0:
            self.limit = amax
            self.counts[self.zero_bin] += self._pending_zeros
            self._pending_zeros = 0
        elif amax > self.limit:
            self._grow(amax)
        self.counts += self._bin(np.abs(x) if self.absolute else x)

    def _bin(self, x: np.ndarray) -> np.ndarray:
        # float64 so that float32 data near an edge lands as np.histogram would put it.
        scale = self.num_bins / (self.limit - self.lower)
        idx = ((x.astype(np.float64) - self.lower) * scale).astype(np.int64)
        np.clip(idx, 0, self.num_bins - 1, out=idx)
        return np.bincount(idx, minlength=self.num_bins)

    def _grow(self, amax: float) -> None:
        factor, limit = 1, self.limit
        while limit < amax:
            limit *= 2.0
            factor *= 2
        n = self.num_bins
        # Beyond n the mapping no longer changes (all old bins sit in the central bins),
        # and capping keeps the index arithmetic inside int64.
        f = min(factor, n)
        offset = 0 if self.absolute else (f - 1) * (n // 2)
        new_idx = (np.arange(n, dtype=np.int64) + offset) // f
        self.counts = np.bincount(new_idx, weights=self.counts, minlength=n).astype(np.int64)
        self.limit = limit


def clip_to_seen(lo: float, hi: float, h: GrowingHistogram) -> tuple[float, float]:
    """Restrict a threshold range to the values actually seen (as onnxruntime does)."""
    return max(lo, h.min), min(hi, h.max)


def percentile_range(h: GrowingHistogram, percentile: float) -> tuple[float, float]:
    """Range keeping `percentile` % of the values.

    Signed histogram: ``(100 - percentile) / 2`` % is cut from each tail. Absolute
    histogram: the magnitude below which `percentile` % of the values lie, as ``(-t, t)``.
    Each end is the outer edge of the bin holding the exact percentile, so the range never
    cuts more than asked (onnxruntime takes the inner edge: at most one bin narrower).
    """
    counts = h.counts.astype(np.float64)
    edges = h.edges
    cdf = np.cumsum(counts) / counts.sum()
    if h.absolute:
        k = min(int(np.searchsorted(cdf, percentile / 100.0, side="left")), h.num_bins - 1)
        t = float(edges[k + 1])
        return clip_to_seen(-t, t, h)
    cut = (100.0 - percentile) / 200.0
    k_lo = min(int(np.searchsorted(cdf, cut, side="right")), h.num_bins - 1)
    k_hi = min(int(np.searchsorted(cdf, 1.0 - cut, side="left")), h.num_bins - 1)
    return clip_to_seen(float(edges[k_lo]), float(edges[k_hi + 1]), h)


def _qdq_error_integral(v: np.ndarray, s: np.ndarray, lo_q: np.ndarray, hi_q: np.ndarray) -> np.ndarray:
    """``int_{lo_q}^{v} err(u) du`` for round-to-nearest on the grid ``s * Z`` clipped to ``[lo_q, hi_q]``.

    Inside the grid the rounding error is periodic, so its integral from 0 is
    ``n s^3 / 12 + tau^3 / 3`` with ``v = n s + tau``, ``|tau| <= s / 2``; outside it is the
    clipping error ``(v - hi_q)^2`` (or ``(lo_q - v)^2``) integrated.
    """

    def periodic(x):
        n = np.floor(x / s + 0.5)
        tau = x - n * s
        return n * s**3 / 12.0 + tau**3 / 3.0

    inside = periodic(np.clip(v, lo_q, hi_q)) - periodic(lo_q)
    below = np.minimum(v - lo_q, 0.0) ** 3 / 3.0  # negative: integrating backwards
    above = np.maximum(v - hi_q, 0.0) ** 3 / 3.0
    return inside + below + above


def qdq_mse(counts: np.ndarray, edges: np.ndarray, a: np.ndarray, b: np.ndarray, *,
            symmetric: bool = False, qmin: int = -128, qmax: int = 127) -> np.ndarray:
    """Expected int8 quantize-dequantize MSE of histogram data for candidate ranges ``[a, b]``.

    Values are taken as spread uniformly within each bin, and the error of each bin is
    integrated exactly (rounding inside the grid, clipping outside), so bins wider than the
    quantization step and exact zeros near a grid point are both handled.

    Args:
        counts: Bin counts, shape ``(n,)``.
        edges: Bin edges, shape ``(n + 1,)``.
        a: Candidate lower ends (<= 0), shape ``(k,)``.
        b: Candidate upper ends (>= 0), shape ``(k,)``.
        symmetric: Zero point 0 and scale ``max(|a|, b) / qmax``.
        qmin: Smallest quantized value.
        qmax: Largest quantized value.

    Returns:
        MSE per candidate, shape ``(k,)`` (inf for an empty range).
    """
    a = np.asarray(a, dtype=np.float64)[:, None]
    b = np.asarray(b, dtype=np.float64)[:, None]
    if symmetric:
        s = np.maximum(-a, b) / qmax
        zp = np.zeros_like(s)
    else:
        s = (b - a) / (qmax - qmin)
        with np.errstate(divide="ignore", invalid="ignore"):
            zp = np.clip(np.round(qmin - a / s), qmin, qmax)
    valid = (s > 0).ravel()
    s = np.where(s > 0, s, 1.0)
    lo_q, hi_q = (qmin - zp) * s, (qmax - zp) * s
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    # Only the edges of non-empty bins matter; activations often fill a fraction of the bins.
    idx = np.flatnonzero(counts)
    used = np.union1d(idx, idx + 1)
    e = _qdq_error_integral(edges[used][None, :], s, lo_q, hi_q)
    left, right = np.searchsorted(used, idx), np.searchsorted(used, idx + 1)
    per_bin = (e[:, right] - e[:, left]) / (edges[idx + 1] - edges[idx])
    mse = (per_bin * counts[idx]).sum(axis=1) / max(float(counts.sum()), 1.0)
    return np.where(valid, mse, np.inf)


def mse_range(h: GrowingHistogram, *, symmetric: bool = False, grid: int = 64,
              refine_rounds: int = 4) -> tuple[float, float]:
    """Clipping range minimising the int8 quantize-dequantize MSE of the histogram's data.

    A coarse search shrinks the seen range ``[min(min, 0), max(max, 0)]`` towards zero by
    geometrically spaced factors; then each end is refined alone (coordinate descent) on a
    narrowing grid around the best value, since outliers on one side should not force the
    other side in.
    """
    counts = h.counts.astype(np.float64)
    if counts.sum() <= 0 or h.limit == 0.0:
        return clip_to_seen(0.0, 0.0, h) if h.total else (0.0, 0.0)
    edges = h.edges
    lo, hi = min(h.min, 0.0), max(h.max, 0.0)
    if symmetric:
        lo = hi = max(-lo, hi)
        lo = -lo

    r = np.geomspace(1e-3, 1.0, grid)
    err = qdq_mse(counts, edges, r * lo, r * hi, symmetric=symmetric)
    best = int(np.argmin(err))
    a, b, best_err = float(r[best] * lo), float(r[best] * hi), float(err[best])
    # Relative spacing of the coarse grid; each round searches +-4 spacings, then halves.
    rel = float(r[1] / r[0] - 1.0)
    for _ in range(refine_rounds):
        f = np.linspace(1.0 - 4 * rel, 1.0 + 4 * rel, 17)
        if symmetric:
            cand = np.clip(b * f, 0.0, hi)
            e = qdq_mse(counts, edges, -cand, cand, symmetric=True)
            k = int(np.argmin(e))
            if e[k] < best_err:
                a, b, best_err = -float(cand[k]), float(cand[k]), float(e[k])
            rel /= 2.0
            continue
        if hi > 0:
            cand = np.clip(b * f, 0.0, hi)
            e = qdq_mse(counts, edges, np.full_like(cand, a), cand)
            k = int(np.argmin(e))
            if e[k] < best_err:
                b, best_err = float(cand[k]), float(e[k])
        if lo < 0:
            cand = np.clip(a * f, lo, 0.0)
            e = qdq_mse(counts, edges, cand, np.full_like(cand, b))
            k = int(np.argmin(e))
            if e[k] < best_err:
                a, best_err = float(cand[k]), float(e[k])
        rel /= 2.0
    return a, b
