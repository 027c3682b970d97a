"""The int8 quantize stage: SmoothQuant, per-tensor calibration method choice, Q/DQ, bias correction.

`Int8Quantizer` holds what is needed to (re)quantize the float model, so the accuracy gate
can ask for variants (nodes kept in float, another calibration method for some tensors)
without repeating calibration. ``--calib-method auto`` chooses, tensor by tensor,
among the registered observers' ranges (minmax, percentile, entropy, mse ... plugins too): each
tensor's candidates are judged by their own quantization error, and a handful of whole-model
assignments plus a fixed budget of single-tensor switches are measured at the model's outputs
(relative squared error against the float model on up to `AUTO_SAMPLES` calibration samples,
fewer on large models (`auto_samples`), in onnxruntime; `edgec.compiler.scale_screen`); the
choice per tensor is recorded in the manifest.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.calibration.observers import registered_observers
from edgec.compiler.config import HELD_OUT_CALIB_METHOD
from edgec.compiler.model_recipes import collected_with, deep_residual_scheme, model_scheme, transformer_scheme

if TYPE_CHECKING:
    from edgec.calibration import CalibrationData, TensorRange
    from edgec.compiler.config import BuildConfig
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.progress import Progress
    from edgec.targets.base import QuantScheme

AUTO_SAMPLES = 16
# Fewer samples (down to AUTO_MIN_SAMPLES) where one evaluation on AUTO_SAMPLES would compute
# more than AUTO_ELEMENTS activation values: PicoDet at 800x608 took 27 s per evaluation on 16.
AUTO_MIN_SAMPLES = 8
AUTO_ELEMENTS = 8e8
MIN_SPREAD_SAMPLES = 4


def quantized_tensors(qproto, ranges: dict[str, Any]) -> list[str]:
    """Activation tensors that got a Q/DQ pair, in graph order (names as in ``ranges``)."""
    producer = {o: n for n in qproto.graph.node for o in n.output}
    out = []
    for n in qproto.graph.node:
        if n.op_type != "QuantizeLinear":
            continue
        src = n.input[0]
        if src in ranges:
            out.append(src)
            continue
        dq = next((c for c in qproto.graph.node if c.op_type == "DequantizeLinear" and c.input[0] == n.output[0]), None)
        if dq is not None and dq.output[0] in ranges:
            out.append(dq.output[0])
        elif src in producer and src.endswith("_float") and src[:-6] in ranges:
            out.append(src[:-6])
    return list(dict.fromkeys(out))


def quantized_layers(qproto) -> list[tuple[str, str]]:
    """``(node name, op type)`` of the quantized compute nodes (what ``--keep-float`` can change).

    Ops that only move values (Reshape, Transpose, MaxPool ...) read dequantized tensors when
    Q/DQ is hoisted above them, but keeping them in float changes nothing: they are left out.
    """
    from edgec.compiler.quantize import FULL_INT_OPS, SCALE_PRESERVING_OPS
    from edgec.targets.base import RECURRENT_OPS

    dq_out = {n.output[0] for n in qproto.graph.node if n.op_type == "DequantizeLinear"}
    out = []
    for n in qproto.graph.node:
        if n.op_type not in FULL_INT_OPS | RECURRENT_OPS or n.op_type in SCALE_PRESERVING_OPS or not n.name:
            continue
        if any(i in dq_out for i in n.input):
            out.append((n.name, n.op_type))
    return out


def auto_samples(histograms: dict[str, Any], calibrated: int) -> int:
    """How many calibration samples ``auto`` measures each candidate on (see `AUTO_ELEMENTS`)."""
    per_sample = sum(h.total for h in histograms.values()) / max(calibrated, 1)
    return max(AUTO_MIN_SAMPLES, min(AUTO_SAMPLES, int(AUTO_ELEMENTS / max(per_sample, 1.0))))


def _rel_error(outs: list[dict[str, np.ndarray]], refs: list[dict[str, np.ndarray]]) -> float:
    """Mean over outputs of each output's squared error relative to its spread between samples.

    Each output counts alike: a detector's box regressors (anchor offsets in the hundreds) would
    otherwise drown its scores. The spread is per element around its mean over the samples (a
    constant offset does not hide the error), or around the overall mean with fewer than
    `MIN_SPREAD_SAMPLES` samples.
    """
    if not refs:
        return 0.0
    errs = []
    for k in refs[0]:
        w = np.stack([np.asarray(r[k], np.float64) for r in refs])
        d = np.stack([np.asarray(o[k], np.float64) for o in outs]) - w
        centre = w.mean(axis=0, keepdims=True) if len(w) >= MIN_SPREAD_SAMPLES else w.mean()
        den = float(((w - centre) ** 2).sum()) or float((w * w).sum())
        errs.append(float((d * d).sum()) / max(den, 1e-30))
    return float(np.mean(errs))


class Int8Quantizer:
    """Re-quantizes one float model with variants.

    Args:
        model: The float model to quantize (smoothed when SmoothQuant ran).
        reference: The original float model (bias correction compares against it).
        ranges: Ranges per tensor (after ``auto`` selection).
        scheme: The target's `QuantScheme`.
        calibration: Calibration data.
        bias_correction: Correct biases after quantizing.
        passes: Manifest entries of what ran before quantizing.
    """

    kind = "int8"
    fallback_kinds = ("keep-float", "calib-method", "bias-correction")

    def __init__(self, model: "ModelHandle", reference: "ModelHandle", ranges: "dict[str, TensorRange]",
                 scheme: "QuantScheme", calibration: "CalibrationData", bias_correction: bool = False,
                 passes: list[dict[str, Any]] | None = None):
        self.model, self.reference, self.ranges, self.scheme = model, reference, ranges, scheme
        self.calibration = calibration
        self.bias_correction = bias_correction
        # Per-layer correction at the end: searches (auto, float fallback) then measure without the weight
        # one as well, like the model that ships (jetson's BlazeFace cells were measured so).
        self._per_layer_build = bias_correction
        self.passes = passes if passes is not None else []
        self._alternatives: dict[str, dict[str, TensorRange]] | None = None
        self._histograms: dict[str, Any] = {}
        self._channel_absmax: dict[str, np.ndarray] | None = None
        self._bias_float_outputs: dict = {}  # bias correction's float-side outputs, shared by every variant
        self._bias_shifts: dict | None = None  # set by `freeze_bias_correction`: measured once, then reused
        self._bias_shifts_keep_float: tuple[str, ...] | None = None  # the float nodes when they were measured
        self._weight_shifts: dict = {}  # weight-rounding shifts per layer (`weight_bias_correction`), shared too
        self._weight_bias_kept: bool | None = None  # decided on the first variant, then applied to every one
        self.fallback_float: tuple[str, ...] = ()  # the default's own float nodes (`float_fallback`)
        self.calib_method: str | None = None  # the build's method, as `create` resolved it
        self._auto: dict[str, Any] = {}  # what ``auto`` measured: local errors, outputs, budget

    @classmethod
    def create(cls, config: "BuildConfig", handle: "ModelHandle", calibration: "CalibrationData",
               ranges: "dict[str, TensorRange]", scheme: "QuantScheme", progress: "Progress",
               ranges_method: str | None = None) -> "Int8Quantizer":
        """Run SmoothQuant and ``auto`` calibration as ``config`` asks; ready to `quantize`.

        ``ranges`` were collected with ``ranges_method`` (None: the method this build uses,
        `calib_method`; min/max for ``auto`` and ``held-out``), and are collected anew when the
        method differs. ``config.int8.calib_method`` None means the scheme's default, after the
        model's recipes (`model_scheme`) had their say; a method the user asked for wins.
        """
        from edgec.calibration import collect_ranges

        passes: list[dict[str, Any]] = []
        model = handle
        plain_scheme = scheme
        asked = config.int8.calib_method
        chosen = asked or model_scheme(scheme, handle).calib_method
        ranges_method = ranges_method or chosen
        scheme, deep_recipe = deep_residual_scheme(scheme, handle)
        if deep_recipe is not None and asked is not None:
            deep_recipe["config"].pop("calib_method", None)  # the user's method, not the recipe's
        if deep_recipe is not None and scheme.deep_residual_cosine is not None:
            # Measured: the recipe costs speed (float Adds), so a stream that holds without it skips it.
            plain = cls.create(config, handle, calibration, ranges,
                               dataclasses.replace(plain_scheme, deep_residual_adds=None), progress, ranges_method)
            worst = plain.worst_calibration_cosine()
            deep_recipe["config"].update(worst_cosine_without=round(worst, 5), bar=scheme.deep_residual_cosine)
            if worst >= scheme.deep_residual_cosine:
                plain.passes.append({"name": "deep-residual-recipe",
                                     "config": {**deep_recipe["config"], "applied": False}})
                return plain
            if scheme.deep_residual_fallback_cosine is not None:
                # The recipe as declared, measured too: where it still falls short of the bar, or of the plain
                # scheme's worst sample (blazeface-full-sparse: 0.9814 vs 0.9823; eval mean 0.9891, NNCF 0.9906),
                # its fallback overrides.
                recipe = cls.create(config, handle, calibration, ranges, dataclasses.replace(
                    plain_scheme, deep_residual_cosine=None, deep_residual_fallback_cosine=None), progress,
                    ranges_method)
                worst_with = recipe.worst_calibration_cosine()
                bar = scheme.deep_residual_fallback_cosine
                deep_recipe["config"].update(worst_cosine_with=round(worst_with, 5), fallback_bar=bar)
                if worst_with >= bar and worst_with > worst:
                    entry = next(p for p in recipe.passes if p["name"] == "deep-residual-recipe")
                    entry["config"] = {**deep_recipe["config"], **entry["config"]}
                    return recipe
                if scheme.deep_residual_float_add_margin is not None:
                    from edgec.compiler.residual_add_search import keep_some_adds_float

                    progress.message("measuring which residual Adds need float")
                    options = [("recipe", recipe)]
                    ranges_of_fallback = tuple(kv for kv in scheme.deep_residual_fallback if kv[0] == "calib_method")
                    if asked is None and ranges_of_fallback:  # the fallback's ranges with int8 Adds too
                        options.append(("fallback ranges", cls.create(config, handle, calibration, ranges, dataclasses.replace(
                            plain_scheme, deep_residual_cosine=None, deep_residual_fallback_cosine=None,
                            deep_residual_overrides=(*plain_scheme.deep_residual_overrides, *ranges_of_fallback)),
                            progress, ranges_method)))
                    kept = keep_some_adds_float(options, deep_recipe["config"], bar, worst, scheme)
                    if kept is not None:
                        return kept
                scheme = dataclasses.replace(scheme, **dict(scheme.deep_residual_fallback))
                deep_recipe["config"]["fallback"] = {k: v for k, v in scheme.deep_residual_fallback}
                if asked is None:  # the fallback's own default ranges (collected anew below)
                    chosen = scheme.calib_method
        scheme, transformer_recipe = transformer_scheme(scheme, handle)
        if transformer_recipe is not None and asked is not None:
            transformer_recipe["config"].pop("calib_method", None)
        if transformer_recipe is not None:
            passes.append(transformer_recipe)
        base_method = collected_with(chosen)
        # ranges are collected once, after the passes that change the model
        method, stale = base_method, base_method != collected_with(ranges_method)
        if config.int8.smoothquant is not None:
            from edgec.compiler.smoothquant import smooth

            progress.message(f"SmoothQuant (alpha {config.int8.smoothquant})")
            model, info = smooth(handle, calibration.samples, config.int8.smoothquant)
            passes.append({"name": "smoothquant", "config": info})
            stale = stale or bool(info["smoothed"])
        if scheme.equalize_conv_pairs:
            from edgec.compiler.equalize import equalize

            model, info = equalize(model, calibration.samples, streams=scheme.equalize_streams,
                                   min_spread=scheme.equalize_min_spread)
            passes.append({"name": "equalize-conv-pairs", "config": info})
            stale = stale or bool(info["equalized"] or info.get("streams"))
        if scheme.scale_depthwise_inputs:
            from edgec.compiler.depthwise_scaling import scale_depthwise_inputs

            model, info = scale_depthwise_inputs(model, calibration.samples)
            passes.append({"name": "depthwise-input-scaling", "config": {"scaled_depthwise": info["scaled_depthwise"]}})
            stale = stale or bool(info["scaled_depthwise"])
        if scheme.int8_recurrent_ops:
            from edgec.compiler.recurrent_scaling import scale_recurrent_inputs

            model, ranges, info = scale_recurrent_inputs(model, ranges, scheme.int8_recurrent_ops)
            if info["scaled"]:
                passes.append({"name": "recurrent-input-scaling", "config": info})
        bias_correction = config.int8.bias_correction
        because = sorted({n.op_type for n in model.proto.graph.node} & scheme.bias_correction_ops)
        if because:  # the target's rule: see `QuantScheme.bias_correction_ops`
            rule: dict[str, Any] = {"ops": because}
            if not bias_correction:
                bias_correction = rule["bias_correction"] = True
            with_ops = scheme.calib_method_with_ops
            if with_ops and asked is None and with_ops != base_method:
                method, stale = with_ops, True  # not asked for by the user
                rule["calib_method"] = method
            passes.append({"name": "recurrent-recipe", "config": rule})
        if deep_recipe is not None:
            passes.append(deep_recipe)
            if not bias_correction:
                bias_correction = deep_recipe["config"]["bias_correction"] = True
        auto = chosen == "auto"
        if stale and not auto:  # auto takes every method's ranges, min/max too, from its own pass
            ranges = collect_ranges(model.proto, calibration.samples, method)
        q = cls(model, handle, ranges, scheme, calibration, bias_correction, passes)
        q.calib_method = chosen
        if auto:
            progress.message("choosing a calibration method per tensor (auto)")
            info = q.choose_auto()
            passes.append({"name": "calibrate-auto", "config": info})
        elif chosen == HELD_OUT_CALIB_METHOD:
            progress.message("choosing a calibration method on held-out samples")
            passes.append({"name": "calibrate-held-out", "config": q.choose_held_out()})
        if scheme.float_fallback_ops:
            info = q.float_fallback(progress, tuple(config.keep_float))
            if info is not None:
                passes.append({"name": "float-fallback", "config": info})
        return q

    def worst_calibration_cosine(self) -> float:
        """The default int8 model's worst output cosine against float on the calibration samples."""
        from edgec.compiler.held_out_ranges import held_out_cosine
        from edgec.compiler.quality import ort_session, run_onnx

        samples = list(self.calibration.samples[:AUTO_SAMPLES])
        quant, _ = self.quantize()
        refs = run_onnx(self.reference.proto, samples, session=ort_session(self.reference.proto))
        return held_out_cosine(run_onnx(quant.proto, samples), refs)

    def choose_held_out(self) -> dict[str, Any]:
        """One observer for the whole model: `edgec.compiler.held_out_ranges` (``--calib-method held-out``)."""
        from edgec.calibration import collect_ranges
        from edgec.compiler.held_out_ranges import choose_held_out

        def quantize(ranges: "dict[str, TensorRange]") -> "ModelHandle":
            self.ranges = ranges
            return self.quantize()[0]

        chosen = self.ranges
        method, info = choose_held_out(self.model.proto, self.reference.proto, list(self.calibration.samples),
                                       self.scheme.held_out_methods, quantize, self._classifier())
        self.ranges = chosen if method == "minmax" else collect_ranges(self.model.proto, self.calibration.samples,
                                                                       method)
        return info

    def alternatives(self) -> "dict[str, dict[str, TensorRange]]":
        """Ranges of every tensor under every calibration method (one pass, cached)."""
        if self._alternatives is None:
            from edgec.calibration.collect import collect_ranges_multi

            self._alternatives = collect_ranges_multi(self.model.proto, self.calibration.samples,
                                                      self.scheme.calib_candidates or registered_observers(),
                                                      tensors=self._readable_tensors(),
                                                      histograms=self._histograms)
        return self._alternatives

    def _readable_tensors(self) -> list[str] | None:
        """The tensors whose ranges a ``weighted`` placement can read (None: every tensor).

        Q/DQ then sits only on the activation inputs of weighted ops, Adds and the scheme's
        int8-input ops; with no hoisting or unified scales no other range is ever read, and
        each tensor's histograms cost about as much as the model run (PicoDet: half its tensors
        are conv outputs that feed only an activation function).
        """
        from edgec.compiler import qdq_graph as qg

        s = self.scheme
        if s.placement != "weighted" or s.hoist_through or s.unified_scale_ops:
            return None
        proto = self.model.proto
        floats, _ = qg.float_tensors(proto)
        inits = {t.name for t in proto.graph.initializer}
        ops = qg.WEIGHTED_OPS | set(s.int8_input_ops) | {"Add"}
        return list(dict.fromkeys(i for n in proto.graph.node if n.op_type in ops for i in n.input
                                  if i and i in floats and i not in inits))

    def channel_absmax(self) -> dict[str, np.ndarray]:
        """Per-channel ranges of depthwise-conv inputs, when the scheme quantizes them per channel (cached)."""
        if self._channel_absmax is None:
            self._channel_absmax = {}
            if self.scheme.per_channel_depthwise_inputs:
                from edgec.calibration.channels import collect_channel_absmax
                from edgec.compiler.quantize import depthwise_inputs

                self._channel_absmax = collect_channel_absmax(self.model.proto, self.calibration.samples,
                                                              depthwise_inputs(self.model.proto))
        return self._channel_absmax

    def quantize(self, keep_float: tuple[str, ...] = (), overrides: dict[str, str] | None = None,
                 int8_nodes: tuple[str, ...] = (), bias_correction: bool | None = None,
                 ) -> tuple["ModelHandle", dict[str, Any]]:
        """Q/DQ model with ``keep_float`` nodes in float and ``overrides`` {tensor: method} ranges.

        ``bias_correction`` overrides the build's ``--bias-correction`` (the accuracy gate's move).
        """
        from edgec.compiler.quantize import quantize_qdq

        keep_float = tuple(dict.fromkeys((*self.fallback_float, *keep_float)))
        ranges = self.ranges
        if overrides:
            alt = self.alternatives()
            ranges = {**ranges, **{t: alt[m][t] for t, m in overrides.items() if t in alt[m]}}
        quant, summary = quantize_qdq(self.model, ranges, self.scheme, tuple(keep_float), self.channel_absmax())
        if overrides:
            summary["calib_method_overrides"] = dict(sorted(overrides.items()))
        per_layer = self.bias_correction if bias_correction is None else bias_correction
        # The per-layer pass removes the whole shift (weights and activations) with an error check per
        # layer: the one-pass weight correction before it only moved blazeface-short intel-cpu 0.981 -> 0.980.
        if (self.scheme.weight_bias_correction and not per_layer and not self._per_layer_build
                and self._weight_bias_kept is not False):
            quant = self._weight_bias_corrected(quant, summary)
        if per_layer:
            from edgec.compiler.bias_correction import correct_bias

            frozen, shifts_out = None, None
            if self._bias_shifts is not None and self._bias_shifts_keep_float is None:  # frozen, not measured yet
                shifts_out, self._bias_shifts_keep_float = self._bias_shifts, keep_float
            elif self._bias_shifts is not None:
                frozen = self._bias_shifts
            cells = self._int8_cells(keep_float)
            measured = None
            if cells and frozen is None:
                # The shifts are measured with the recurrent cells float, then applied to the int8 ones: onnxruntime
                # keeps their state float where the runtime rounds it, and their own int8 error (no bias shift)
                # made the per-layer keep-or-skip checks pick other CNN layers from build to build (ddddocr-common
                # worst eval cosine 0.971 vs 0.991 with the shifts measured so).
                plain, _ = quantize_qdq(self.model, ranges, self.scheme, (*keep_float, *cells), self.channel_absmax())
                frozen = shifts_out if shifts_out is not None else {}
                _, measured = correct_bias(self.reference, plain, self.calibration.samples, self._bias_float_outputs,
                                           shifts_out=frozen)
            quant, info = correct_bias(self.reference, quant, self.calibration.samples, self._bias_float_outputs,
                                       frozen=frozen, shifts_out=None if measured else shifts_out,
                                       skip=tuple(set(keep_float) - set(self._bias_shifts_keep_float or ())))
            if measured is not None:
                info = {**measured, "measured_with_float": list(cells)}
            summary["bias_correction"] = info
        return quant, summary

    def _int8_cells(self, keep_float: tuple[str, ...]) -> tuple[str, ...]:
        """The recurrent cells this scheme quantizes (`QuantScheme.int8_recurrent_ops`), less ``keep_float``."""
        ops = self.scheme.int8_recurrent_ops
        return tuple(n.name for n in self.model.proto.graph.node
                     if ops and n.op_type in ops and n.name and n.name not in keep_float)

    def freeze_bias_correction(self) -> None:
        """From now on, per-layer bias correction measures its shifts once and reuses them in every variant.

        The accuracy gate quantizes a variant per candidate fallback; measuring the shifts costs a
        model run per biased layer (a 52-layer detector: minutes per variant).
        """
        if self._bias_shifts is None:
            self._bias_shifts = {}

    def _weight_bias_corrected(self, quant: "ModelHandle", summary: dict[str, Any]) -> "ModelHandle":
        """``quant`` with `weight_bias_correction` applied, when `weight_bias_correction.keep_check` keeps it.

        Decided once, on the first variant, and applied to every one (the shifts are cached per layer).
        """
        from edgec.compiler.weight_bias_correction import correct_weight_bias, keep_check

        samples = list(self.calibration.samples)
        check = None
        if self._weight_bias_kept is None:
            check = keep_check(self.model, self.reference, quant, samples, self._classifier(), self._weight_shifts)
            if check is not None:
                self._weight_bias_kept = check[0]
        corrected, info = correct_weight_bias(self.model, quant, samples, self._weight_shifts)
        if check is not None:
            info.update(check[1])
        info["kept"] = bool(self._weight_bias_kept)
        summary["weight_bias_correction"] = info
        return corrected if self._weight_bias_kept else quant

    def _classifier(self) -> bool:
        """Whether the float model's first output reads as class scores (`lowering.is_classifier`)."""
        from edgec.compiler.lowering import is_classifier

        return is_classifier({"task": self.reference.task,
                              "model_outputs": [s.to_json() for s in self.reference.outputs]})

    def _upgrade_opset(self) -> None:
        """Convert the float model to Q/DQ's opset once, not in every `quantize` of a search (same model)."""
        from edgec.compiler.qdq_graph import QDQ_MIN_OPSET, ensure_opset

        if any(op.domain in ("", "ai.onnx") and op.version < QDQ_MIN_OPSET for op in self.model.proto.opset_import):
            import onnx

            proto = onnx.ModelProto()
            proto.CopyFrom(self.model.proto)
            ensure_opset(proto, QDQ_MIN_OPSET)
            self.model = self.model.with_proto(proto)

    def choose_auto(self) -> dict[str, Any]:
        """Pick each quantized tensor's method: local screen, few output measurements (`scale_screen`)."""
        from edgec.compiler.quality import ort_session, run_onnx
        from edgec.compiler.scale_screen import local_errors, refine_budget, search, whole_model_candidates

        alt = self.alternatives()
        samples = list(self.calibration.samples[:auto_samples(self._histograms, len(self.calibration))])
        bias_correction, self.bias_correction = self.bias_correction, False  # applied once, at the end
        self._upgrade_opset()
        refs = run_onnx(self.reference.proto, samples, session=ort_session(self.reference.proto))
        base = self.ranges = dict(alt["minmax"])
        quant, _ = self.quantize()
        tensors = quantized_tensors(quant.proto, base)

        best: list = [float("inf"), None]  # the best choice's outputs, for `float_fallback`

        def evaluate(choice: dict[str, str]) -> float:
            self.ranges = {**base, **{t: alt[m][t] for t, m in choice.items()}}
            q, _ = self.quantize()
            outs = run_onnx(q.proto, samples)
            err = _rel_error(outs, refs)
            if err < best[0]:
                best[:] = [err, outs]
            return err

        local = local_errors(self._histograms, alt, tensors, self.scheme.activation_symmetric)
        # Activation values one evaluation computes: what the refinement budget is counted in.
        per_sample = sum(h.total for t, h in self._histograms.items() if t in local) / max(len(self.calibration), 1)
        budget = refine_budget(per_sample * len(samples), len(quant.proto.graph.node))
        found = search(alt, local, tensors, evaluate, budget)
        held_out = self._held_out_pick(found, whole_model_candidates(local, alt, tensors), samples, refs) \
            if self.scheme.auto_held_out else {}
        chosen = {t: m for t, m in found["choice"].items() if m != "minmax"}
        self.ranges = {**base, **{t: alt[m][t] for t, m in chosen.items()}}
        self.bias_correction = bias_correction
        self._auto = {"local": local, "budget": budget, "samples": samples, "refs": refs,
                      "outputs": best[1] if best[0] == found["error"] else None}
        counts = {m: 0 for m in alt}
        for t in tensors:
            counts[chosen.get(t, "minmax")] += 1
        return {"samples": len(samples), "methods": counts, "chosen": dict(sorted(chosen.items())),
                **({"held_out": held_out} if held_out else {}),
                "relative_output_error": found["error"], "screened": found["picked"],
                "screen_errors": found["screen"], "output_evaluations": found["evaluations"],
                "refine_budget": budget}

    def _held_out_pick(self, found: dict, screened: list, samples: list, refs: list) -> dict[str, Any]:
        """`auto_held_out` (`held_out_ranges.pick_on_folds`): the refined choice or one of the screen's
        whole-model ones, whichever errs least on held-out halves; updates ``found``."""
        from edgec.compiler.held_out_ranges import pick_on_folds

        def quantize(ranges: "dict[str, TensorRange]") -> "ModelHandle":
            self.ranges = ranges
            return self.quantize()[0]

        choices = {"refined": found["choice"], **dict(screened)}
        info = pick_on_folds(self.model.proto, samples, refs, choices,
                             self.scheme.calib_candidates or registered_observers(), self._readable_tensors(),
                             quantize)
        if info.get("picked", "refined") != "refined":  # its in-sample error: `float_fallback` measures anew
            found["choice"], found["error"] = choices[info["picked"]], found["screen"][info["picked"]]
        return info

    def float_fallback(self, progress: "Progress", keep_float: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """The scheme's cheap fallback (`edgec.compiler.float_fallback`); None when it has no candidate.

        Measured on top of the user's ``keep_float``. Sets `fallback_float`, which every later
        `quantize` keeps in float (the gate starts from it).
        """
        from edgec.compiler import float_fallback as ff
        from edgec.compiler.quality import ort_session, run_onnx
        from edgec.compiler.scale_screen import REFINE_EVALS

        quant, _ = self.quantize(keep_float, bias_correction=False)
        ops = self.scheme.float_fallback_ops
        cands = [n for n, op in quantized_layers(quant.proto) if op in ops]
        if not cands:
            return None
        samples = self._auto.get("samples") or list(self.calibration.samples[:AUTO_SAMPLES])
        refs = self._auto.get("refs") or run_onnx(self.reference.proto, samples,
                                                  session=ort_session(self.reference.proto))
        outs = None if keep_float else self._auto.pop("outputs", None)  # auto measured without them
        local = self._auto.get("local", {})
        inputs = {n.name: list(n.input) for n in self.model.proto.graph.node}

        def local_error(node: str) -> float:  # the node's worst-quantized input: most useful in fp16 first
            errs = [min(local[t].values()) for t in inputs.get(node, ()) if t in local]
            return max(errs, default=0.0)

        cands.sort(key=lambda n: -local_error(n))
        bias_correction, self.bias_correction = self.bias_correction, False  # as in the auto search

        def score(outs: list) -> tuple[float, float]:
            return ff.cosine_error(outs, refs), ff.worst_cosine(outs, refs)

        def evaluate(nodes: tuple[str, ...]) -> tuple[float, float]:
            q, _ = self.quantize((*keep_float, *nodes))
            return score(run_onnx(q.proto, samples))

        bar = self.scheme.float_fallback_cosine
        base = score(outs) if outs is not None else None
        if base is None or base[1] < bar:
            progress.message(f"looking for the few {'/'.join(ops)} nodes that carry most of the int8 error")
        budget = max(self._auto.get("budget", ff.MAX_BACK), REFINE_EVALS)  # compute-bounded like auto's
        found = ff.search(cands, evaluate, bar, base, max_back=min(ff.MAX_BACK, budget))
        self.bias_correction = bias_correction
        self.fallback_float = tuple(found["kept_float"])
        return {"ops": list(ops), "bar_worst_cosine": bar, "candidates": len(cands), "samples": len(samples), **found}

    def candidates(self, quant: "ModelHandle", kinds: tuple[str, ...]) -> list:
        """Fallbacks the accuracy gate may try on ``quant`` (see `edgec.compiler.sensitivity`)."""
        from edgec.compiler.scale_screen import same_range
        from edgec.compiler.sensitivity import Fallback

        out = []
        if "bias-correction" in kinds and not self.bias_correction:
            out.append(Fallback("bias-correction", "weighted layers"))
        if "keep-float" in kinds:
            out += [Fallback("keep-float", n, op=op) for n, op in quantized_layers(quant.proto)]
        if "calib-method" in kinds:
            alt = self.alternatives()
            for t in quantized_tensors(quant.proto, self.ranges):
                for m in alt:
                    r = alt[m].get(t)
                    if r is not None and not same_range(r, self.ranges[t]):
                        out.append(Fallback("calib-method", t, m))
        return out


def check_int8_passes(config: "BuildConfig", quantizer, target: str, precision: str) -> None:
    """``--smoothquant`` / ``--bias-correction`` only mean something for edgec's int8 Q/DQ quantizer."""
    from edgec.errors import ConfigError

    asked = [f for f, on in (("--smoothquant", config.int8.smoothquant is not None),
                             ("--bias-correction", config.int8.bias_correction)) if on]
    if asked and getattr(quantizer, "kind", None) != "int8":
        raise ConfigError(f"{' and '.join(asked)} apply to int8 builds quantized by edgec (Q/DQ), not to target "
                          f"'{target}' at precision {precision}")
