"""Helpers shared by the benchmark scripts (not tests): tables, JSON, bundled example models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable


ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Plain-text table (markdown-compatible) on stdout."""
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(columns)]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(columns, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


# The x86 features int8 kernels branch on: without VNNI, oneDNN's u8 x s8 path sums pairs of products in int16
# (vpmaddubsw), so the same IR can lose accuracy on one CPU and not on another (whisper_tiny_encoder intel-cpu int8:
# cosine 0.99997 on an AVX-512 VNNI machine, 0.9993 on an AVX2 EPYC).
INT8_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_info() -> dict[str, Any]:
    """The CPU results were measured on: model name and the int8-relevant ISA flags (Linux; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name", ""), "int8_isa": [f for f in INT8_ISA_FLAGS if f in flags]}


def write_json(name: str, data: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")
    print(f"\nwrote {path}")
    return path


def time_fn(fn: Callable[[], Any], iters: int, warmup: int) -> dict[str, float]:
    """Latency summary (ms) of ``fn`` using the harness's statistics."""
    import time

    from edgec.runtimes.bench_stats import latency_summary

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return latency_summary(times)


def load_example(name: str):
    """The module ``examples/<name>/model.py`` (each example's is named model.py, so no sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"edgec_example_{name}", ROOT / "examples" / name / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digits_data() -> tuple[Path, Path]:
    """Train (cached) the digits CNN example and write its calibration/eval data."""
    digits = load_example("digits_cnn")
    digits.trained_model()
    return digits.write_data()


def minilm_path() -> str:
    return subprocess.check_output([sys.executable, str(ROOT / "examples" / "minilm" / "model_path.py")],
                                   text=True).strip()


