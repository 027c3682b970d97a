"""Keep-masks for unstructured (magnitude) and N:M pruning, on NumPy arrays.

Shared by the PyTorch path (masks applied with ``torch.nn.utils.prune`` so they survive
fine-tuning) and the ONNX path (initializers rewritten), so both prune exactly alike.
"""

from __future__ import annotations

import numpy as np


def nm_mask(weight: np.ndarray, n: int, m: int, axis: int) -> np.ndarray:
    """Keep the ``n`` largest |w| in every group of ``m`` consecutive elements along ``axis``.

    The axis is zero-padded to a multiple of ``m`` (as TensorRT's 2:4 check does), so a
    short trailing group keeps at most ``n`` of its real elements. Ties keep the earlier
    element.

    Returns:
        A boolean mask of ``weight``'s shape, True where the weight is kept.
    """
    w = np.moveaxis(np.abs(np.asarray(weight, dtype=np.float64)), axis, -1)
    size = w.shape[-1]
    pad = (-size) % m
    if pad:
        w = np.concatenate([w, np.full(w.shape[:-1] + (pad,), -1.0)], axis=-1)
    groups = w.reshape(-1, m)
    # Stable descending order: largest first, earlier index first among equals.
    order = np.argsort(-groups, axis=1, kind="stable")
    keep = np.zeros_like(groups, dtype=bool)
    np.put_along_axis(keep, order[:, :n], True, axis=1)
    keep = keep.reshape(w.shape)[..., :size]
    return np.moveaxis(keep, -1, axis)


def magnitude_masks(weights: list[np.ndarray], ratio: float, scope: str = "global") -> list[np.ndarray]:
    """Masks zeroing the ``round(ratio * count)`` smallest |w|, over all weights or per weight.

    Args:
        weights: The arrays to prune.
        ratio: Fraction of elements to zero, in (0, 1).
        scope: ``global`` ranks every element of every weight together (layers that matter
            less lose more); ``layer`` prunes each weight to ``ratio`` on its own.

    Returns:
        One boolean keep-mask per weight; exactly ``round(ratio * n)`` elements are False
        (per weight for ``layer``, in total for ``global``).
    """
    if scope == "layer":
        return [_smallest_k_mask(np.abs(w).ravel(), int(round(ratio * w.size))).reshape(w.shape) for w in weights]
    flat = np.concatenate([np.abs(np.asarray(w, dtype=np.float32)).ravel() for w in weights]) if weights else \
        np.zeros(0, np.float32)
    keep = _smallest_k_mask(flat, int(round(ratio * flat.size)))
    out, start = [], 0
    for w in weights:
        out.append(keep[start:start + w.size].reshape(w.shape))
        start += w.size
    return out


def _smallest_k_mask(values: np.ndarray, k: int) -> np.ndarray:
    keep = np.ones(values.size, dtype=bool)
    if k <= 0:
        return keep
    if k >= values.size:
        return np.zeros(values.size, dtype=bool)
    idx = np.argpartition(values, k - 1)[:k]
    keep[idx] = False
    return keep
