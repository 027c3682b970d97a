"""Pruning: unstructured magnitude, N:M (2:4) and structured (channels, attention heads).

``edgec build MODEL --prune SPEC [--finetune file.py:train_fn]`` prunes before quantizing;
``edgec prune MODEL -o OUT --prune SPEC`` writes the pruned float model. Specs are parsed
by `parse_prune_spec` (``magnitude:0.5[,scope=global|layer]``, ``2:4``,
``channels:0.3[,importance=magnitude|activation][,round=8]``,
``heads:0.25[,importance=...]``).

Which kind gives a speedup where: ``channels``/``heads`` make a smaller dense model that is
faster on every target; ``2:4`` is used by TensorRT's sparse tensor cores on Jetson Orin
(``--sparsity``); unstructured ``magnitude`` sparsity speeds up none of the targets and
only shrinks compressed size. Every pruned build's ``report.json`` has a ``pruning``
section (`edgec.compiler.prune.report`).

Heavy modules (torch, torch-pruning, onnx) are imported only when used.
"""

from __future__ import annotations

from typing import Any

from edgec.compiler.prune.spec import PruneRequest, PruneSpec, parse_prune_spec, request_from_config

__all__ = ["PruneRequest", "PruneSpec", "distillation_loss", "parse_prune_spec", "request_from_config"]


def distillation_loss(student_logits: Any, teacher_logits: Any, labels: Any = None, **kw: Any) -> Any:
    """Knowledge-distillation loss; see `edgec.compiler.prune.distill.distillation_loss`."""
    from edgec.compiler.prune.distill import distillation_loss as _kd

    return _kd(student_logits, teacher_logits, labels, **kw)
