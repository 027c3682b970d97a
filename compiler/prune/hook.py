"""Where pruning plugs into loading and the build pipeline.

* `apply_torch` runs in the loader (``finish_torch``) on the PyTorch module before export:
  prune, fine-tune (``--finetune``), fold masks; the unpruned module is kept as the report's
  baseline and the distillation teacher.
* `after_optimize` runs in the pipeline on the optimized float ONNX: it prunes ONNX sources
  (magnitude, N:M) and returns the ``prune`` pass entry for the manifest.

The bundle's ``reference/model.onnx`` is the *pruned* float model, so the artifact's error
(``report.accuracy``) measures quantization/lowering only; ``report.pruning`` compares the
pruned float model with the unpruned one.
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgec.compiler.progress import SILENT, Progress
from edgec.compiler.prune.spec import PruneRequest, PruneSpec
from edgec.errors import ConfigError

ZLIB_LEVEL = 6  # gzip's default level: "compressed size" is what `gzip -6` would give


@dataclass
class PruneState:
    """What pruning leaves in ``handle.meta["prune"]`` for the pipeline's report.

    Attributes:
        spec: The applied spec.
        applied_to: ``pytorch`` (before export) or ``onnx`` (initializers of an ONNX source).
        teacher: The unpruned PyTorch module (pytorch), or None.
        student: The pruned PyTorch module (pytorch), or None.
        example: Example inputs ``{name: tensor}`` (pytorch).
        unpruned_proto: The unpruned optimized ONNX (onnx sources).
        before: Weight statistics before pruning (`weight_stats`).
        after: Weight statistics after pruning and fine-tuning.
        structure: Method-specific details (layers whose shape changed, heads removed ...).
        finetune: The ``--finetune`` reference when fine-tuning ran.
    """

    spec: PruneSpec
    applied_to: str
    teacher: Any = None
    student: Any = None
    example: dict[str, Any] | None = None
    unpruned_proto: Any = None
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    structure: dict[str, Any] = field(default_factory=dict)
    finetune: str | None = None

    def pass_entry(self) -> dict[str, Any]:
        """The manifest ``passes`` entry."""
        cfg = self.spec.to_json() | {"applied_to": self.applied_to, "finetune": self.finetune}
        return {"name": "prune", "config": cfg}


def weight_stats(arrays: list[np.ndarray]) -> dict[str, Any]:
    """Parameter count, non-zeros, dense bytes and zlib-compressed bytes of ``arrays``."""
    comp = zlib.compressobj(ZLIB_LEVEL)
    size = 0
    for a in arrays:
        size += len(comp.compress(np.ascontiguousarray(a).tobytes()))
    size += len(comp.flush())
    return {"parameters": int(sum(a.size for a in arrays)),
            "nonzero": int(sum(np.count_nonzero(a) for a in arrays)),
            "bytes": int(sum(a.nbytes for a in arrays)),
            "compressed_bytes": int(size)}


def _torch_arrays(module: Any) -> list[np.ndarray]:
    seen, out = set(), []
    for _, p in module.named_parameters():
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p.detach().cpu().numpy())
    return out


def _layer_shapes(module: Any) -> dict[str, list[int]]:
    from edgec.compiler.prune.torch_prune import weighted_layers

    return {n: list(m.weight.shape) for n, m in weighted_layers(module)}


def _specs_of(example: dict[str, Any]):
    from edgec.compiler.model import TensorSpec

    return [TensorSpec(n, tuple(int(d) for d in t.shape), str(t.detach().cpu().numpy().dtype))
            for n, t in example.items()]


def load_calibration_tensors(request: PruneRequest, example: dict[str, Any]) -> tuple[dict[str, Any] | None, Any]:
    """The ``--calib`` inputs stacked into one batch ``{name: tensor}`` (example order), and labels."""
    import torch

    if not request.calib:
        return None, None
    from edgec.calibration import load_calibration_data

    data = load_calibration_data(request.calib, _specs_of(example), max_samples=request.calib_samples,
                                 tokenizer_dir=request.tokenizer_dir, preprocess=request.preprocess,
                                 seed=request.seed)
    stacked = data.stacked()
    n = len(data)
    out = {}
    for name, t in example.items():
        if name in stacked:
            out[name] = torch.from_numpy(np.ascontiguousarray(stacked[name]))
        else:
            out[name] = t.expand(n, *t.shape[1:]).clone() if t.shape[0] == 1 else t
    labels = torch.from_numpy(np.asarray(data.labels)) if data.labels is not None else None
    return out, labels


def _outputs(module: Any, inputs: dict[str, Any]) -> list[Any]:
    import torch

    from edgec.compiler.export import flatten_outputs

    with torch.no_grad():
        return flatten_outputs(module(*inputs.values()))


def apply_torch(module: Any, example: dict[str, Any], request: PruneRequest,
                progress: Progress = SILENT) -> tuple[Any, PruneState]:
    """Prune (and fine-tune) ``module`` before export; returns the pruned module and its state.

    Raises:
        ConfigError: The spec does not fit the model, fine-tuning failed, or the pruned model
            no longer produces outputs of the unpruned shapes.
    """
    from edgec.compiler.prune import heads as heads_mod, torch_prune
    from edgec.compiler.prune.distill import distillation_loss

    spec = request.spec
    module = module.eval()
    teacher = copy.deepcopy(module).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    before = weight_stats(_torch_arrays(module))
    shapes_before = _layer_shapes(module)
    want = [o.shape for o in _outputs(teacher, example)]
    needs_data = (spec.importance == "activation" and spec.structured) or bool(request.finetune)
    calib, labels = load_calibration_tensors(request, example) if needs_data else (None, None)
    progress.message(f"pruning ({spec.text}) the PyTorch model")
    structure: dict[str, Any] = {}
    if spec.method in ("magnitude", "nm"):
        structure["pruned_layers"] = len(torch_prune.apply_masks(module, spec))
    elif spec.method == "channels":
        blocks = heads_mod.find_attention_blocks(module)
        attention = [p for b in blocks for p in b.projections]
        structure |= torch_prune.prune_channels(module, example, spec, calib, attention)
    else:
        run = (lambda: module(*calib.values())) if calib is not None else None
        structure |= heads_mod.prune_heads(module, spec, run)
    if request.finetune:
        from edgec.compiler.prune.finetune import FinetuneContext, run_finetune

        progress.message(f"fine-tuning the pruned model with {request.finetune}")
        ctx = FinetuneContext(teacher=teacher, example_inputs=example, calibration=calib, labels=labels, spec=spec,
                              distillation_loss=distillation_loss)
        module = run_finetune(request.finetune, module, ctx)
    torch_prune.finalize_masks(module)
    module = module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        got = [o.shape for o in _outputs(module, example)]
    except Exception as exc:  # noqa: BLE001 - a broken pruned model
        raise ConfigError(f"the pruned model no longer runs ({spec.text}): {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if got != want:
        raise ConfigError(f"pruning ({spec.text}) changed the model's output shapes from {want} to {got}")
    shapes_after = _layer_shapes(module)
    changed = [{"layer": n, "before": s, "after": shapes_after.get(n)} for n, s in shapes_before.items()
               if shapes_after.get(n) != s]
    if spec.structured:
        structure["layers_changed"] = changed
    state = PruneState(spec=spec, applied_to="pytorch", teacher=teacher, student=module, example=dict(example),
                       before=before, after=weight_stats(_torch_arrays(module)), structure=structure,
                       finetune=request.finetune)
    return module, state


def _onnx_arrays(proto: Any) -> list[np.ndarray]:
    from onnx import numpy_helper

    return [numpy_helper.to_array(t) for t in proto.graph.initializer
            if t.data_type in (1, 10, 11, 16)]  # float, float16, double, bfloat16


def after_optimize(handle: Any, request: PruneRequest | None, progress: Progress = SILENT):
    """Prune an ONNX source's optimized graph (torch sources were pruned before export).

    Returns:
        ``(handle, pass_entry)``; ``pass_entry`` is None without ``--prune``.
    """
    if request is None:
        return handle, None
    state = handle.meta.get("prune")
    if state is None:
        from edgec.compiler.prune.onnx_prune import prune_onnx

        if request.spec.method == "heads" or request.finetune:
            raise ConfigError(f"--prune {request.spec.method}/--finetune need a PyTorch or Hugging Face model")
        if request.spec.method == "channels":
            from edgec.compiler.prune.onnx_channels import prune_channels_onnx

            samples = None
            if request.calib:  # activation importance and the least-squares refit use the calibration data
                from edgec.calibration import load_calibration_data
                from edgec.compiler.prune.onnx_refit import REFIT_SAMPLES

                samples = load_calibration_data(request.calib, handle.inputs, max_samples=REFIT_SAMPLES,
                                                preprocess=request.preprocess, seed=request.seed).samples
            progress.message(f"pruning ({request.spec.text}) channel groups of the ONNX graph")
            pruned, structure = prune_channels_onnx(handle.proto, request.spec, samples)
            candidates = structure.pop("refit_candidates")
            if samples:  # recover accuracy without training: least squares per pruned 1x1 conv
                from edgec.compiler.prune.onnx_refit import refit_pointwise

                progress.message("refitting the pruned 1x1 convolutions on the calibration data")
                structure["refit"] = refit_pointwise(handle.proto, pruned, candidates, samples)
        else:
            progress.message(f"pruning ({request.spec.text}) the ONNX initializers")
            pruned, info = prune_onnx(handle.proto, request.spec)
            structure = {"pruned_layers": len(info["weights"])}
        state = PruneState(spec=request.spec, applied_to="onnx", unpruned_proto=handle.proto,
                           before=weight_stats(_onnx_arrays(handle.proto)), after=weight_stats(_onnx_arrays(pruned)),
                           structure=structure)
        handle = handle.with_proto(pruned)
        handle.meta["prune"] = state
    return handle, state.pass_entry()
