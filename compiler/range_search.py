"""The quantizer's searches over calibration ranges and cheap float fallbacks.

``--calib-method auto`` chooses, tensor by tensor, among the registered observers' ranges
(minmax, percentile, entropy, mse ... plugins too): each tensor's candidates are judged by their
own quantization error, and a handful of whole-model assignments plus a fixed budget of
single-tensor switches are measured at the model's outputs (`relative_output_error` against the
float model on up to `AUTO_SAMPLES` calibration samples, fewer on large models (`auto_samples`), in
onnxruntime; `edgec.compiler.scale_screen`). ``held-out`` picks one observer for the whole model on
held-out halves, and the scheme's float fallback keeps the few nodes that carry most of the int8
error in float. `RangeSearch` is the part of `quant_stage.Int8Quantizer` that runs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgec.calibration.observers import registered_observers
from edgec.compiler.qdq_graph import quantized_layers, quantized_tensors
from edgec.runtimes.metrics import relative_output_error

if TYPE_CHECKING:
    from edgec.calibration import TensorRange
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.progress import Progress

AUTO_SAMPLES = 16
# Fewer samples (down to AUTO_MIN_SAMPLES) where one evaluation on AUTO_SAMPLES would compute
# more than AUTO_ELEMENTS activation values: PicoDet at 800x608 took 27 s per evaluation on 16.
AUTO_MIN_SAMPLES = 8
AUTO_ELEMENTS = 8e8


def auto_samples(histograms: dict[str, Any], calibrated: int) -> int:
    """How many calibration samples ``auto`` measures each candidate on (see `AUTO_ELEMENTS`)."""
    per_sample = sum(h.total for h in histograms.values()) / max(calibrated, 1)
    return max(AUTO_MIN_SAMPLES, min(AUTO_SAMPLES, int(AUTO_ELEMENTS / max(per_sample, 1.0))))


class RangeSearch:
    """The searches of `quant_stage.Int8Quantizer` (a mixin: it holds the state they read and set)."""

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

    def choose_auto(self) -> dict[str, Any]:
        """Pick each quantized tensor's method: local screen, few output measurements (`scale_screen`)."""
        from edgec.compiler.quality import ort_session, run_exact_qdq, run_onnx
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
            outs = run_exact_qdq(q.proto, samples)
            err = relative_output_error(outs, refs)
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
        from edgec.compiler.quality import ort_session, run_exact_qdq, run_onnx
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
            return score(run_exact_qdq(q.proto, samples))

        bar = self.scheme.float_fallback_cosine
        base = score(outs) if outs is not None else None
        if base is None or base[1] < bar:
            progress.message(f"looking for the few {'/'.join(ops)} nodes that carry most of the int8 error")
        budget = max(self._auto.get("budget", ff.MAX_BACK), REFINE_EVALS)  # compute-bounded like auto's
        found = ff.search(cands, evaluate, bar, base, max_back=min(ff.MAX_BACK, budget))
        self.bias_correction = bias_correction
        self.fallback_float = tuple(found["kept_float"])
        return {"ops": list(ops), "bar_worst_cosine": bar, "candidates": len(cands), "samples": len(samples), **found}
