"""Fuzz the mcu C generator with thousands of random graphs (tests/targets/mcu/fuzz_graphs.py).

Each case: random float ONNX graph -> optimize, calibrate, quantize (mcu scheme) -> C ->
gcc with ASan/UBSan (-Werror) and arena canaries -> random and extreme int8 inputs ->
compared with onnxruntime on the Q/DQ model. Prints outcome counts, per-op counts and the
LSB statistics; writes benchmarks/results/fuzz_mcu.json. Failing seeds are listed so that
`python benchmarks/fuzz_mcu.py --seeds N` replays one.

    python benchmarks/fuzz_mcu.py --cases 2000 [--start 1000]
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, print_table, write_json  # noqa: E402


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz_graphs", ROOT / "tests" / "targets" / "mcu" / "fuzz_graphs.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_graphs"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--start", type=int, default=1000, help="first seed (the test suite runs 0-29)")
    ap.add_argument("--seeds", type=int, nargs="*", help="run exactly these seeds")
    args = ap.parse_args()
    fuzz = _fuzz_module()
    seeds = args.seeds if args.seeds else list(range(args.start, args.start + args.cases))
    outcomes: collections.Counter = collections.Counter()
    per_op: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    lsb_hist: collections.Counter = collections.Counter()
    failures = []
    values = within = 0
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="edgec-fuzz-") as td:
        for i, seed in enumerate(seeds):
            r = fuzz.run_case(seed, Path(td))
            outcomes[r.outcome] += 1
            for op in set(r.ops):
                per_op[op][r.outcome] += 1
            if r.outcome == "ok" or r.outcome == "mismatch":
                lsb_hist[min(r.max_lsb, 3)] += 1
                values += r.values
                within += round(r.within_one * r.values)
            if r.outcome != "ok":
                failures.append({"seed": seed, "outcome": r.outcome, "ops": r.ops, "detail": r.detail[:400]})
                print(f"seed {seed}: {r.outcome}: {r.ops}: {r.detail[:300]}", flush=True)
            if (i + 1) % 50 == 0:
                print(f"{i + 1}/{len(seeds)} cases, {time.time() - t0:.0f} s: {dict(outcomes)}", flush=True)
    wall = time.time() - t0
    print_table(f"mcu fuzzer: {len(seeds)} random graphs in {wall:.0f} s", ["outcome", "cases"],
                [[k, outcomes.get(k, 0)] for k in ("ok", "mismatch", "sanitizer", "canary", "error")])
    print_table("worst output difference per case (vs onnxruntime on the Q/DQ model)", ["max LSB", "cases"],
                [[{3: ">=3"}.get(k, k), lsb_hist[k]] for k in sorted(lsb_hist)])
    print(f"values within 1 LSB: {within}/{values} ({100.0 * within / max(values, 1):.3f} %)")
    print_table("cases per op", ["op", "cases", "not ok"],
                [[op, sum(c.values()), sum(v for k, v in c.items() if k != "ok")] for op, c in sorted(per_op.items())])
    write_json("fuzz_mcu", {"cases": len(seeds), "first_seed": seeds[0], "wall_s": round(wall, 1),
                            "outcomes": dict(outcomes), "max_lsb_cases": {str(k): v for k, v in lsb_hist.items()},
                            "values": values, "values_within_1_lsb": within,
                            "per_op": {op: dict(c) for op, c in per_op.items()}, "failures": failures})


if __name__ == "__main__":
    main()
