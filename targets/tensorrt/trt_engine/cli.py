"""``build_engine.py`` / ``bench_trt.py``: argument parsing and the two entry points."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .plan import CHECK_FAILED_EXIT, EngineError, MIN_COSINE, NO_TENSORRT_EXIT, TensorRTMissing, build_plan, load_config, parse_shape_arg, trtexec_build_command
from .results import bench_result, check_outputs, load_reference
from .device import EngineSession, build_engine, import_tensorrt, synthetic_inputs, time_session
from ._shared import latency_summary


def _nonneg_int(text):
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


def _bytes(text):
    t = text.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if mult > 1 else t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 512M, 2G)") from None


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="build_engine.py",
        description="Build the TensorRT engine of this edgec bundle on this device (TensorRT 8.6 or 10.x).")
    p.add_argument("--config", default=None, help="engine_config.json (default: next to this script)")
    p.add_argument("--onnx", default=None, help="ONNX model (default: the config's, model.onnx)")
    p.add_argument("--engine", default=None, help="engine file to write (default: model.engine)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8", "best"), default=None,
                   help="override the bundle's precision (int8/best need the Q/DQ model.onnx of an int8 bundle)")
    p.add_argument("--workspace", type=_bytes, default=None, help="workspace memory pool limit, e.g. 1G")
    sp = p.add_mutually_exclusive_group()
    sp.add_argument("--sparsity", dest="sparsity", action="store_true", default=None,
                    help="let TensorRT use 2:4 sparse weights (SPARSE_WEIGHTS)")
    sp.add_argument("--no-sparsity", dest="sparsity", action="store_false")
    p.add_argument("--dla-core", type=int, default=None, help="build for this DLA core (-1: GPU only)")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=MIN:OPT:MAX",
                   help="optimization profile for a dynamic input (repeatable)")
    p.add_argument("--timing-cache", default=None, help="timing cache file kept between builds")
    p.add_argument("--dry-run", action="store_true", help="print the build plan as JSON; TensorRT is not needed")
    p.add_argument("--print-trtexec", action="store_true", help="print the equivalent trtexec line and exit")
    return p


def bench_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench_trt.py",
        description="Time this bundle's TensorRT engine and check it against the bundled reference outputs; "
                    "prints one edgec.bench/1 JSON object.")
    p.add_argument("--config", default=None, help="engine_config.json (default: next to this script)")
    p.add_argument("--engine", default=None, help="engine file (default: model.engine)")
    p.add_argument("--build", action="store_true", help="build the engine first when it is missing")
    p.add_argument("--iters", type=int, default=100, help="timed iterations (>= 1)")
    p.add_argument("--warmup", type=_nonneg_int, default=10, help="untimed iterations first")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=1x3x224x224",
                   help="input shape for a dynamic input (default: the profile's opt)")
    p.add_argument("--reference", default=None, help="reference inputs/outputs (default: reference/io.npz)")
    p.add_argument("--no-check", action="store_true", help="skip the check against the reference outputs")
    p.add_argument("--min-cosine", type=float, default=None,
                   help="lowest cosine similarity to the float reference that passes (default by precision)")
    p.add_argument("--output", default=None, help="also write the JSON here")
    p.add_argument("--dry-run", action="store_true", help="print what would run as JSON; TensorRT is not needed")
    return p


def _config_path(args, script_dir) -> Path:
    return Path(args.config) if args.config else Path(script_dir) / "engine_config.json"


def build_main(argv=None, script_dir=None) -> int:
    args = build_arg_parser().parse_args(argv)
    script_dir = Path(script_dir or ".")
    try:
        cfg_path = _config_path(args, script_dir)
        cfg = load_config(cfg_path)
        profiles = dict(parse_shape_arg(s) for s in args.shape)
        plan = build_plan(cfg, cfg_path.parent, onnx=args.onnx, engine=args.engine, timing_cache=args.timing_cache,
                          precision=args.precision, workspace=args.workspace, sparsity=args.sparsity,
                          dla_core=args.dla_core, profiles=profiles)
        if plan["precision"] in ("int8", "best") and not cfg.get("explicit_quantization"):
            raise EngineError("int8/best needs the Q/DQ model.onnx of an int8 bundle (TensorRT 10+/11 build "
                              "INT8 only from explicit Q/DQ): rebuild the bundle with edgec --precision int8")
        if args.print_trtexec:
            print(trtexec_build_command(plan, Path(plan["onnx"]).name, Path(plan["engine"]).name))
            return 0
        if args.dry_run:
            print(json.dumps(plan, indent=2, sort_keys=True))
            return 0
        info = build_engine(plan)
    except TensorRTMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return NO_TENSORRT_EXIT
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info, sort_keys=True))
    return 0


def bench_main(argv=None, script_dir=None) -> int:
    args = bench_arg_parser().parse_args(argv)
    script_dir = Path(script_dir or ".")
    try:
        if args.iters < 1:
            raise EngineError("--iters must be >= 1")
        cfg_path = _config_path(args, script_dir)
        cfg = load_config(cfg_path)
        bundle = cfg_path.parent
        plan = build_plan(cfg, bundle, engine=args.engine)
        shapes = {n: p["opt"] for n, p in plan["profiles"].items()}
        for s in args.shape:
            name, (_, opt, _) = parse_shape_arg(s)
            shapes[name] = list(opt)
        ref_path = Path(args.reference) if args.reference else bundle / cfg.get("reference", "reference/io.npz")
        min_cos = args.min_cosine if args.min_cosine is not None else cfg.get(
            "min_cosine", MIN_COSINE.get(plan["precision"], 0.98))
        check = not args.no_check and ref_path.exists()
        if args.dry_run:
            print(json.dumps({"engine": plan["engine"], "iters": args.iters, "warmup": args.warmup,
                              "shapes": shapes, "reference": str(ref_path) if check else None,
                              "min_cosine": min_cos, "build_if_missing": args.build}, indent=2, sort_keys=True))
            return 0
        trt = import_tensorrt()
        if not Path(plan["engine"]).exists():
            if not args.build:
                raise EngineError(f"{plan['engine']} does not exist: run build_engine.py first, or pass --build")
            build_engine(plan, trt=trt)
        session = EngineSession(plan["engine"], trt=trt)
        extra = {"engine": Path(plan["engine"]).name, "gpu": session.cuda.device_name(),
                 "dla_core": plan["dla_core"], "cuda_binding": session.cuda.kind,
                 "latency_includes": "host-to-device copy, execution, device-to-host copy"}
        if check:
            samples = load_reference(ref_path)
            got = [session.run(inp) for inp, _ in samples]
            extra["reference_check"] = check_outputs(got, [out for _, out in samples], min_cos)
        feeds = synthetic_inputs(cfg["inputs"], {k: tuple(v) for k, v in shapes.items()})
        total, compute = time_session(session, feeds, args.iters, args.warmup)
        extra["gpu_compute_ms"] = latency_summary(compute)
        first = next(iter(feeds.values()), None)
        batch = int(first.shape[0]) if first is not None and first.ndim else 1
        result = bench_result(runtime_version=str(trt.__version__), target=cfg.get("target", "jetson"),
                              precision=plan["precision"], device="host", warmup=args.warmup, iters=args.iters,
                              batch=batch, times_s=total, extra=extra)
        session.close()
    except TensorRTMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return NO_TENSORRT_EXIT
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    rc = extra.get("reference_check", {}).get("passed", True)
    if not rc:
        print(f"error: engine outputs differ from the float reference (cosine below {min_cos}); "
              "see extra.reference_check", file=sys.stderr)
        return CHECK_FAILED_EXIT
    return 0
