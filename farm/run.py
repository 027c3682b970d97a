"""``edgec farm run``: every bundle on every matching device, R times, scheduled by Ray.

One Ray task per run asks for its device's resource, so a device serves one run at a
time. Bundles travel once each through Ray's object store as content-addressed archives
and are checked against their manifests on the device host. A run whose device is lost
(its node died, or Ray lost the task) moves to another device of the same kind that has
not had it yet, or is recorded as failed with the reason: nothing is dropped, nothing
waits on a dead node. Every result is appended to ``results.jsonl`` as it arrives.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgec.compiler.bundle import read_manifest
from edgec.errors import ConfigError, EdgecError
from edgec.farm import bundles as fb
from edgec.farm.cluster import connect, list_devices
from edgec.farm.devices import parse_device
from edgec.farm.report import write_html, write_junit
from edgec.farm.results import ResultsWriter, load_results, run_key, summarize, write_summary

# A run whose task has not finished this long after its harness timeout is presumed lost.
_GRACE_S = 120.0


@dataclass(frozen=True)
class FarmRunConfig:
    """What ``edgec farm run`` was asked to do."""

    bundles: tuple[Path, ...]
    address: str
    out_dir: Path
    kinds: tuple[str, ...] = ()
    iters: int = 50
    warmup: int = 5
    repeat: int = 1
    timeout: float = 600.0
    threads: int | None = None
    junit: Path | None = None
    resume: bool = False
    max_p50_ms: float | None = None
    max_rss_mb: float | None = None

    def __post_init__(self):
        if self.iters < 1 or self.warmup < 0 or self.repeat < 1:
            raise ConfigError("--iters and --repeat must be at least 1, --warmup at least 0")
        if self.timeout <= 0:
            raise ConfigError("--timeout must be positive")
        if not self.bundles:
            raise ConfigError("give at least one bundle")


@dataclass
class _Run:
    bundle: str
    sha: str
    planned: dict[str, Any]
    repeat: int
    device: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    tried: set = field(default_factory=set)
    submitted_at: float = 0.0
    lost: list = field(default_factory=list)


def _task(spec: str, sha: str, box: list, iters: int, warmup: int, threads: int | None, timeout: float) -> dict:
    """Runs on the device's host: unpack and check the bundle, run it, return the record (never raises)."""
    import ray

    started = time.time()
    try:
        path = fb.materialize(sha, lambda: ray.get(box[0]))
        rec = parse_device(spec).bench(path, iters=iters, warmup=warmup, threads=threads, timeout=timeout)
        rec.update(status="ok", error=None)
    except EdgecError as exc:
        rec = {"status": "failed", "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a record, not a crash: the farm keeps going
        rec = {"status": "failed", "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
    rec["_host"] = socket.gethostname()
    rec["_window"] = [round(started, 3), round(time.time(), 3)]
    return rec


def _failed_record(run: _Run, error: str) -> dict[str, Any]:
    return {"schema": "edgec.bench/1", "status": "failed", "error": error, "runner": None, "runtime": None,
            "target": None, "precision": None, "device": run.planned["device"], "threads": None, "warmup": None,
            "iters": None, "batch": None, "latency_ms": None, "throughput_per_s": None, "peak_rss_bytes": None,
            "extra": {}}


def farm_run(cfg: FarmRunConfig, on_update: Callable[[dict[str, dict[str, int]]], None] | None = None) -> dict:
    """Plan, run and record; returns the summary (also written with the JUnit and HTML files)."""
    out = Path(cfg.out_dir)
    if (out / "results.jsonl").exists() and not cfg.resume:
        raise ConfigError(f"{out} already holds results.jsonl: add --resume to finish it, or choose another -o")
    bundles = []
    for b in cfg.bundles:
        b = Path(b)
        manifest = read_manifest(b)
        bundles.append((b, manifest, fb.bundle_id(b)))
    names = _bundle_names([b for b, _, _ in bundles])
    ray = connect(cfg.address)
    devices = [d for d in list_devices(cfg.address) if d["state"] in ("idle", "busy")]
    if cfg.kinds:
        devices = [d for d in devices if d["kind"] in cfg.kinds]
    if not devices:
        raise EdgecError(f"no live device{' of kind ' + ', '.join(cfg.kinds) if cfg.kinds else ''} in the farm "
                         f"at {cfg.address} (see `edgec farm devices`)")
    done = {run_key(r) for r in load_results(out, repair=True)} if cfg.resume else set()
    runs, skipped = [], []
    for (b, manifest, sha), name in zip(bundles, names):
        fits = [d for d in devices if parse_device(d["spec"]).can_run(manifest) is None]
        if not fits:
            skipped.append(f"{name}: no matching device can run it")
        for d in fits:
            for r in range(cfg.repeat):
                if (sha, d["name"], r) not in done:
                    runs.append(_Run(name, sha, d, r))
    if not runs and not done:
        raise EdgecError("no device in the farm can run these bundles: " + "; ".join(skipped))
    refs = {sha: ray.put(fb.pack(b)) for b, _, sha in bundles if any(r.sha == sha for r in runs)}
    writer = ResultsWriter(out)
    task = ray.remote(_task)
    pending: dict[Any, _Run] = {}
    counts: dict[str, dict[str, int]] = {}

    def count(kind: str, what: str) -> None:
        counts.setdefault(kind, {"pending": 0, "done": 0, "failed": 0})[what] += 1

    def update() -> None:
        if on_update:
            for c in counts.values():
                c["pending"] = 0
            for r in pending.values():
                counts.setdefault(r.planned["kind"], {"pending": 0, "done": 0, "failed": 0})["pending"] += 1
            on_update(counts)

    def submit(run: _Run, device: dict[str, Any]) -> None:
        run.device = device
        run.tried.add(device["name"])
        run.submitted_at = time.monotonic()
        ref = task.options(resources={device["resource"]: 1}, num_cpus=0, max_retries=0).remote(
            device["spec"], run.sha, [refs[run.sha]], cfg.iters, cfg.warmup, cfg.threads, cfg.timeout)
        pending[ref] = run

    def record(run: _Run, rec: dict[str, Any]) -> None:
        host, window = rec.pop("_host", None), rec.pop("_window", None)
        rec["farm"] = {"bundle": run.bundle, "bundle_sha256": run.sha, "planned_device": run.planned["name"],
                       "device_name": run.device.get("name"), "kind": run.planned["kind"], "host": host,
                       "repeat": run.repeat, "attempt": run.attempt, "lost_devices": run.lost, "window": window}
        writer.append(rec)
        count(run.planned["kind"], "done" if rec.get("status") == "ok" else "failed")

    def move_or_fail(run: _Run, why: str) -> None:
        run.lost.append(f"{run.device['name']}: {why}")
        alive = {d["name"]: d for d in list_devices(cfg.address) if d["state"] in ("idle", "busy")}
        manifest = next(m for _, m, s in bundles if s == run.sha)
        others = [d for n, d in sorted(alive.items()) if d["kind"] == run.planned["kind"] and n not in run.tried
                  and parse_device(d["spec"]).can_run(manifest) is None]
        if others:
            run.attempt += 1
            load = {n: sum(r.device["name"] == n for r in pending.values()) for n in alive}
            submit(run, min(others, key=lambda d: (load.get(d["name"], 0), d["name"])))
        else:
            record(run, _failed_record(run, f"device {run.device['name']} was lost ({why}) and no other "
                                            f"device of kind {run.planned['kind']} is left"))

    try:
        for run in runs:
            submit(run, run.planned)
        last_check = 0.0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                run = pending.pop(ref)
                try:
                    rec = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    record(run, _failed_record(run, f"the run raised: {str(exc).splitlines()[0][:300]}"))
                except ray.exceptions.RayError as exc:
                    move_or_fail(run, type(exc).__name__)
                else:
                    record(run, rec)
            if time.monotonic() - last_check > 2.0:
                last_check = time.monotonic()
                _reap_lost(ray, pending, move_or_fail, cfg.timeout)
            update()
    finally:
        writer.close()
    records = load_results(out)
    summary = summarize(records, max_p50_ms=cfg.max_p50_ms, max_rss_mb=cfg.max_rss_mb)
    summary["skipped"] = skipped
    write_summary(out, summary)
    write_html(out / "report.html", summary, records)
    if cfg.junit:
        write_junit(cfg.junit, summary)
    return summary


def _reap_lost(ray, pending: dict, move_or_fail, timeout: float) -> None:
    """Cancel runs whose device's node died (they would wait forever) and move them."""
    alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    now = time.monotonic()
    for ref, run in list(pending.items()):
        dead = run.device["node_id"] not in alive
        # Queued behind other runs is fine; a run far past every bound is presumed lost.
        overdue = now - run.submitted_at > (timeout + _GRACE_S) * (1 + len(pending))
        if dead or overdue:
            pending.pop(ref)
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - the task may be gone with its node
                pass
            move_or_fail(run, "its node died" if dead else "no answer")


def _bundle_names(paths: list[Path]) -> list[str]:
    names = [p.resolve().name for p in paths]
    return [n if names.count(n) == 1 else f"{n}@{fb.bundle_id(p)[:8]}" for n, p in zip(names, paths)]
