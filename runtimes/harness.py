"""`bench` and `compare`, written once over the `Runner` interface.

The bench result schema (``edgec.bench/1``) is shared by every runner and by the
standalone on-device scripts in bundles (``bench_tflite.py``, ``bench_trt.py``), which
cannot import edgec and repeat `latency_summary` in a few lines:

    {"schema": "edgec.bench/1", "runner": str, "runtime": {"name", "version"},
     "target": str|None, "precision": str|None, "device": str, "threads": int|None,
     "warmup": int, "iters": int, "batch": int,
     "latency_ms": {"mean", "p50", "p90", "p99", "min", "max"},
     "throughput_per_s": float, "peak_rss_bytes": int|None, "extra": {...}}
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import numpy as np

from edgec.runtimes import io as rio
from edgec.runtimes.base import Runner
from edgec.runtimes.bench_stats import latency_summary, peak_rss_bytes  # noqa: F401  (re-exported)
from edgec.runtimes.metrics import MIN_COSINE_ELEMENTS, cosine, cosine_stats, mean_cosine

BENCH_SCHEMA = "edgec.bench/1"
BENCH_KEYS = ("schema", "runner", "runtime", "target", "precision", "device", "threads", "warmup",
              "iters", "batch", "latency_ms", "throughput_per_s", "peak_rss_bytes", "extra")
LATENCY_KEYS = ("mean", "p50", "p90", "p99", "min", "max")


def validate_bench_result(d: dict[str, Any]) -> None:
    """Raise ValueError if ``d`` does not follow the ``edgec.bench/1`` schema."""
    missing = [k for k in BENCH_KEYS if k not in d]
    if missing:
        raise ValueError(f"bench result lacks {missing}")
    if d["schema"] != BENCH_SCHEMA:
        raise ValueError(f"bench schema is {d['schema']!r}, expected {BENCH_SCHEMA!r}")
    lat_missing = [k for k in LATENCY_KEYS if k not in d["latency_ms"]]
    if lat_missing:
        raise ValueError(f"latency_ms lacks {lat_missing}")


def bench(runner: Runner, *, iters: int = 100, warmup: int = 10, batch: int | None = None,
          feeds: dict[str, np.ndarray] | None = None,
          on_iter: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Time ``runner`` on fixed inputs: ``warmup`` untimed runs, then ``iters`` timed ones."""
    if iters < 1 or warmup < 0:
        raise ValueError("iters must be >= 1 and warmup >= 0")
    runner.load()
    model_feeds = feeds if feeds is not None else rio.synthetic_feeds(runner.model_specs, batch=batch)
    native = runner.prepare(model_feeds)
    for _ in range(warmup):
        runner.run_native(native)
    times = []
    for i in range(iters):
        t0 = time.perf_counter()
        runner.run_native(native)
        times.append(time.perf_counter() - t0)
        if on_iter:
            on_iter(i)
    lat = latency_summary(times)
    first = next(iter(native.values()), None)
    b = int(first.shape[0]) if first is not None and first.ndim else 1
    info = runner.info()
    return {
        "schema": BENCH_SCHEMA,
        "runner": runner.name,
        "runtime": {"name": info["name"], "version": info["version"]},
        "target": runner.manifest.get("target"),
        "precision": runner.manifest.get("precision"),
        "device": runner.device,
        "threads": runner.threads,
        "warmup": warmup,
        "iters": iters,
        "batch": b,
        "latency_ms": lat,
        "throughput_per_s": b * 1e3 / lat["mean"] if lat["mean"] > 0 else float("inf"),
        "peak_rss_bytes": peak_rss_bytes(),
        "extra": dict(info.get("extra", {})),
    }


