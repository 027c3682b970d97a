"""Bench results (``edgec.bench/1``) and checks against ``reference/io.npz`` (numpy only)."""

from __future__ import annotations

import numpy as np

from .plan import BENCH_SCHEMA, EngineError
from ._shared import cosine, latency_summary, peak_rss_bytes


def bench_result(*, runtime_version, target, precision, device, warmup, iters, batch, times_s,
                 extra=None, runner="tensorrt", threads=None) -> dict:
    """A bench result in the ``edgec.bench/1`` schema."""
    lat = latency_summary(times_s)
    return {
        "schema": BENCH_SCHEMA,
        "runner": runner,
        "runtime": {"name": "tensorrt", "version": runtime_version},
        "target": target,
        "precision": precision,
        "device": device,
        "threads": threads,
        "warmup": int(warmup),
        "iters": int(iters),
        "batch": int(batch),
        "latency_ms": lat,
        "throughput_per_s": batch * 1e3 / lat["mean"] if lat["mean"] > 0 else float("inf"),
        "peak_rss_bytes": peak_rss_bytes(),
        "extra": dict(extra or {}),
    }


def load_reference(path) -> list:
    """``reference/io.npz`` -> ``[(inputs, outputs)]`` per sample.

    Keys are ``input/<i>/<name>`` and ``output/<i>/<name>``; ``<i>`` is the sample index.
    """
    samples: dict = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            kind, _, rest = key.partition("/")
            idx, _, name = rest.partition("/")
            if kind not in ("input", "output") or not idx.isdigit():
                continue
            samples.setdefault(int(idx), ({}, {}))[0 if kind == "input" else 1][name] = z[key]
    return [samples[i] for i in sorted(samples)]


def check_outputs(got: list, want: list, min_cosine: float) -> dict:
    """Compare per-sample outputs (lists of ``{name: array}``) against the reference."""
    max_abs, cos = {}, {}
    for g, w in zip(got, want):
        for name, ref in w.items():
            if name not in g:
                raise EngineError(f"the engine has no output '{name}' (it has {sorted(g)})")
            out = np.asarray(g[name], np.float64).reshape(np.shape(ref))
            max_abs[name] = max(max_abs.get(name, 0.0), float(np.abs(out - ref).max(initial=0.0)))
            cos.setdefault(name, []).append(cosine(out, ref))
    per_out = {n: {"max_abs_err": max_abs[n], "cosine_min": float(min(c))} for n, c in cos.items()}
    worst = min((v["cosine_min"] for v in per_out.values()), default=1.0)
    return {"samples": len(want), "min_cosine": min_cosine, "passed": bool(worst >= min_cosine), "outputs": per_out}
