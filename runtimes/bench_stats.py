"""Latency statistics and peak memory for bench results (``edgec.bench/1``).

Standard library and numpy only: jetson bundles carry a verbatim copy of this file in
their ``trt_engine/`` package, so ``bench_trt.py`` on the device computes exactly what
``edgec bench`` computes.
"""

from __future__ import annotations

import sys

import numpy as np


def latency_summary(times_s) -> dict:
    """Latency statistics in milliseconds from per-iteration times in seconds."""
    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    return {
        "mean": float(ms.mean()),
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "min": float(ms.min()),
        "max": float(ms.max()),
    }


def peak_rss_bytes():
    """This process's peak resident set size in bytes (None where the OS does not say)."""
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError, ValueError):
        return None
    return int(r if sys.platform == "darwin" else r * 1024)
