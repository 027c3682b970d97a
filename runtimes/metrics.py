"""Error metrics between an output and its reference: cosine, SQNR, NRMSE, top-1 agreement.

One definition for the harness, the accuracy gate, ``debug layers`` and the benchmarks.
A NaN or Inf in either array never reads as a small error: cosine and SQNR become NaN and
NRMSE becomes Inf, so every "is it close enough" comparison fails.
"""

from __future__ import annotations

import math

import numpy as np


def _flat(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).ravel()


def _all_finite(*arrays: np.ndarray) -> bool:
    return all(bool(np.isfinite(a).all()) for a in arrays)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b`` of two flat float64 arrays, without BLAS.

    OpenBLAS splits a long dot product over its threads, which spin-wait for each other; on a
    loaded 2-core machine one 400k-value product took 90 ms instead of 0.2 ms (``edgec debug
    layers`` and the accuracy gate's screen compare hundreds of such tensors per sample).
    """
    return float(np.einsum("i,i->", a, b))


def _norm(a: np.ndarray) -> float:
    return math.sqrt(_dot(a, a))


def cosine(a, b) -> float:
    """Cosine similarity of two flattened arrays (1.0 when both are zero, 0.0 when one is; NaN when not finite)."""
    a, b = _flat(a), _flat(b)
    if not _all_finite(a, b):
        return math.nan
    na, nb = _norm(a), _norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return _dot(a, b) / (na * nb)


def check_cosine(a, b) -> float:
    """`cosine` as a worst-case check scores it, where the lowest score decides.

    A zero array against another scores `np.allclose` (1.0 when the other is zero up to
    rounding noise: an output that should be empty and is), and a non-finite one 0.0
    instead of NaN, which ``min`` and ``<`` would pass over.
    """
    a, b = _flat(a), _flat(b)
    if not _all_finite(a, b):
        return 0.0
    den = _norm(a) * _norm(b)
    return _dot(a, b) / den if den > 0 else float(np.allclose(a, b))


def worst_cosine(got, want) -> float:
    """The lowest `check_cosine` over samples and each sample's outputs.

    Args:
        got: per sample, its outputs (arrays, in the order of ``want``'s).
        want: per sample, the reference outputs.
    """
    return min((check_cosine(g, w) for g_row, w_row in zip(got, want) for g, w in zip(g_row, w_row)), default=1.0)


# A per-sample cosine of a 1-element output (a face-presence logit) is its sign: 0 when int8
# rounds a 0.17 logit to 0. Outputs with fewer values are scored over all samples stacked.
MIN_COSINE_ELEMENTS = 8

# A sample whose reference output is this small relative to the largest in the set carries
# no signal (a detector's map of an image without objects: values ~1e-8). Its cosine would
# compare rounding noise with rounding noise, so it is scored by its absolute error instead.
EMPTY_OUTPUT_REL = 1e-2


def cosine_stats(got, want) -> tuple[float, float, float, float]:
    """``(dot, |got|, |want|, |got - want|)`` of one sample, the inputs of `mean_cosine` (NaN when not finite)."""
    g, w = _flat(got), _flat(want)
    if not _all_finite(g, w):
        return math.nan, math.nan, math.nan, math.nan
    return _dot(g, w), _norm(g), _norm(w), _norm(g - w)


def mean_cosine(stats: list[tuple[float, float, float, float]]) -> float | None:
    """Mean cosine similarity over samples, robust to samples whose reference is (nearly) empty.

    A sample whose reference norm is below `EMPTY_OUTPUT_REL` x the largest reference norm
    of the set scores ``1 - |got - want| / floor`` (clipped at 0): 1 when the artifact is
    also empty, 0 when it invents an output as large as the floor. NaN anywhere gives NaN.
    """
    if not stats:
        return None
    if any(math.isnan(v) for s in stats for v in s):
        return math.nan
    floor = EMPTY_OUTPUT_REL * max(s[2] for s in stats)
    scores = []
    for dot, ng, nw, nd in stats:
        if floor > 0 and nw < floor:
            scores.append(max(0.0, 1.0 - nd / floor))
        elif ng == 0 and nw == 0:
            scores.append(1.0)
        elif ng == 0 or nw == 0:
            scores.append(0.0)
        else:
            scores.append(dot / (ng * nw))
    return float(np.mean(scores))


def sqnr_db(reference, got) -> float:
    """Signal-to-quantization-noise ratio of ``got`` against ``reference`` in dB (inf when equal)."""
    r, g = _flat(reference), _flat(got)
    if not _all_finite(r, g):
        return math.nan
    return ErrorStats().add(r, g).sqnr_db


def nrmse(reference, got) -> float:
    """Root-mean-square error of ``got`` divided by the reference's RMS (inf when not finite)."""
    r, g = _flat(reference), _flat(got)
    if not _all_finite(r, g):
        return math.inf
    if r.size == 0:
        return 0.0
    rms = float(np.sqrt(np.mean(r * r)))
    err = float(np.sqrt(np.mean((g - r) ** 2)))
    if rms == 0.0:
        return 0.0 if err == 0.0 else math.inf
    return err / rms


MIN_SPREAD_SAMPLES = 4


def spread_error(reference: list, got: list) -> tuple[float, float]:
    """Squared error of ``got`` against ``reference`` and the reference's squared spread between samples.

    Both are lists of one output's values per sample. The spread is each element's deviation
    from its mean over the samples, so a constant offset, per element or per channel, does not
    hide the error; with fewer than `MIN_SPREAD_SAMPLES` samples it is around the overall mean.
    A reference with no spread falls back to its own energy. Their ratio (or its square root, a
    normalized RMS error) is what the int8 searches and the symmetric-activation gate compare.
    """
    w = np.stack([np.asarray(r, np.float64) for r in reference])
    d = np.stack([np.asarray(g, np.float64) for g in got]) - w
    centre = w.mean(axis=0, keepdims=True) if len(w) >= MIN_SPREAD_SAMPLES else w.mean()
    den = float(((w - centre) ** 2).sum()) or float((w * w).sum())
    return float((d * d).sum()), den


def relative_output_error(outs: list[dict[str, np.ndarray]], refs: list[dict[str, np.ndarray]]) -> float:
    """Mean over outputs of each output's `spread_error` ratio (squared error over squared spread).

    Each output counts alike: a detector's box regressors (anchor offsets in the hundreds) would
    otherwise drown its scores.
    """
    if not refs:
        return 0.0
    errs = []
    for k in refs[0]:
        err, den = spread_error([r[k] for r in refs], [o[k] for o in outs])
        errs.append(err / max(den, 1e-30))
    return float(np.mean(errs))


def top1_agreement(reference, got) -> float:
    """Fraction of rows (last axis = classes) whose argmax agrees; 0.0 for a row that is not finite."""
    r = np.asarray(reference, dtype=np.float64)
    g = np.asarray(got, dtype=np.float64)
    r, g = r.reshape(-1, r.shape[-1]), g.reshape(-1, g.shape[-1])
    ok = np.isfinite(g).all(-1) & np.isfinite(r).all(-1)
    return float(np.mean((r.argmax(-1) == g.argmax(-1)) & ok)) if len(r) else 1.0


class ErrorStats:
    """Running sums over many tensors/samples: SQNR, cosine and max abs error of ``got`` vs ``reference``."""

    def __init__(self) -> None:
        self.sig = self.noise = self.dot = self.got_sq = 0.0
        self.max_abs = 0.0
        self.finite = True

    def add(self, reference, got) -> "ErrorStats":
        """Accumulate one pair (flattened; ``got`` is cut to the reference's size)."""
        r = _flat(reference)
        g = _flat(got)[: r.size]
        if not _all_finite(r, g):
            self.finite = False
            return self
        d = g - r
        self.sig += _dot(r, r)
        self.noise += _dot(d, d)
        self.dot += _dot(r, g)
        self.got_sq += _dot(g, g)
        self.max_abs = max(self.max_abs, float(np.abs(d).max(initial=0.0)))
        return self

    @property
    def sqnr_db(self) -> float:
        if not self.finite:
            return math.nan
        if self.noise == 0.0:
            return math.inf
        if self.sig == 0.0:
            return -math.inf
        return 10.0 * math.log10(self.sig / self.noise)

    @property
    def cosine(self) -> float:
        if not self.finite:
            return math.nan
        if self.sig == 0 and self.got_sq == 0:
            return 1.0
        if self.sig == 0 or self.got_sq == 0:
            return 0.0
        return self.dot / math.sqrt(self.sig * self.got_sq)

    @property
    def max_abs_err(self) -> float:
        return self.max_abs if self.finite else math.inf
