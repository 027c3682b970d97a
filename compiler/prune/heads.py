"""Attention-head pruning for BERT-like transformers (BERT, RoBERTa, MiniLM, ELECTRA ...).

A BERT-like attention block has a self-attention module with ``query``, ``key`` and
``value`` Linear layers and ``attention_head_size``, and an ``output.dense`` Linear that
projects the concatenated heads back. Removing head ``h`` removes rows
``h*d:(h+1)*d`` of Q, K and V (weights and biases) and the same columns of the output
projection; the block's ``num_attention_heads``/``all_head_size`` are updated (the
transformers forward reshapes by head size, so the smaller block runs unchanged). This
is what transformers' former ``prune_heads`` did; transformers 5 dropped it.

Importance per head: ``magnitude`` = L2 norm of the head's Q/K/V rows and output columns;
``activation`` = mean L2 norm, over the calibration tokens, of the head's contribution to
the output projection (``ctx_h @ W_o[:, h]^T``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgec._deps import require
from edgec.compiler.prune.spec import PruneSpec
from edgec.errors import ConfigError


@dataclass
class AttentionBlock:
    """One BERT-like attention block found in a module."""

    name: str
    self_attn: Any
    output: Any  # the output projection Linear

    @property
    def heads(self) -> int:
        return int(self.self_attn.query.out_features // self.head_size)

    @property
    def head_size(self) -> int:
        return int(self.self_attn.attention_head_size)

    @property
    def projections(self) -> list[Any]:
        return [self.self_attn.query, self.self_attn.key, self.self_attn.value]


def find_attention_blocks(module: Any) -> list[AttentionBlock]:
    """Every BERT-like attention block in ``module`` (empty when there is none)."""
    torch = require("torch", "export")
    lin = torch.nn.Linear
    blocks = []
    for name, m in module.named_modules():
        sa = getattr(m, "self", None)
        out = getattr(getattr(m, "output", None), "dense", None)
        if sa is None or not isinstance(out, lin):
            continue
        if all(isinstance(getattr(sa, k, None), lin) for k in ("query", "key", "value")) and \
                isinstance(getattr(sa, "attention_head_size", None), int):
            blocks.append(AttentionBlock(name, sa, out))
    return blocks


def _head_slices(block: AttentionBlock) -> list[slice]:
    d = block.head_size
    return [slice(h * d, (h + 1) * d) for h in range(block.heads)]


def magnitude_scores(block: AttentionBlock):
    """L2 norm per head of its Q/K/V rows and output-projection columns."""
    torch = require("torch", "export")
    scores = []
    for s in _head_slices(block):
        sq = sum(float(p.weight.detach()[s].double().pow(2).sum()) for p in block.projections)
        sq += float(block.output.weight.detach()[:, s].double().pow(2).sum())
        scores.append(sq ** 0.5)
    return torch.tensor(scores, dtype=torch.float64)


def activation_scores(module: Any, blocks: list[AttentionBlock], run) -> list[Any]:
    """Mean L2 norm per head of its contribution to the output projection over ``run()``'s tokens."""
    torch = require("torch", "export")
    sums = {id(b): torch.zeros(b.heads, dtype=torch.float64) for b in blocks}
    counts = {id(b): 0 for b in blocks}
    hooks = []
    for b in blocks:
        def pre_hook(layer, args, b=b):
            x = args[0].detach()
            flat = x.reshape(-1, x.shape[-1])
            for h, s in enumerate(_head_slices(b)):
                contrib = flat[:, s] @ layer.weight[:, s].detach().T
                sums[id(b)][h] += contrib.double().norm(dim=-1).sum()
            counts[id(b)] += flat.shape[0]

        hooks.append(b.output.register_forward_pre_hook(pre_hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    return [sums[id(b)] / max(counts[id(b)], 1) for b in blocks]


def _slice_linear(layer: Any, idx: Any, dim: int) -> None:
    torch = require("torch", "export")
    with torch.no_grad():
        layer.weight = torch.nn.Parameter(layer.weight.index_select(dim, idx).clone())
        if dim == 0:
            if layer.bias is not None:
                layer.bias = torch.nn.Parameter(layer.bias.index_select(0, idx).clone())
            layer.out_features = int(idx.numel())
        else:
            layer.in_features = int(idx.numel())


def remove_heads(block: AttentionBlock, drop: list[int]) -> None:
    """Remove heads ``drop`` from ``block`` in place."""
    torch = require("torch", "export")
    d, n = block.head_size, block.heads
    keep_heads = [h for h in range(n) if h not in set(drop)]
    if not keep_heads:
        raise ConfigError(f"cannot remove every head of {block.name}")
    idx = torch.tensor([h * d + i for h in keep_heads for i in range(d)], dtype=torch.long)
    for p in block.projections:
        _slice_linear(p, idx, 0)
    _slice_linear(block.output, idx, 1)
    sa = block.self_attn
    sa.num_attention_heads = len(keep_heads)
    sa.all_head_size = len(keep_heads) * d


def prune_heads(module: Any, spec: PruneSpec, run_calib) -> dict[str, Any]:
    """Remove ``round(ratio * heads)`` heads from every BERT-like attention block (in place).

    Args:
        module: The model.
        spec: A ``heads`` spec.
        run_calib: Callable running the model on calibration data (activation importance),
            or None.

    Returns:
        ``{"blocks": [{"name", "heads_before", "heads_after", "removed"}]}`` for the report.
    """
    blocks = find_attention_blocks(module)
    if not blocks:
        raise ConfigError("--prune heads needs a BERT-like transformers model (attention blocks with query/key/value "
                          "Linear layers); none was found: use channels:R for other models")
    if spec.importance == "activation":
        if run_calib is None:
            raise ConfigError("--prune heads:...,importance=activation needs calibration data: give --calib")
        scores = activation_scores(module, blocks, run_calib)
    else:
        scores = [magnitude_scores(b) for b in blocks]
    rows = []
    for b, sc in zip(blocks, scores):
        n = b.heads
        k = min(int(round(spec.ratio * n)), n - 1)
        drop = sorted(int(i) for i in sc.argsort()[:k]) if k > 0 else []
        if drop:
            remove_heads(b, drop)
        rows.append({"name": b.name, "heads_before": n, "heads_after": n - len(drop), "removed": drop})
    if not any(r["removed"] for r in rows):
        raise ConfigError(f"--prune {spec.text}: the ratio removes no head (blocks have "
                          f"{blocks[0].heads if blocks else 0} heads); use a larger ratio")
    return {"blocks": rows}
