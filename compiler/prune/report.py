"""The ``pruning`` section of ``report.json``: sparsity, size, accuracy vs the unpruned model.

Keys::

    spec, method, applied_to, finetune
    parameters      {before, after, change}            all float parameters
    nonzero         {before, after}
    size_bytes      {weights_before, weights_after, weights_compressed_before,
                     weights_compressed_after, artifact, artifact_compressed}
    sparsity        {total, layers: [{node, op, weight, shape, params, zeros, sparsity,
                     groups_2to4_fraction, axis}]}      the pruned float ONNX's weights
    structure       method details (layers whose shape changed, heads removed ...)
    accuracy_vs_unpruned  {samples, data, cosine, max_abs_err, mean_abs_err,
                           top1_agreement, label_accuracy{unpruned, pruned}, accuracy_drop}
    speedup_expected {target: note}   which target gains what from this kind of pruning

"Compressed" sizes are zlib level 6 (gzip's default): unstructured zeros shrink a
download or a flash image that is compressed, while no target here runs faster on them.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from edgec.compiler.prune.hook import ZLIB_LEVEL, PruneState
from edgec.compiler.prune.onnx_prune import layer_stats
from edgec.runtimes.metrics import cosine

def gains_by_target(method: str) -> dict[str, str]:
    """``{target: what --prune METHOD buys there}`` for every registered target (their `pruning_gains`)."""
    from edgec.targets.registry import TARGETS

    return {name: TARGETS.target_class(name)().pruning_gain(method) for name in TARGETS.names()}


def _compressed_size(paths: list[Path]) -> int:
    comp = zlib.compressobj(ZLIB_LEVEL)
    n = 0
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 22):
                n += len(comp.compress(chunk))
    return n + len(comp.flush())


def _batches(samples: list[dict[str, np.ndarray]], size: int = 32):
    """Consecutive samples concatenated along axis 0 where their shapes agree."""
    i = 0
    while i < len(samples):
        group = [samples[i]]
        while len(group) < size and i + len(group) < len(samples) and all(
                samples[i + len(group)][k].shape == group[0][k].shape for k in group[0]):
            group.append(samples[i + len(group)])
        yield len(group), {k: np.concatenate([g[k] for g in group]) for k in group[0]}
        i += len(group)


def _torch_runner(module: Any, example: dict[str, Any]):
    import torch

    from edgec.compiler.export import flatten_outputs

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        n = next(iter(feeds.values())).shape[0]
        args = []
        for name, t in example.items():
            if name in feeds:
                args.append(torch.from_numpy(np.ascontiguousarray(feeds[name])))
            else:
                args.append(t.expand(n, *t.shape[1:]) if t.shape[0] == 1 else t)
        with torch.no_grad():
            return flatten_outputs(module(*args))[0]

    return run


def _onnx_runner(proto: Any):
    from edgec.runtimes.onnxruntime_runner import make_session

    sess = make_session(proto.SerializeToString())
    names = [i.name for i in sess.get_inputs()]
    batch_free = all(isinstance(i.shape[0], str) for i in sess.get_inputs() if i.shape)

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        if batch_free:
            return sess.run(None, {k: feeds[k] for k in names})[0]
        n = next(iter(feeds.values())).shape[0]
        return np.concatenate([sess.run(None, {k: feeds[k][i:i + 1] for k in names})[0] for i in range(n)])

    return run


def runners(state: PruneState, handle: Any):
    """``(unpruned, pruned)`` callables mapping a batch of feeds to the first output."""
    if state.applied_to == "pytorch":
        return _torch_runner(state.teacher, state.example), _torch_runner(state.student, state.example)
    return _onnx_runner(state.unpruned_proto), _onnx_runner(handle.proto)


def compare_unpruned(ref, got, samples: list[dict[str, np.ndarray]], labels: Any,
                     classification: bool) -> dict[str, Any]:
    """Pruned (``got``) vs unpruned (``ref``) float model on ``samples``: errors, cosine, top-1, labels."""
    cos, max_abs, abs_sum, n_el = [], 0.0, 0.0, 0
    top1, top1_n, hits = 0, 0, {"unpruned": 0, "pruned": 0}
    idx = 0
    for n, feeds in _batches(samples):
        want = np.asarray(ref(feeds), np.float64)
        have = np.asarray(got(feeds), np.float64)
        d = np.abs(have - want)
        max_abs = max(max_abs, float(d.max(initial=0.0)))
        abs_sum += float(d.sum())
        n_el += d.size
        for i in range(n):
            cos.append(cosine(have[i], want[i]))
        if classification and want.ndim >= 2 and want.shape[-1] > 1:
            hi = have.reshape(n, -1, want.shape[-1]).argmax(-1)
            wi = want.reshape(n, -1, want.shape[-1]).argmax(-1)
            top1 += int((hi == wi).sum())
            top1_n += hi.size
            if labels is not None:
                for i in range(n):
                    if idx + i < len(labels):
                        hits["pruned"] += int(hi[i, 0] == labels[idx + i])
                        hits["unpruned"] += int(wi[i, 0] == labels[idx + i])
        idx += n
    out: dict[str, Any] = {"samples": idx, "cosine": float(np.mean(cos)) if cos else None, "max_abs_err": max_abs,
                           "mean_abs_err": abs_sum / n_el if n_el else 0.0,
                           "top1_agreement": top1 / top1_n if top1_n else None}
    if labels is not None and top1_n and idx:
        out["label_accuracy"] = {k: v / idx for k, v in hits.items()}
        out["accuracy_drop"] = out["label_accuracy"]["unpruned"] - out["label_accuracy"]["pruned"]
    return out


def pruning_warnings(spec: Any, target: str | None, options: dict[str, Any] | None) -> list[str]:
    """Honest one-liners for a build: no speedup from sparsity where the target has no sparse kernels."""
    if target is None:
        return []
    from edgec.targets.registry import get_target

    return get_target(target).pruning_warnings(spec, options or {})


def pruning_report(handle: Any, samples: list[dict[str, np.ndarray]], labels: Any, data: str,
                   classification: bool, target: str | None, options: dict[str, Any] | None,
                   artifact_paths: list[Path]) -> tuple[dict[str, Any], list[str]]:
    """The ``report["pruning"]`` section of a pruned build (module docstring) and its warnings.

    Args:
        handle: The pruned float model (``meta["prune"]`` holds the `PruneState`).
        samples: Evaluation samples (model convention).
        labels: Labels of the samples, or None.
        data: Where the samples came from (for the report).
        classification: Whether top-1 agreement means something for the first output.
        target: The build's target name (None for ``edgec prune``).
        options: The target's options (``sparsity`` for jetson).
        artifact_paths: The artifact's model/weights files (their size and compressed size).
    """
    state: PruneState = handle.meta["prune"]
    rows = layer_stats(handle.proto)
    params = sum(r["params"] for r in rows)
    zeros = sum(r["zeros"] for r in rows)
    acc = compare_unpruned(*runners(state, handle), samples, labels, classification)
    acc["data"] = data
    b, a = state.before, state.after
    notes = gains_by_target(state.spec.method)
    section = {
        "spec": state.spec.text,
        "method": state.spec.method,
        "applied_to": state.applied_to,
        "finetune": state.finetune,
        "parameters": {"before": b["parameters"], "after": a["parameters"],
                       "change": round(a["parameters"] / b["parameters"] - 1.0, 6) if b["parameters"] else 0.0},
        "nonzero": {"before": b["nonzero"], "after": a["nonzero"]},
        "size_bytes": {"weights_before": b["bytes"], "weights_after": a["bytes"],
                       "weights_compressed_before": b["compressed_bytes"],
                       "weights_compressed_after": a["compressed_bytes"],
                       "artifact": sum(p.stat().st_size for p in artifact_paths),
                       "artifact_compressed": _compressed_size(artifact_paths),
                       "compression": f"zlib level {ZLIB_LEVEL}"},
        "sparsity": {"total": round(zeros / params, 4) if params else 0.0, "layers": rows},
        "structure": state.structure,
        "accuracy_vs_unpruned": acc,
        "speedup_expected": notes,
    }
    if target in notes:
        section["speedup_expected_here"] = notes[target]
    return section, pruning_warnings(state.spec, target, options)
