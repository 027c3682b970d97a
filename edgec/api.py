"""The public Python API; the CLI is a thin layer over these functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgec.compiler.config import BuildConfig
from edgec.compiler.progress import SILENT, Progress

__all__ = ["BuildConfig", "bench", "build", "debug_layers", "inspect", "list_targets", "prune", "verify"]


def build(config: BuildConfig, progress: Progress = SILENT):
    """Compile a model into a bundle; returns a `BuildResult` (bundle path, manifest, report)."""
    from edgec.compiler.pipeline import build as _build

    return _build(config, progress)


def prune(config: BuildConfig, progress: Progress = SILENT) -> dict[str, Any]:
    """Prune ``config.model`` with ``config.prune`` (spec and fine-tune) into the folder ``config.output``.

    Writes the pruned float model (``model.onnx``, ``model.safetensors`` for PyTorch sources)
    and ``report.json``; returns the report plus ``output``. See `edgec.compiler.prune`.
    """
    from edgec.compiler.prune.command import prune_model

    return prune_model(config, progress)


def _open_bundle(bundle: Path, check_files: bool = True) -> dict[str, Any]:
    from edgec.compiler.bundle import open_bundle

    return open_bundle(bundle, check_files)


def bench(bundle: Path, *, iters: int = 100, warmup: int = 10, threads: int | None = None, device: str = "host",
          profile: bool = False, flash: str | None = None, timeout: float = 600.0,
          progress: Progress = SILENT) -> dict[str, Any]:
    """Time the bundle's artifact with its runner (schema ``edgec.bench/1``).

    ``device`` is ``host`` or ``qemu`` (this process's runner), or any device string of
    `edgec.farm.devices` (``qemu:cortex-m55``, ``ssh://...``, ``serial:...``), run with ``timeout``.
    ``profile``: per-layer instruction counts in ``extra["profile"]`` (mcu bundles on
    ``--device qemu``)."""
    from edgec.runtimes.harness import bench as _bench
    from edgec.runtimes.registry import create_runner

    if iters < 1 or warmup < 0:
        from edgec.errors import ConfigError

        raise ConfigError("--iters must be at least 1 and --warmup at least 0")
    if device not in ("host", "qemu") or flash:
        from edgec.farm.devices import parse_device

        dev = parse_device(device if not flash else f"{device}{'&' if '?' in device else '?'}flash={flash}")
        with progress.task(f"benchmarking on {dev.label}", total=None):
            return dev.bench(Path(bundle), iters=iters, warmup=warmup, threads=threads, timeout=timeout)
    manifest = _open_bundle(bundle)
    runner = create_runner(manifest["runner"], Path(bundle), manifest, threads=threads, device=device)
    if profile:
        if not hasattr(runner, "profile") or device != "qemu":
            from edgec.errors import ConfigError

            raise ConfigError("--profile counts instructions per layer in QEMU: it needs an mcu bundle and "
                              "--device qemu")
        runner.profile = True
    with runner, progress.task(f"benchmarking ({manifest['runner']}, {device})", total=iters) as t:
        return _bench(runner, iters=iters, warmup=warmup, on_iter=lambda _: t.advance())


def bench_generation(bundle: Path, *, prompt_tokens: int = 128, new_tokens: int = 128, threads: int | None = None,
                     repeat: int = 3, progress: Progress = SILENT) -> dict[str, Any]:
    """Time a generation bundle: load, TTFT, TPOT, tokens/s, peak RSS, KV-cache bytes (``edgec.bench/1``)."""
    from edgec.errors import ConfigError
    from edgec.runtimes.generation import bench_generation as _bench

    if prompt_tokens < 1 or new_tokens < 1 or repeat < 1:
        raise ConfigError("--prompt-tokens, --new-tokens and --repeat must be at least 1")
    _open_bundle(bundle)
    with progress.task("benchmarking generation", total=None):
        return _bench(Path(bundle), prompt_tokens, new_tokens, threads, repeat)


def generate(bundle: Path, prompt: str, *, max_new_tokens: int = 64, threads: int | None = None,
             chat: bool = True) -> dict[str, Any]:
    """Greedy generation from ``prompt`` with the bundle's own runner and tokenizer."""
    from edgec.runtimes.generation import BundleTokenizer, generate as _generate, open_session

    _open_bundle(bundle)
    session = open_session(Path(bundle), threads)
    tok = BundleTokenizer(Path(bundle), session.manifest)
    ids = tok.encode(prompt, chat=chat)
    if not ids:
        from edgec.errors import ConfigError

        raise ConfigError("the prompt encodes to no tokens")
    ctx = int(session.manifest["generation"]["context_length"])
    max_new_tokens = max(1, min(max_new_tokens, ctx - len(ids)))
    out = _generate(session, ids, max_new_tokens, tok.eos_ids)
    tokens = [t for t in out.tokens if t not in tok.eos_ids]
    return {"text": tok.decode(tokens), "prompt_tokens": len(ids), "tokens": out.tokens,
            "chat_template": bool(chat and tok.chat_template), "ttft_ms": out.ttft * 1e3,
            "tpot_ms": float(sum(out.token_times) / len(out.token_times) * 1e3) if out.token_times else None,
            "runner": session.manifest["runner"]}


def verify(bundle: Path, data: str, *, threads: int | None = None, max_samples: int = 1000,
           min_cosine: float | None = None, max_accuracy_drop: float | None = None,
           progress: Progress = SILENT) -> dict[str, Any]:
    """Compare the bundle's artifact with its float reference on ``data``.

    The result's ``passed`` says whether it meets ``min_cosine`` and ``max_accuracy_drop``
    (points); each defaults to the bundle's build-time result with a small tolerance
    (`edgec.compiler.verify_bounds`), and ``failures`` says why not.
    """
    from edgec.calibration import load_calibration_data
    from edgec.compiler.lowering import is_classifier
    from edgec.runtimes import io as rio
    from edgec.runtimes.harness import compare
    from edgec.runtimes.registry import reference_runner
    from edgec.targets.registry import get_target

    bundle = Path(bundle)
    manifest = _open_bundle(bundle)
    if "methods" in manifest:  # a generation bundle: perplexity / greedy agreement / logit cosine on text
        from edgec.compiler.llm.accuracy import verify_text

        from edgec.compiler.bundle import read_report

        return verify_text(bundle, manifest, data, threads, read_report(bundle), min_cosine,
                           max_accuracy_drop) | {"data": str(data)}
    specs = [rio.spec(d) for d in manifest["model_inputs"]]
    tok = bundle / manifest["tokenizer"] if manifest.get("tokenizer") else None
    samples = load_calibration_data(data, specs, max_samples=max_samples, tokenizer_dir=tok, role="--data")
    runner = get_target(manifest["target"]).verify_runner(bundle, manifest)
    ref = reference_runner(bundle, manifest, threads=threads)
    with runner, ref, progress.task("verifying", total=len(samples)) as t:
        result = compare(runner, ref, samples.samples, labels=samples.labels, classification=is_classifier(manifest),
                         on_sample=lambda _: t.advance())
    result.update({"bundle": str(bundle), "target": manifest["target"], "precision": manifest["precision"],
                   "runner": runner.name, "data": str(data)})
    from edgec.compiler import verify_bounds
    from edgec.compiler.bundle import read_report

    bounds = verify_bounds.resolve(read_report(bundle), min_cosine, max_accuracy_drop)
    result["bounds"] = bounds
    result["failures"] = verify_bounds.failures(result, bounds)
    result["passed"] = not result["failures"]
    return result


def inspect(path: str) -> dict[str, Any]:
    """Inputs/outputs, op counts, parameters and size of a model or a bundle."""
    from edgec.compiler.bundle import MANIFEST, read_report

    p = Path(path)
    if p.is_dir() and (p / MANIFEST).is_file():
        manifest = _open_bundle(p, check_files=False)
        report = read_report(p)
        return {
            "kind": "bundle",
            "path": str(p),
            "target": manifest["target"],
            "precision": manifest["precision"],
            "runner": manifest["runner"],
            "artifact": manifest["artifact"],
            "inputs": manifest["inputs"],
            "outputs": manifest["outputs"],
            "model_inputs": manifest["model_inputs"],
            "files": manifest["files"],
            "size_bytes": sum(f["bytes"] for f in manifest["files"]),
            "accuracy": report.get("accuracy"),
            "source": manifest["source"],
        }
    from edgec.compiler.loaders import load_model

    handle = load_model(path)
    return {
        "kind": "model",
        "path": str(path),
        "format": handle.format,
        "source_kind": handle.meta.get("source_kind"),
        "task": handle.task,
        "inputs": [s.to_json() for s in handle.inputs],
        "outputs": [s.to_json() for s in handle.outputs],
        "op_counts": handle.op_counts(),
        "nodes": sum(handle.op_counts().values()),
        "parameters": handle.parameter_count(),
        "size_bytes": len(handle.serialize()),
        "opset": next((o.version for o in handle.proto.opset_import if o.domain in ("", "ai.onnx")), None)
        if handle.proto is not None else None,
    }


def list_targets() -> list[dict[str, Any]]:
    """Every registered target with aliases, precisions, options and availability here."""
    from edgec.targets.registry import DEFAULT_TARGET, TARGETS

    out = []
    for name in TARGETS.names():
        try:
            cls = TARGETS.target_class(name)
        except (ImportError, AttributeError) as exc:
            out.append({"name": name, "aliases": [], "description": "", "precisions": [], "default_precision": None,
                        "extra": None, "available": False, "missing": f"broken installation: {exc}", "note": None,
                        "default": name == DEFAULT_TARGET, "options": []})
            continue
        target = cls()
        reason = target.availability()
        out.append({
            "name": name,
            "aliases": list(cls.aliases),
            "description": cls.description,
            "precisions": list(cls.supported_precisions),
            "default_precision": cls.default_precision,
            "extra": cls.extra,
            "available": reason is None,
            "missing": reason,
            "note": target.status_note() if reason is None else None,
            "default": name == DEFAULT_TARGET,
            "options": [o.flag for o in cls.options],
            "calib_method": cls.quant_scheme.calib_method if cls.quant_scheme is not None else None,
        })
    return out


def debug_layers(bundle: Path, data: str, *, threshold_db: float = 20.0, max_samples: int = 64,
                 runtime: str = "onnxruntime") -> dict[str, Any]:
    """Per-layer error (SQNR, cosine, max abs) of a bundle's quantized model against its float reference.

    See `edgec.compiler.debug_layers`; rows come worst first, ``first_above_threshold`` is the
    first layer in graph order whose output SQNR is below ``threshold_db``.
    """
    from edgec.compiler.debug_layers import debug_bundle

    return debug_bundle(Path(bundle), data, threshold_db=threshold_db, max_samples=max_samples, runtime=runtime)
