"""Per-group channel ratios by measured sensitivity (``--prune channels:R`` on ONNX with calibration data).

A uniform ratio cuts every channel group by ``R``; groups differ in how much the output
suffers (a squeeze-excitation bottleneck or the last stage more than an early wide one).
With calibration samples, each free group is cut alone at a few ratios and the model's
output error is measured; a greedy allocation then removes, step by step, the channels
whose output error per removed weight is lowest, until as many weights are gone as the
uniform ratio would remove (the same size budget, spent where it hurts least).

The trials run in one onnxruntime session of a *masked* graph: a Mul by a 0/1 mask feeds
every node that consumes a prunable layout (regular convs, Gemm/MatMul after a Flatten).
Zeroing a channel at every consumer is the function the pruned graph computes (removed
channels reach nothing else: whatever else touches them pins their group), so a trial is a
change of mask inputs, not a new model. This is the sensitivity analysis of Li et al.
(2017, "Pruning Filters for Efficient ConvNets") with a budgeted greedy allocation.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # trial ratios per group (0 = untouched)
TRIAL_SAMPLES = 16


def allocate(model: Any, spec: Any, free: list, groups: Any, slices: list, mask_points: list, inits: dict,
             samples: list[dict[str, np.ndarray]], kept_count: Callable[[int, float], int]
             ) -> tuple[dict[int, int], dict[str, Any]]:
    """Kept channels per group root, and what the allocation measured.

    Args:
        model: The (shape-inferred) float ONNX model.
        spec: The parsed ``--prune`` spec (its ratio sets the weight budget).
        free: ``(root, members, channels, order)`` of every prunable group.
        groups: The union-find of channel spaces.
        slices: ``(initializer, axis, layout, role)`` sliced per kept channel.
        mask_points: ``(node index, layout)`` of every node whose input 0 loses channels.
        inits: Initializer arrays by name.
        samples: Calibration feeds (the first `TRIAL_SAMPLES` are used).
        kept_count: ``(channels, ratio) -> kept channels`` (rounding of the spec).
    """
    from edgec.compiler.prune.onnx_channels import _indices

    masked, mask_inputs = _masked_model(model, mask_points)
    run = _runner(masked, samples[:TRIAL_SAMPLES])
    ones = {name: np.ones(shape, np.float32) for name, shape, _ in mask_inputs}
    reference = run(ones)

    def feeds(keep: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for name, shape, lay in mask_inputs:
            index = _indices(lay, keep)
            if index is None:
                out[name] = ones[name]
            else:
                m = np.zeros(int(np.prod(shape)), np.float32)
                m[index] = 1.0
                out[name] = m.reshape(shape)
        return out

    # Per group: kept count and measured error at each level (level 0 keeps everything).
    table: dict[int, list[tuple[int, float]]] = {}
    for root, members, channels, order in free:
        rows, worst = [(channels, 0.0)], 0.0
        for ratio in LEVELS:
            n = kept_count(channels, ratio)
            if n >= rows[-1][0]:
                continue
            kept = np.sort(order[:n])
            worst = max(worst, _error(run(feeds({m: kept for m in members})), reference))  # monotone in the cut
            rows.append((n, worst))
        table[root] = rows
    # Budget: as many weights as the uniform ratio removes (as small), spent where the output
    # error per removed weight grows least. (Measured on PP-LCNet: a channel budget kept the
    # size but lost the speed; adding the uniform ratio's MACs to the budget cut far more and
    # lost accuracy.)
    cost, macs = _cost_per_channel(model, free, groups, slices, inits)
    cut = {root: channels - kept_count(channels, spec.ratio) for root, _, channels, _ in free}
    budget = sum(cost[r] * cut[r] for r in cut)
    level = {root: 0 for root in table}
    removed = removed_macs = 0.0
    while removed < budget:
        best, best_score = None, None
        for root, rows in table.items():
            i = level[root]
            if i + 1 >= len(rows) or cost[root] <= 0:
                continue
            score = (rows[i + 1][1] - rows[i][1]) / (cost[root] * (rows[i][0] - rows[i + 1][0]))
            if best_score is None or score < best_score:
                best, best_score = root, score
        if best is None:
            break
        i = level[best]
        n = table[best][i][0] - table[best][i + 1][0]
        removed += cost[best] * n
        removed_macs += macs[best] * n
        level[best] = i + 1
    counts = {root: table[root][level[root]][0] for root in table}
    chosen = {root: np.sort(order[:counts[root]]) for root, _, _, order in free}
    final = _error(run(feeds({m: chosen[root] for root, members, _, _ in free for m in members})), reference)
    ratios = [1 - counts[root] / channels for root, _, channels, _ in free]
    return counts, {"method": "sensitivity", "trial_samples": min(len(samples), TRIAL_SAMPLES),
                    "weights_budget": int(budget), "weights_removed": int(removed),
                    "macs_removed": int(removed_macs),
                    "group_ratio_min": round(min(ratios), 3), "group_ratio_max": round(max(ratios), 3),
                    "output_rel_error_before_refit": round(float(final), 6)}


def _cost_per_channel(model: Any, free: list, groups: Any, slices: list, inits: dict
                      ) -> tuple[dict[int, float], dict[int, float]]:
    """Weights and multiply-accumulates removed with one channel of each group (every sliced
    initializer counted once per axis; MACs = weights x the output positions of its node)."""
    positions: dict[str, int] = {}
    dims = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in model.graph.value_info}
    dims.update({vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in model.graph.output})
    for node in model.graph.node:
        out = dims.get(node.output[0]) if node.output else None
        spatial = int(np.prod(out[2:])) if out and len(out) > 2 and all(d > 0 for d in out[2:]) else 1
        for x in node.input:
            if x in inits:
                positions.setdefault(x, spatial)
    cost = {root: 0.0 for root, _, _, _ in free}
    macs = dict(cost)
    seen = set()
    for name, axis, lay, _role in slices:
        for s, _c in lay.segments:
            root = groups.find(s)
            if root not in cost or (name, axis, root) in seen:
                continue
            seen.add((name, axis, root))
            arr = inits[name]
            w = arr.size / arr.shape[axis] * lay.per_channel
            cost[root] += w
            macs[root] += w * positions.get(name, 1)
    return cost, macs


def _masked_model(model: Any, mask_points: list) -> tuple[Any, list[tuple[str, tuple[int, ...], Any]]]:
    """A copy of ``model`` with a mask input multiplied into input 0 of every mask point."""
    import onnx
    from onnx import TensorProto, helper

    from edgec.compiler.prune.onnx_channels import _channels

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    at = {index: lay for index, lay in mask_points}
    nodes, inputs = [], []
    for i, node in enumerate(g.node):
        if i in at:
            lay = at[i]
            width = _channels(lay) * lay.per_channel
            rank = 4 if lay.per_channel == 1 and node.op_type == "Conv" else 2
            shape = (1, width, 1, 1) if rank == 4 else (1, width)
            name, masked = f"__prune_mask_{i}", f"__prune_masked_{i}"
            g.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
            nodes.append(helper.make_node("Mul", [node.input[0], name], [masked], name=f"__prune_mask_mul_{i}"))
            node.input[0] = masked
            inputs.append((name, shape, lay))
        nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    return out, inputs


def _runner(model: Any, samples: list[dict[str, np.ndarray]]) -> Callable[[dict], list[list[np.ndarray]]]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}

    def run(masks: dict[str, np.ndarray]) -> list[list[np.ndarray]]:
        return [sess.run(None, {**{k: v for k, v in s.items() if k in names}, **masks}) for s in samples]

    return run


def _error(got: list[list[np.ndarray]], want: list[list[np.ndarray]]) -> float:
    """Mean over samples of the summed relative squared error of every output."""
    total = 0.0
    for g_row, w_row in zip(got, want):
        for g, w in zip(g_row, w_row):
            w = np.asarray(w, np.float64)
            total += float(np.sum((np.asarray(g, np.float64) - w) ** 2) / max(np.sum(w * w), 1e-30))
    return total / max(len(want), 1)
