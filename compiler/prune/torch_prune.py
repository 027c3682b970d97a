"""Pruning a PyTorch module before it is exported to ONNX.

* ``magnitude`` and ``N:M``: keep-masks from `masks` attached with ``torch.nn.utils.prune``
  (``weight = weight_orig * weight_mask``), so a fine-tuning loop cannot revive pruned
  weights; `finalize_masks` folds them into plain weights before export.
* ``channels``: torch-pruning's dependency graph (``DependencyGraph`` / ``MetaPruner``)
  removes conv output channels and linear neurons together with every layer that consumes
  them (next layer's inputs, BatchNorm, flatten index maps). Layers whose outputs reach the
  model's outputs keep their width (the I/O contract), and attention projections are left
  to ``heads``.
* ``heads``: `edgec.compiler.prune.heads` (BERT-like attention).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgec._deps import require
from edgec.compiler.prune.masks import magnitude_masks, nm_mask
from edgec.compiler.prune.spec import PruneSpec
from edgec.errors import ConfigError


def weighted_layers(module: Any) -> list[tuple[str, Any]]:
    """``(name, layer)`` for every Conv and Linear with a weight of rank >= 2, in module order."""
    torch = require("torch", "export")
    kinds = (torch.nn.modules.conv._ConvNd, torch.nn.Linear)
    return [(n, m) for n, m in module.named_modules()
            if isinstance(m, kinds) and getattr(m, "weight", None) is not None and m.weight.dim() >= 2]


def reduction_axis(layer: Any) -> int:
    """The input-channel axis of a layer's weight (TensorRT's 2:4 axis after export)."""
    torch = require("torch", "export")
    if isinstance(layer, torch.nn.modules.conv._ConvTransposeNd):
        return 0  # weight [I, O/g, k...]
    return 1  # Conv [O, I/g, k...], Linear [out, in]


def apply_masks(module: Any, spec: PruneSpec) -> list[str]:
    """Attach magnitude or N:M keep-masks to every Conv/Linear weight; returns the layer names."""
    torch = require("torch", "export")
    from torch.nn.utils import prune as tprune

    layers = weighted_layers(module)
    if not layers:
        raise ConfigError(f"--prune {spec.text}: the model has no Conv or Linear weights to prune")
    weights = [m.weight.detach().cpu().numpy() for _, m in layers]
    if spec.method == "magnitude":
        masks = magnitude_masks(weights, spec.ratio, spec.scope)
    else:
        masks = [nm_mask(w, spec.n, spec.m, reduction_axis(m)) for w, (_, m) in zip(weights, layers)]
    for (_, layer), mask in zip(layers, masks):
        tprune.custom_from_mask(layer, "weight", torch.from_numpy(np.ascontiguousarray(mask)).to(layer.weight.device))
    return [n for n, _ in layers]


def finalize_masks(module: Any) -> None:
    """Fold ``torch.nn.utils.prune`` masks into the weights (no-op for unmasked layers)."""
    from torch.nn.utils import prune as tprune

    for _, m in module.named_modules():
        if hasattr(m, "weight_mask") and hasattr(m, "weight_orig"):
            tprune.remove(m, "weight")


def _call(model: Any, example: dict[str, Any]):
    return model(*example.values())


def _first_tensor(out: Any):
    torch = require("torch", "export")
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        return _first_tensor(next(iter(out.values())))
    if isinstance(out, (tuple, list)):
        return _first_tensor(out[0])
    if hasattr(out, "to_tuple"):
        return _first_tensor(out.to_tuple())
    raise ConfigError(f"cannot read the model's output of type {type(out).__name__} for pruning")


def _output_layers(tp: Any, graph: Any, layers: list[Any]) -> list[Any]:
    """Layers whose output channels reach a model output without another Conv/Linear in between."""
    torch = require("torch", "export")
    kinds = (torch.nn.modules.conv._ConvNd, torch.nn.Linear)
    out = []
    for layer in layers:
        node = graph.module2node.get(layer)
        if node is None:
            continue
        stack, seen, reaches = [node], set(), False
        while stack and not reaches:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            if isinstance(n.module, tp.ops._OutputOp) or not n.outputs:
                reaches = True
                break
            stack.extend(o for o in n.outputs if not isinstance(o.module, kinds))
        if reaches:
            out.append(layer)
    return out


def _activation_importance(tp: Any, torch: Any):
    """Channel importance = mean |activation| entering the layers that consume the channel.

    Statistics are per input feature of every Conv/Linear, collected by `collect` over the
    calibration batch; a group's score for root channel ``c`` adds the consumers' entries
    mapped to ``c`` (a flatten maps one channel to many Linear inputs). Dead (always-zero)
    channels score 0 and go first.
    """

    class ActivationImportance(tp.importance.Importance):
        def __init__(self) -> None:
            self.stats: dict[Any, Any] = {}

        def collect(self, model: Any, run) -> None:
            kinds = (torch.nn.modules.conv._ConvNd, torch.nn.Linear)
            sums: dict[Any, Any] = {}

            def hook(layer, args):
                x = args[0].detach().abs().double()
                if isinstance(layer, torch.nn.Linear):
                    v = x.reshape(-1, x.shape[-1]).mean(0)
                else:
                    v = x.transpose(0, 1).reshape(x.shape[1], -1).mean(1)
                prev = sums.get(layer)
                sums[layer] = v if prev is None else prev + v

            handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, kinds)]
            try:
                with torch.no_grad():
                    run()
            finally:
                for h in handles:
                    h.remove()
            self.stats = sums

        def __call__(self, group: Any):
            fns = (tp.prune_conv_in_channels, tp.prune_linear_in_channels)
            n = len(group[0].idxs)
            imp = torch.zeros(n, dtype=torch.float64)
            found = False
            for i, (dep, idxs) in enumerate(group):
                layer = dep.target.module
                if dep.handler not in fns or layer not in self.stats:
                    continue
                root = torch.as_tensor(group[i].root_idxs, dtype=torch.long)
                vals = self.stats[layer][torch.as_tensor(idxs, dtype=torch.long)]
                if root.numel() != vals.numel() or (root.numel() and int(root.max()) >= n):
                    continue
                imp.index_add_(0, root, vals)
                found = True
            return imp.float() if found else None

    return ActivationImportance()


def prune_channels(module: Any, example: dict[str, Any], spec: PruneSpec, calib: dict[str, Any] | None,
                   attention_layers: list[Any]) -> dict[str, Any]:
    """Remove ``spec.ratio`` of the output channels of every prunable Conv/Linear (in place).

    Args:
        module: The model (eval mode).
        example: Example inputs ``{name: tensor}`` (positional order).
        spec: A ``channels`` spec.
        calib: Calibration inputs stacked into one batch (activation importance), or None.
        attention_layers: Attention projections to leave alone (pruned by ``heads``).

    Returns:
        ``{"ignored": [...], "groups": n}`` for the report.
    """
    torch = require("torch", "export")
    tp = require("torch_pruning", "prune", "torch-pruning")
    names = {m: n for n, m in module.named_modules()}
    layers = [m for _, m in weighted_layers(module)]

    def forward_fn(model, inputs):
        return _first_tensor(_call(model, inputs))

    with torch.enable_grad():
        graph = tp.DependencyGraph().build_dependency(module, example_inputs=example, forward_fn=forward_fn)
        ignored = list(dict.fromkeys(_output_layers(tp, graph, layers) + list(attention_layers)))
        if spec.importance == "activation":
            if calib is None:
                raise ConfigError("--prune channels:...,importance=activation needs calibration data: give --calib")
            importance = _activation_importance(tp, torch)
            importance.collect(module, lambda: _call(module, calib))
        else:
            importance = tp.importance.GroupMagnitudeImportance(p=2)
        pruner = tp.pruner.MetaPruner(module, example, importance=importance, pruning_ratio=spec.ratio,
                                      ignored_layers=ignored, round_to=spec.round_to, forward_fn=forward_fn)
        groups = list(pruner.DG.get_all_groups(ignored_layers=ignored, root_module_types=pruner.root_module_types))
        if not groups:
            raise ConfigError(f"--prune {spec.text}: no channel can be removed (every Conv/Linear feeds a model "
                              "output or an attention block)")
        pruner.step()
    return {"ignored": sorted(names.get(m, "?") for m in ignored), "groups": len(groups)}
