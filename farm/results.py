"""The farm's result files: an append-only ``results.jsonl`` and the ``summary.json`` made from it.

Each line of ``results.jsonl`` is one run: an ``edgec.bench/1`` record plus ``status``
(``ok`` or ``failed``), ``error`` and a ``farm`` block (bundle, its manifest sha256, planned and
actual device, kind, host, repeat, attempt). A line is written with one ``write`` of the
whole line and fsynced before the next run is counted, so a SIGKILL leaves at most one
partial last line, which `load_results` drops; ``--resume`` then runs only what is missing.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any, Iterable

RESULTS = "results.jsonl"
SUMMARY = "summary.json"


def run_key(record: dict[str, Any]) -> tuple[str, str, int]:
    """(bundle sha256, planned device, repeat): what identifies one planned run."""
    f = record["farm"]
    return f["bundle_sha256"], f["planned_device"], int(f["repeat"])


def load_results(out_dir: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Every complete record in ``out_dir/results.jsonl``; with ``repair``, cut a partial last line off the file."""
    path = Path(out_dir) / RESULTS
    if not path.exists():
        return []
    data = path.read_bytes()
    records, good_end = [], 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            rec = json.loads(line)
        except ValueError:
            break
        records.append(rec)
        good_end += len(line)
    if repair and good_end != len(data):
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
    return records


class ResultsWriter:
    """Appends records to ``results.jsonl`` durably, one line per ``write``."""

    def __init__(self, out_dir: Path):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(out_dir) / RESULTS
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        os.write(self._fd, line)
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def summarize(records: Iterable[dict[str, Any]], *, max_p50_ms: float | None = None,
              max_rss_mb: float | None = None) -> dict[str, Any]:
    """Per bundle x device: runs, failures, median latencies, peak RSS and the budget verdict."""
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        f = r["farm"]
        key = (f["bundle"], f["planned_device"])
        c = cells.setdefault(key, {"bundle": f["bundle"], "bundle_sha256": f["bundle_sha256"],
                                   "device": f["planned_device"], "kind": f["kind"], "runs": 0, "failed": 0,
                                   "errors": [], "p50": [], "p90": [], "mean": [], "rss": [],
                                   "insn": []})
        c["runs"] += 1
        if r.get("status") != "ok":
            c["failed"] += 1
            c["errors"].append(r.get("error") or "unknown error")
            continue
        lat = r.get("latency_ms") or {}
        for k in ("p50", "p90", "mean"):
            if lat.get(k) is not None:
                c[k].append(float(lat[k]))
        if r.get("peak_rss_bytes"):
            c["rss"].append(r["peak_rss_bytes"] / 2**20)
        insn = (r.get("extra") or {}).get("instructions") or (r.get("extra") or {}).get("instructions_p50")
        if insn:
            c["insn"].append(int(insn))
    rows = []
    for c in sorted(cells.values(), key=lambda c: (c["bundle"], c["device"])):
        row = {k: c[k] for k in ("bundle", "bundle_sha256", "device", "kind", "runs", "failed")}
        for k in ("p50", "p90", "mean"):
            row[f"{k}_ms"] = statistics.median(c[k]) if c[k] else None
        row["p50_ms_runs"] = c["p50"]
        row["peak_rss_mb"] = max(c["rss"]) if c["rss"] else None
        row["instructions"] = int(statistics.median(c["insn"])) if c["insn"] else None
        problems = list(dict.fromkeys(c["errors"]))[:3]
        if max_p50_ms is not None and row["p50_ms"] is not None and row["p50_ms"] > max_p50_ms:
            problems.append(f"p50 {row['p50_ms']:.3f} ms exceeds --max-p50-ms {max_p50_ms:g}")
        if max_rss_mb is not None and row["peak_rss_mb"] is not None and row["peak_rss_mb"] > max_rss_mb:
            problems.append(f"peak RSS {row['peak_rss_mb']:.1f} MB exceeds --max-rss-mb {max_rss_mb:g}")
        row["passed"] = not problems and c["failed"] == 0
        row["problems"] = problems
        rows.append(row)
    return {"schema": "edgec.farm-summary/1", "runs": sum(r["runs"] for r in rows),
            "failed_runs": sum(r["failed"] for r in rows), "cells": rows,
            "passed": all(r["passed"] for r in rows) and bool(rows),
            "budgets": {"max_p50_ms": max_p50_ms, "max_rss_mb": max_rss_mb}}


def write_summary(out_dir: Path, summary: dict[str, Any]) -> Path:
    path = Path(out_dir) / SUMMARY
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
