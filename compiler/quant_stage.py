"""The int8 quantize stage: SmoothQuant, per-tensor calibration method choice, Q/DQ, bias correction.

`Int8Quantizer` holds what is needed to (re)quantize the float model, so the accuracy gate
can ask for variants (nodes kept in float, another calibration method for some tensors)
without repeating calibration. The searches it runs before the gate (``--calib-method auto``
and ``held-out``, the scheme's float fallback) are in `edgec.compiler.range_search`; what they
chose is recorded in the manifest.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edgec.calibration.observers import registered_observers
from edgec.compiler.config import HELD_OUT_CALIB_METHOD
from edgec.compiler.model_recipes import collected_with, deep_residual_scheme, model_scheme, transformer_scheme
from edgec.compiler.qdq_graph import quantized_layers, quantized_tensors
from edgec.compiler.range_search import AUTO_SAMPLES, RangeSearch

if TYPE_CHECKING:
    from edgec.calibration import CalibrationData, TensorRange
    from edgec.compiler.config import BuildConfig
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.progress import Progress
    from edgec.targets.base import QuantScheme


class Int8Quantizer(RangeSearch):
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
    fallback_kinds = ("keep-float", "calib-method", "bias-correction", "weight-rounding")

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
        self.weight_rounding = "nearest"  # `QuantScheme.weight_rounding`, or the build's --weight-rounding
        self._rounding = None  # `weight_rounding.WeightRounding`: Hessians and rounded weights, shared by variants

    @classmethod
    def create(cls, config: "BuildConfig", handle: "ModelHandle", calibration: "CalibrationData",
               ranges: "dict[str, TensorRange]", scheme: "QuantScheme", progress: "Progress",
               ranges_method: str | None = None) -> "Int8Quantizer":
        """`_create`, then the measured choice of the depthwise outputs' grid (`depthwise_output_grid`)."""
        from edgec.compiler.depthwise_output_grid import choose

        return choose(cls._create(config, handle, calibration, ranges, scheme, progress, ranges_method), progress)

    @classmethod
    def _create(cls, config: "BuildConfig", handle: "ModelHandle", calibration: "CalibrationData",
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
            def variant(s: "QuantScheme") -> "Int8Quantizer":
                return cls._create(config, handle, calibration, ranges, s, progress, ranges_method)

            done = cls._measured_deep_recipe(variant, plain_scheme, scheme, deep_recipe, asked, progress)
            if done is not None:
                return done
            if scheme.deep_residual_fallback_cosine is not None:
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
        q.weight_rounding = config.int8.weight_rounding or scheme.weight_rounding
        if q.weight_rounding != "nearest":
            from edgec.compiler.weight_rounding import settings

            passes.append({"name": "weight-rounding", "config": {"method": q.weight_rounding, **settings()}})
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

    @staticmethod
    def _measured_deep_recipe(variant: "Callable[[QuantScheme], Int8Quantizer]", plain_scheme: "QuantScheme",
                              scheme: "QuantScheme", deep_recipe: dict[str, Any], asked: str | None,
                              progress: "Progress") -> "Int8Quantizer | None":
        """`create`'s choice for a deep residual stream whose recipe is measured (`QuantScheme.deep_residual_cosine`).

        Returns the finished quantizer (the plain scheme where the stream holds without the recipe; the recipe
        where it clears `deep_residual_fallback_cosine`, else the recipe with the fallback's ranges and every Add
        int8 where that clears it; the recipe with the residual Adds that need it float),
        or None: `create` goes on with the recipe as declared, or with its fallback overrides when the scheme
        has a fallback bar. ``variant(scheme)`` is `create` with another scheme; ``deep_recipe`` (the manifest
        entry) records what was measured.
        """
        # Measured: the recipe costs speed (float Adds), so a stream that holds without it skips it.
        plain = variant(dataclasses.replace(plain_scheme, deep_residual_adds=None))
        worst = plain.worst_calibration_cosine()
        deep_recipe["config"].update(worst_cosine_without=round(worst, 5), bar=scheme.deep_residual_cosine)
        if worst >= scheme.deep_residual_cosine:
            plain.passes.append({"name": "deep-residual-recipe", "config": {**deep_recipe["config"], "applied": False}})
            return plain
        if scheme.deep_residual_fallback_cosine is None:
            return None
        # The recipe as declared, measured too: where it still falls short of the bar (blazeface-full-sparse:
        # 0.9814; eval mean 0.9891, NNCF 0.9906), its fallback overrides. Not judged against the plain
        # scheme's worst calibration sample: that does not rank them on held-out data (blazeface-short, zero
        # biases left alone: plain 0.9875 vs recipe 0.9842 on calibration, eval worst 0.961 vs 0.986).
        recipe_scheme = dataclasses.replace(plain_scheme, deep_residual_cosine=None, deep_residual_fallback_cosine=None)
        recipe = variant(recipe_scheme)
        worst_with = recipe.worst_calibration_cosine()
        bar = scheme.deep_residual_fallback_cosine
        deep_recipe["config"].update(worst_cosine_with=round(worst_with, 5), fallback_bar=bar)
        if worst_with >= bar:
            return _recorded(recipe, deep_recipe)
        options = [("recipe", recipe)]
        fallback_ranges = tuple(kv for kv in scheme.deep_residual_fallback if kv[0] == "calib_method")
        if asked is None and fallback_ranges:
            # The fallback's ranges with every Add int8, measured as built (bias correction included) before
            # any Add goes float: blazeface-back's min/max recipe 0.905 worst, mse ranges 0.983 (0.957 without
            # the bias correction the per-Add search leaves out); OpenVINO eval 0.9942 / 0.967 with NNCF's
            # 3 f32 kernels, NNCF 0.9883 / 0.953 (both IRs' FakeQuantize run in f32).
            overrides = (*plain_scheme.deep_residual_overrides, *fallback_ranges)
            ranged = variant(dataclasses.replace(recipe_scheme, deep_residual_overrides=overrides))
            worst_ranged = ranged.worst_calibration_cosine()
            deep_recipe["config"]["worst_cosine_with_fallback_ranges"] = round(worst_ranged, 5)
            if worst_ranged >= bar:
                deep_recipe["config"]["ranges"] = dict(fallback_ranges)["calib_method"]
                return _recorded(ranged, deep_recipe)
            options.append(("fallback ranges", ranged))
        if scheme.deep_residual_float_add_margin is None:
            return None
        from edgec.compiler.residual_add_search import keep_some_adds_float

        progress.message("measuring which residual Adds need float")
        return keep_some_adds_float(options, deep_recipe["config"], bar, scheme)

    def worst_calibration_cosine(self) -> float:
        """The default int8 model's worst output cosine against float on the calibration samples, the Q/DQ graph
        run as written (`quality.run_exact_qdq`)."""
        from edgec.compiler.held_out_ranges import held_out_cosine
        from edgec.compiler.quality import ort_session, run_exact_qdq, run_onnx

        samples = list(self.calibration.samples[:AUTO_SAMPLES])
        quant, _ = self.quantize()
        refs = run_onnx(self.reference.proto, samples, session=ort_session(self.reference.proto))
        return held_out_cosine(run_exact_qdq(quant.proto, samples), refs)

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
                 weight_rounding: str | None = None) -> tuple["ModelHandle", dict[str, Any]]:
        """Q/DQ model with ``keep_float`` nodes in float and ``overrides`` {tensor: method} ranges.

        ``bias_correction`` overrides the build's ``--bias-correction``, ``weight_rounding`` its
        `weight_rounding` (the accuracy gate's moves).
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
        if (weight_rounding or self.weight_rounding) == "gptq":  # before the bias corrections: they see its weights
            quant = self._rounded(quant, summary)
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
                                           shifts_out=frozen, zero_biases=self.scheme.correct_zero_biases)
            quant, info = correct_bias(self.reference, quant, self.calibration.samples, self._bias_float_outputs,
                                       frozen=frozen, shifts_out=None if measured else shifts_out,
                                       skip=tuple(set(keep_float) - set(self._bias_shifts_keep_float or ())),
                                       zero_biases=self.scheme.correct_zero_biases)
            if measured is not None:
                info = {**measured, "measured_with_float": list(cells)}
            summary["bias_correction"] = info
        return quant, summary

    def _rounded(self, quant: "ModelHandle", summary: dict[str, Any]) -> "ModelHandle":
        """``quant`` with its int8 weights GPTQ-rounded on the same grid (`edgec.compiler.weight_rounding`)."""
        if self._rounding is None:
            from edgec.compiler.weight_rounding import WeightRounding

            self._rounding = WeightRounding(self.model, list(self.calibration.samples),
                                            overflow_fix=self.scheme.overflow_fix)
        quant, summary["weight_rounding"] = self._rounding.apply(quant)
        return quant

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
            check = keep_check(self.model, self.reference, quant, samples, self._classifier(), self._weight_shifts,
                               self.scheme.correct_zero_biases)
            if check is not None:
                self._weight_bias_kept = check[0]
        corrected, info = correct_weight_bias(self.model, quant, samples, self._weight_shifts,
                                             self.scheme.correct_zero_biases)
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

    def candidates(self, quant: "ModelHandle", kinds: tuple[str, ...]) -> list:
        """Fallbacks the accuracy gate may try on ``quant`` (see `edgec.compiler.sensitivity`)."""
        from edgec.compiler.scale_screen import same_range
        from edgec.compiler.sensitivity import Fallback

        out = []
        if "bias-correction" in kinds and not self.bias_correction:
            out.append(Fallback("bias-correction", "weighted layers"))
        if "weight-rounding" in kinds and self.weight_rounding != "gptq":
            out.append(Fallback("weight-rounding", "int8 weights", "gptq"))
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


def _recorded(q: Int8Quantizer, deep_recipe: dict[str, Any]) -> Int8Quantizer:
    """``q`` with what `Int8Quantizer._measured_deep_recipe` measured in its deep-residual-recipe pass entry."""
    entry = next(p for p in q.passes if p["name"] == "deep-residual-recipe")
    entry["config"] = {**deep_recipe["config"], **entry["config"]}
    return q


def check_int8_passes(config: "BuildConfig", quantizer, target: str, precision: str) -> None:
    """``--smoothquant`` / ``--bias-correction`` / ``--weight-rounding gptq`` only mean something for edgec's int8
    Q/DQ quantizer."""
    from edgec.errors import ConfigError

    asked = [f for f, on in (("--smoothquant", config.int8.smoothquant is not None),
                             ("--bias-correction", config.int8.bias_correction),
                             ("--weight-rounding gptq", config.int8.weight_rounding == "gptq")) if on]
    if asked and getattr(quantizer, "kind", None) != "int8":
        raise ConfigError(f"{' and '.join(asked)} apply to int8 builds quantized by edgec (Q/DQ), not to target "
                          f"'{target}' at precision {precision}")
