"""The standalone bench harness core that edgec copies into bundles next to ``bench_*.py``.

Needs only the Python standard library, numpy and ``bench_stats.py`` (copied beside it), so a device without edgec can time a
bundle: it checks every file against the manifest's sha256 before anything runs, makes
deterministic inputs from the manifest's artifact input specs, times the runtime's call,
and prints one JSON object of schema ``edgec.bench/1`` (see edgec.runtimes.harness).
"""

import argparse
import hashlib
import json
import os
import platform
import sys
import time

import numpy as np

# bench_stats.py is edgec's own runtimes/bench_stats.py, copied beside this file into the bundle.
from bench_stats import latency_summary, peak_rss_bytes

SCHEMA = "edgec.bench/1"


class HarnessError(Exception):
    """A problem the user must fix; printed as one ``error:`` line."""


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_manifest(bundle_dir):
    path = os.path.join(bundle_dir, "manifest.json")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path} is not a readable edgec manifest: {exc}")


def verify_bundle(bundle_dir, manifest):
    """Check every file the manifest lists against its sha256; raise HarnessError on a mismatch."""
    root = os.path.realpath(bundle_dir)
    bad = []
    for entry in manifest.get("files", []):
        rel = entry.get("path", "")
        path = os.path.realpath(os.path.join(root, rel))
        if os.path.isabs(rel) or not path.startswith(root + os.sep):
            raise HarnessError(f"manifest lists a file outside the bundle: {rel!r}")
        if not os.path.isfile(path) or sha256_file(path) != entry.get("sha256"):
            bad.append(rel)
    if bad:
        raise HarnessError(f"bundle files differ from the manifest's sha256: {', '.join(bad[:5])}")


def synthetic_feeds(specs, seed=0, batch=None):
    """Deterministic inputs: normal floats (quantized for int8/uint8 inputs), ones for ids/masks."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for d in specs:
        shape = [1 if not isinstance(x, int) or x < 1 else int(x) for x in d["shape"]]
        if batch and shape:
            shape[0] = batch
        dt = np.dtype(d["dtype"])
        scale, zp = d.get("scale"), d.get("zero_point")
        if dt.kind == "f":
            feeds[d["name"]] = rng.standard_normal(shape).astype(dt)
        elif dt.kind in "iu" and scale:
            info = np.iinfo(dt)
            q = np.round(rng.standard_normal(shape) / np.asarray(scale).ravel()[0]) + np.asarray(zp or 0).ravel()[0]
            feeds[d["name"]] = np.clip(q, info.min, info.max).astype(dt)
        else:
            feeds[d["name"]] = np.ones(shape, dtype=dt)
    return feeds


def parser(description):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--bundle", default=os.path.dirname(os.path.abspath(sys.argv[0])),
                    help="the bundle folder (default: this script's folder)")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="runtime threads (default: the runtime's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device-name", default="host", help="the device name to record in the result")
    ap.add_argument("--output", help="also write the JSON here")
    return ap


def run(args, runner, load):
    """Verify the bundle, ``load(bundle_dir, manifest, threads) -> (call, runtime, version, extra)``, time ``call``.

    ``call(feeds)`` runs one inference on the artifact-convention feeds built here.
    """
    if args.iters < 1 or args.warmup < 0:
        raise HarnessError("--iters must be >= 1 and --warmup >= 0")
    manifest = load_manifest(args.bundle)
    verify_bundle(args.bundle, manifest)
    call, runtime, version, extra = load(args.bundle, manifest, args.threads)
    feeds = synthetic_feeds(manifest.get("inputs", []), seed=args.seed)
    for _ in range(args.warmup):
        call(feeds)
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        call(feeds)
        times.append(time.perf_counter() - t0)
    lat = latency_summary(times)
    first = next(iter(feeds.values()), None)
    batch = int(first.shape[0]) if first is not None and first.ndim else 1
    extra = dict(extra, standalone=True, machine=platform.machine(), python=platform.python_version(),
                 numpy=np.__version__)
    return {
        "schema": SCHEMA, "runner": runner, "runtime": {"name": runtime, "version": version},
        "target": manifest.get("target"), "precision": manifest.get("precision"), "device": args.device_name,
        "threads": args.threads, "warmup": args.warmup, "iters": args.iters, "batch": batch, "latency_ms": lat,
        "throughput_per_s": batch * 1e3 / lat["mean"] if lat["mean"] > 0 else float("inf"),
        "peak_rss_bytes": peak_rss_bytes(), "extra": extra,
    }


def main(description, runner, load, argv=None):
    """Parse arguments, run, print the JSON; one ``error:`` line and exit 2 on a HarnessError."""
    args = parser(description).parse_args(argv)
    try:
        result = run(args, runner, load)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    print(text)
    return 0
