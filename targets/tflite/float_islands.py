"""Transformer float islands: the ops of an int8 transformer that stay float, chosen from the graph's structure.

Per-tensor int8 activations lose most on a transformer's attention scores (Q·Kᵀ, with the
mask's large negatives, into SOFTMAX) and on its GELU feed-forward. The quantization
debugger ranks ops by their own error, not by what it does downstream, and on whisper-tiny's
encoder its worst 32 ops float scored 0.9785 while the score path float scored 0.9995. So
the arm ladder's transformer rungs (`ISLAND_RUNGS`, cheapest first) keep named islands
float, found in the calibrated ``.tflite`` by the rules below, and XNNPACK runs them in
float beside the int8 ops (no 16x8 reference kernels).

Islands (rules as data):

* ``attention-scores``: every op on the path from a SOFTMAX back to the BATCH_MATMUL(s)
  feeding it (the scale MUL, the mask ADD, reshapes), the BATCH_MATMUL and the SOFTMAX;
* ``attention-values``: the BATCH_MATMUL that multiplies the SOFTMAX's output by V (float with the
  score path, or the SOFTMAX's output is requantized to int8's fixed 1/256 step in between);
* ``gelu-ffn``: each GELU, the FULLY_CONNECTED (or BATCH_MATMUL) that feeds it and the one it feeds;
* ``residual-norm``: each LayerNorm (the ops around an RSQRT, back to the MEANs of its input
  and on to the scaled, shifted output) and the residual ADD that feeds it: MiniLM's residual
  stream carries outlier channels that one int8 scale per tensor cannot hold (full-integer
  0.77; these and ``gelu-ffn`` float: 0.995).
"""

from __future__ import annotations

from typing import Any

# (rung name, the islands it keeps float), cheapest first.
ISLAND_RUNGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # The score path goes float with P·V: an int8 P·V reads the SOFTMAX's output requantized to TFLite's fixed
    # 1/256 step, which absorbs the float score path (whisper-tiny: scores float, P·V int8 gave bit-identical
    # outputs to full-integer, 0.978449), and over 1500 frames P's values (~1/1500) round to 0 or 1 step.
    ("attention", ("attention-scores", "attention-values")),
    ("attention+ffn", ("attention-scores", "attention-values", "gelu-ffn")),
    ("norms+ffn", ("residual-norm", "gelu-ffn")),
    ("norms+ffn+attention", ("residual-norm", "gelu-ffn", "attention-scores", "attention-values")),
)
MATMUL_OPS = frozenset({"BATCH_MATMUL", "FULLY_CONNECTED"})
# Ops a score path may hold between its BATCH_MATMUL and the SOFTMAX (scale, mask, reshapes).
SCORE_PATH_OPS = frozenset({"MUL", "ADD", "SUB", "DIV", "RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS",
                            "MINIMUM", "MAXIMUM", "REDUCE_MIN", "REDUCE_MAX", "SELECT", "SELECT_V2"})
