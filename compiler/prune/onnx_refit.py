"""Recover a channel-pruned ONNX model's accuracy without training: least-squares refit.

After channels are removed, each 1x1 convolution that lost input channels is refitted so
that, on the calibration data, its output from the *pruned* model's activations matches the
unpruned model's output at the same tensor (ridge least squares on weights and bias, layer
by layer in graph order so later layers see the earlier refits). This is the reconstruction
step of channel pruning in the manner of He et al. (2017) and ThiNet, with the dependency
groups of `onnx_channels` choosing what goes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RIDGE = 1e-3  # relative to the mean diagonal of X^T X: keeps ill-conditioned refits near the original
MAX_ROWS = 40000
REFIT_SAMPLES = 32
MIN_ROWS_PER_INPUT = 4  # fewer samples than this per input channel: too few to refit (SE bottlenecks)


def refit_pointwise(unpruned: Any, pruned: Any, candidates: list[tuple[int, Any]],
                    samples: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Refit the 1x1 convs in ``candidates`` of ``pruned`` in place; returns what was refitted."""
    from onnx import helper, numpy_helper

    g = pruned.graph
    inits = {t.name: t for t in g.initializer}
    jobs = []
    for index, out_keep in candidates:
        node = g.node[index]
        w = numpy_helper.to_array(inits[node.input[1]])
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if w.shape[2:] != (1, 1) or int(attrs.get("group", 1)) != 1 or any(attrs.get("pads", [0]) ) \
                or any(s != 1 for s in attrs.get("strides", [1, 1])) or any(d != 1 for d in attrs.get("dilations", [1, 1])):
            continue
        jobs.append((node, out_keep))
    if not jobs or not samples:
        return {"refitted": 0}
    targets = tensor_values(unpruned, samples, [n.output[0] for n, _ in jobs])
    done, gains = 0, []
    for (node, out_keep), full_y in zip(jobs, targets):
        x = tensor_values(pruned, samples, [node.input[0]])[0]  # [S, Cin_kept, H, W] through earlier refits
        cin = x.shape[1]
        xm = x.transpose(0, 2, 3, 1).reshape(-1, cin).astype(np.float64)
        if xm.shape[0] < MIN_ROWS_PER_INPUT * cin:
            continue
        y = full_y if out_keep is None else full_y[:, out_keep]
        ym = y.transpose(0, 2, 3, 1).reshape(-1, y.shape[1]).astype(np.float64)
        if xm.shape[0] > MAX_ROWS:  # a fixed, spread-out subset of positions keeps the solve small
            rows = np.linspace(0, xm.shape[0] - 1, MAX_ROWS).astype(np.int64)
            xm, ym = xm[rows], ym[rows]
        w_t = inits[node.input[1]]
        w = numpy_helper.to_array(w_t).reshape(y.shape[1], cin).astype(np.float64)
        has_bias = len(node.input) > 2 and node.input[2] in inits
        b = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64) if has_bias else np.zeros(y.shape[1])
        before = float(np.mean((xm @ w.T + b - ym) ** 2))
        xa = np.concatenate([xm, np.ones((xm.shape[0], 1))], axis=1)
        gram = xa.T @ xa
        lam = RIDGE * float(np.mean(np.diag(gram)))
        prior = np.concatenate([w.T, b[None, :]], axis=0)  # ridge pulls toward the sliced weights
        sol = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), xa.T @ ym + lam * prior)
        after = float(np.mean((xa @ sol - ym) ** 2))
        if not after < before:
            continue
        shape = tuple(numpy_helper.to_array(w_t).shape)
        w_t.CopyFrom(numpy_helper.from_array(sol[:-1].T.reshape(shape).astype(np.float32), w_t.name))
        if has_bias:
            inits[node.input[2]].CopyFrom(numpy_helper.from_array(sol[-1].astype(np.float32), node.input[2]))
        elif np.any(sol[-1]):
            name = f"{node.name or node.output[0]}_refit_bias"
            g.initializer.append(numpy_helper.from_array(sol[-1].astype(np.float32), name))
            inits[name] = g.initializer[-1]
            node.input.append(name)
        done += 1
        gains.append(before / max(after, 1e-30))
    return {"refitted": done, "median_error_reduction": float(np.median(gains)) if gains else None,
            "samples": len(samples)}


def tensor_values(model: Any, samples: list[dict[str, np.ndarray]], names: list[str]) -> list[np.ndarray]:
    """Values of tensors ``names`` over all samples (stacked on the batch axis)."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    present = {o.name for o in m.graph.output}
    for n in names:
        if n not in present:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = [i.name for i in sess.get_inputs()]
    outs = [sess.run(names, {k: s[k] for k in feeds}) for s in samples]
    return [np.concatenate([o[i] for o in outs], axis=0) for i in range(len(names))]