def compare(runner: Runner, reference: Runner, samples: Iterable[dict[str, np.ndarray]],
            *, labels: np.ndarray | None = None, classification: bool = True,
            on_sample: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Error of ``runner`` against ``reference`` over ``samples`` (model convention).

    Returns the report's accuracy block: max/mean absolute error, mean cosine similarity
    (per sample, flattened outputs; see `mean_cosine` for empty outputs) of the first output
    and of each (``cosine_per_output``; an output of under `MIN_COSINE_ELEMENTS` values, whose
    per-sample cosine is only its sign, over all samples stacked), and top-1 agreement on the first output when it is a
    class-score vector (last axis > 1) and ``classification`` is set (embeddings and
    hidden states have no meaningful argmax). With ``labels`` (one per sample), also the top-1
    accuracy of both against the labels.
    """
    lab_hits = {"artifact": 0, "reference": 0}
    lab_n, lab_row = 0, 0  # labels are per row; a batched sample covers several rows
    max_abs, abs_sum, n_elems, cos, top1_hits, top1_n, count = 0.0, 0.0, 0, [], 0, 0, 0
    per_output: dict[str, float] = {}
    cos_per_output: dict[str, list] = {}
    tiny: dict[str, tuple[list, list]] = {}  # outputs under MIN_COSINE_ELEMENTS values: scored stacked
    from edgec.compiler.finite import check_outputs

    for i, feeds in enumerate(samples):
        got = runner.infer(feeds)
        want = reference.infer(feeds)
        # NaN would vanish in max() and read as zero error: fail naming the sample instead.
        check_outputs(want, "reference", i)
        check_outputs(got, "artifact", i)
        for j, (name, w) in enumerate(want.items()):
            g = np.asarray(got[name], dtype=np.float64)
            w = np.asarray(w, dtype=np.float64)
            if g.shape != w.shape:
                g = g.reshape(w.shape)
            d = np.abs(g - w)
            max_abs = max(max_abs, float(d.max(initial=0.0)))
            per_output[name] = max(per_output.get(name, 0.0), float(d.max(initial=0.0)))
            abs_sum += float(d.sum())
            n_elems += d.size
            cos_per_output.setdefault(name, []).append(cosine_stats(g, w))
            if w.size < MIN_COSINE_ELEMENTS:
                tiny.setdefault(name, ([], []))[0].append(g.ravel())
                tiny[name][1].append(w.ravel())
            if j == 0:
                cos.append(cos_per_output[name][-1])
                if classification and w.ndim >= 1 and w.shape[-1] > 1:
                    gi = g.reshape(-1, w.shape[-1]).argmax(-1)
                    wi = w.reshape(-1, w.shape[-1]).argmax(-1)
                    top1_hits += int((gi == wi).sum())
                    top1_n += gi.size
                    if labels is not None:
                        lab = np.asarray(labels[lab_row:lab_row + gi.size]).ravel()
                        k = lab.size
                        lab_hits["artifact"] += int((gi[:k] == lab).sum())
                        lab_hits["reference"] += int((wi[:k] == lab).sum())
                        lab_n += k
                        lab_row += gi.size
        count += 1
        if on_sample:
            on_sample(i)
    out = {
        "reference": reference.info()["name"],
        "samples": count,
        "max_abs_err": max_abs,
        "mean_abs_err": abs_sum / n_elems if n_elems else 0.0,
        "cosine": mean_cosine(cos),
        "top1_agreement": top1_hits / top1_n if top1_n else None,
        "max_abs_err_per_output": per_output,
        # Every output's, so that one collapsed output past the first cannot hide.
        "cosine_per_output": {k: cosine(np.concatenate(tiny[k][0]), np.concatenate(tiny[k][1])) if k in tiny
                              else mean_cosine(v) for k, v in cos_per_output.items()},
    }
    if labels is not None and lab_n:
        out["label_accuracy"] = {k: v / max(lab_n, 1) for k, v in lab_hits.items()}
        out["accuracy_drop"] = out["label_accuracy"]["reference"] - out["label_accuracy"]["artifact"]
    return out
