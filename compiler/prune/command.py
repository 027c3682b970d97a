"""``edgec prune MODEL -o OUT --prune SPEC``: write the pruned float model and its report.

OUT holds ``model.onnx`` (the pruned float model, optimized, static shapes), ``report.json``
(``{"model", "source", "inputs", "outputs", "pruning": {...}}``, the same ``pruning``
section a build reports) and, for PyTorch/HF sources, ``model.safetensors`` (the pruned
module's state dict; structured specs change layer shapes, so load it into the pruned
architecture, e.g. by rebuilding it with the shapes in ``pruning.structure``). The ONNX
file is a valid ``edgec build`` source for any target.
"""

from __future__ import annotations

from typing import Any

from edgec.compiler import bundle as bundle_io
from edgec.compiler.config import BuildConfig
from edgec.compiler.output_dir import read_paths
from edgec.compiler.progress import SILENT, Progress
from edgec.errors import ConfigError

MODEL_FILE = "model.onnx"
WEIGHTS_FILE = "model.safetensors"
REPORT_FILE = "report.json"


def _samples(config: BuildConfig, handle: Any) -> tuple[list[dict], str, Any]:
    from edgec.calibration import load_calibration_data
    from edgec.runtimes.io import synthetic_feeds

    for path, name, cap in ((config.eval_data, config.eval_data, 1000), (config.calib, "calibration", 64)):
        if path:
            data = load_calibration_data(path, handle.inputs, max_samples=cap, tokenizer_dir=handle.tokenizer_dir,
                                         preprocess=config.preprocess, seed=config.seed)
            return data.samples, str(name), data.labels
    if handle.example_inputs is not None:
        return [handle.example_inputs], "example-inputs", None
    return [synthetic_feeds(handle.inputs, seed=config.seed + i) for i in range(8)], "synthetic", None


def prune_model(config: BuildConfig, progress: Progress = SILENT) -> dict[str, Any]:
    """Prune ``config.model`` with ``config.prune`` (spec and fine-tune) into ``config.output``.

    Returns:
        The written ``report.json`` content plus ``"output"`` (the folder).
    """
    from edgec.compiler.loaders import fix_input_shapes, load_model
    from edgec.compiler.optimize import optimize
    from edgec.compiler.prune.hook import after_optimize
    from edgec.compiler.prune.report import pruning_report
    from edgec.compiler.prune.spec import request_from_config

    if not config.prune:
        raise ConfigError("edgec prune needs --prune SPEC (e.g. channels:0.3, 2:4, magnitude:0.5)")
    request = request_from_config(config)
    writer = bundle_io.BundleWriter(config.output, config.force, reads=read_paths(config))
    try:
        progress.message(f"loading {config.model}")
        handle = load_model(config.model, task=config.task, input_shapes=config.input_shapes,
                            parity_tol=config.parity_tol, progress=progress, prune=request)
        handle = fix_input_shapes(handle, config.input_shapes)
        handle, _ = optimize(handle)
        handle, pass_entry = after_optimize(handle, request, progress)
        tmp = writer.tmp
        (tmp / MODEL_FILE).write_bytes(handle.serialize())
        state = handle.meta["prune"]
        files = [MODEL_FILE]
        if state.student is not None:
            from safetensors.torch import save_model

            save_model(state.student, str(tmp / WEIGHTS_FILE))
            (tmp / WEIGHTS_FILE).chmod(0o644)
            files.append(WEIGHTS_FILE)
        samples, data, labels = _samples(config, handle)
        out0 = handle.outputs[0]
        classification = (handle.task in ("image-classification", "text-classification", "token-classification")
                          or (handle.task is None and len(out0.shape) == 2))
        section, warnings = pruning_report(handle, samples, labels, data, classification, None, None,
                                           [tmp / MODEL_FILE])
        report = {"model": MODEL_FILE, "files": files, "source": {"path": config.model,
                                                                  "sha256": handle.source_sha256,
                                                                  "kind": handle.meta.get("source_kind")},
                  "task": handle.task, "inputs": [s.to_json() for s in handle.inputs],
                  "outputs": [s.to_json() for s in handle.outputs], "pass": pass_entry, "pruning": section,
                  "warnings": warnings}
        bundle_io.write_json(tmp / REPORT_FILE, report)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    progress.message(f"wrote {config.output}")
    return bundle_io.canonical(report) | {"output": str(config.output)}