# Ops that only move or select data, between a SOFTMAX or GELU and the matmul it feeds
# (onnx2tf guards a SOFTMAX's output against NaN with a SELECT_V2).
PASS_THROUGH_OPS = frozenset({"RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "SELECT", "SELECT_V2"})
# The elementwise ops of a decomposed LayerNorm (onnx2tf: mean, variance, rsqrt, scale, shift).
NORM_OPS = frozenset({"MEAN", "SQUARED_DIFFERENCE", "SQUARE", "ADD", "SUB", "MUL", "DIV", "RSQRT", "SQRT"})
MAX_PATH_OPS = 8  # a score path longer than this is not a score path


def op_graph(data: bytes) -> list[dict[str, Any]]:
    """``[{"op", "inputs", "outputs"}]`` of a ``.tflite`` in execution order (tensor names; constants included)."""
    from edgec.targets.tflite.tflite_io import interpreter_class

    Interpreter, _ = interpreter_class()
    interp = Interpreter(model_content=data)
    names = {d["index"]: d["name"] for d in interp.get_tensor_details()}
    return [{"op": op["op_name"], "inputs": [names[i] for i in op["inputs"] if i in names],
             "outputs": [names[i] for i in op["outputs"] if i in names]}
            for op in interp._get_ops_details()]  # noqa: SLF001 - LiteRT's only per-op view


def find_islands(ops: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Op indices of each island kind in ``ops`` (`op_graph`)."""
    producer = {t: i for i, op in enumerate(ops) for t in op["outputs"]}
    consumers: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        for t in op["inputs"]:
            consumers.setdefault(t, []).append(i)
    found: dict[str, list[int]] = {"attention-scores": [], "attention-values": [], "gelu-ffn": [],
                                   "residual-norm": []}
    for i, op in enumerate(ops):
        if op["op"] == "SOFTMAX":
            path = _back_to_matmul(ops, producer, i)
            if path:
                found["attention-scores"] += [*path, i]
            found["attention-values"] += _forward_to_matmul(ops, consumers, i, MATMUL_OPS - {"FULLY_CONNECTED"})
        elif op["op"] == "GELU":
            back = _through(ops, producer, op["inputs"][0], MATMUL_OPS)
            found["gelu-ffn"] += [*([back] if back is not None else []), i,
                                  *_forward_to_matmul(ops, consumers, i, MATMUL_OPS)]
        elif op["op"] == "RSQRT":
            found["residual-norm"] += _layer_norm(ops, producer, consumers, i)
    return {k: sorted(set(v)) for k, v in found.items()}


def island_nodes(ops: list[dict[str, Any]], islands: tuple[str, ...]) -> tuple[list[str], dict[str, int]]:
    """``(output tensor names to deny-list, {op type: count})`` of the named islands."""
    found = find_islands(ops)
    idx = sorted({i for k in islands for i in found[k]})
    counts: dict[str, int] = {}
    for i in idx:
        counts[ops[i]["op"]] = counts.get(ops[i]["op"], 0) + 1
    return [ops[i]["outputs"][0] for i in idx if ops[i]["outputs"]], dict(sorted(counts.items()))


def _back_to_matmul(ops, producer, softmax: int) -> list[int]:
    """Ops from the SOFTMAX's input back to the matmul(s) that compute the scores (empty: none found)."""
    path, frontier, matmuls = [], [ops[softmax]["inputs"][0]], 0
    while frontier and len(path) <= MAX_PATH_OPS:
        i = producer.get(frontier.pop())
        if i is None or i in path:
            continue
        if ops[i]["op"] == "BATCH_MATMUL":
            path.append(i)
            matmuls += 1
        elif ops[i]["op"] in SCORE_PATH_OPS:
            path.append(i)
            frontier += ops[i]["inputs"]
    return path if matmuls and len(path) <= MAX_PATH_OPS else []


def _layer_norm(ops, producer, consumers, rsqrt: int) -> list[int]:
    """A LayerNorm's ops around its RSQRT and the residual ADD feeding it (empty: not a LayerNorm)."""
    back, frontier, x = [rsqrt], list(ops[rsqrt]["inputs"]), None
    while frontier and len(back) <= MAX_PATH_OPS:
        i = producer.get(frontier.pop())
        if i is None or i in back or ops[i]["op"] not in NORM_OPS:
            continue
        if ops[i]["op"] == "MEAN" and ops[i]["inputs"][0] not in {t for j in back for t in ops[j]["outputs"]}:
            src = producer.get(ops[i]["inputs"][0])
            if src is None or ops[src]["op"] != "SQUARED_DIFFERENCE":  # the mean of x, not of the variance
                x = ops[i]["inputs"][0]
        back.append(i)
        frontier += ops[i]["inputs"]
    if x is None:
        return []
    # Forward: the scale and shift, ops all of whose computed inputs are x or the norm's own outputs.
    have = {x, *(t for j in back for t in ops[j]["outputs"])}
    norm, grew = set(back), True
    while grew and len(norm) <= 2 * MAX_PATH_OPS:
        grew = False
        for t in list(have):
            for j in consumers.get(t, []):
                if j in norm or ops[j]["op"] not in NORM_OPS:
                    continue
                if all(u in have or u not in producer for u in ops[j]["inputs"]):
                    norm.add(j)
                    have.update(ops[j]["outputs"])
                    grew = True
    src = producer.get(x)
    residual = [src] if src is not None and ops[src]["op"] == "ADD" else []
    return sorted(norm) + residual


def _forward_to_matmul(ops, consumers, start: int, kinds) -> list[int]:
    """The matmuls ``start``'s output reaches through data-movement ops only, and those ops (empty: none reached)."""
    found, between, frontier = [], [], list(ops[start]["outputs"])
    while frontier and len(between) <= MAX_PATH_OPS:
        for j in consumers.get(frontier.pop(), []):
            if ops[j]["op"] in kinds:
                found.append(j)
            elif ops[j]["op"] in PASS_THROUGH_OPS and j not in between:
                between.append(j)
                frontier += ops[j]["outputs"]
    return [*between, *found] if found else []


def _through(ops, producer, tensor: str, kinds) -> int | None:
    """The op of ``kinds`` that produces ``tensor`` through data-movement ops only."""
    i = producer.get(tensor)
    while i is not None and ops[i]["op"] in PASS_THROUGH_OPS:
        i = producer.get(ops[i]["inputs"][0])
    return i if i is not None and ops[i]["op"] in kinds else None
