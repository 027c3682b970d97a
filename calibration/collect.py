"""Run a float ONNX model over calibration samples and observe the range of its tensors."""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from edgec.calibration.histogram import GrowingHistogram
from edgec.calibration.observers import HistogramObserver, Observer, make_observer
from edgec.calibration.types import TensorRange
from edgec.runtimes.onnx_graph import FLOAT_TYPES, mark_outputs, typed_copy
from edgec.errors import CalibrationDataError, ConfigError

if TYPE_CHECKING:
    import onnx

    from edgec.compiler.progress import Progress

def _session(model: "onnx.ModelProto"):
    from edgec.runtimes.onnx_graph import make_session

    try:
        # Fusions would only remove nodes whose outputs we asked for; keep the graph as written.
        return make_session(model, optimize=False)
    except Exception as exc:  # onnxruntime's own exception types are not importable uniformly
        raise CalibrationDataError(f"onnxruntime cannot load the model for calibration: {exc}") from exc


def collect_ranges(
    model: "onnx.ModelProto",
    samples: Iterable[dict[str, np.ndarray]],
    method: str = "minmax",
    *,
    tensors: list[str] | None = None,
    progress: "Progress | None" = None,
    **observer_kw: Any,
) -> dict[str, TensorRange]:
    """Range of every float tensor of `model` over `samples`, as chosen by `method`.

    The model's float node outputs (or just `tensors`) are made graph outputs of a copy of
    the model, which onnxruntime (CPU) runs one sample at a time; each tensor feeds its own
    observer, so no activation outlives its sample.

    Args:
        model: Float ONNX model (in memory).
        samples: Feeds in the model convention (`CalibrationData` or any iterable of dicts);
            keys beyond the model's inputs are ignored.
        method: Observer name (``minmax``, ``percentile``, ``entropy``, ``mse``).
        tensors: Names to observe (node outputs, graph inputs or initializers); default:
            every float graph input and float node output.
        progress: Progress reporter, or None.
        **observer_kw: Options of the observer (e.g. ``percentile=99.99``).

    Returns:
        ``{tensor name: TensorRange}`` in graph order. A tensor that was only ever empty gets
        ``TensorRange(0, 0)``.

    Raises:
        CalibrationDataError: No samples, a sample lacking an input, or onnxruntime failing
            on a sample (wrong shape or dtype).
        ConfigError: Unknown method or option, or a requested tensor that is not in the model
            or not float.
    """
    return _observe(model, samples, (method,), tensors, progress, observer_kw)[method]


ObserverSpec = tuple[str, str, tuple[tuple[str, Any], ...]]  # (label, observer name, observer options)


def collect_ranges_multi(model: "onnx.ModelProto", samples: Iterable[dict[str, np.ndarray]],
                         methods: "tuple[str | ObserverSpec, ...] | None" = None,
                         tensors: list[str] | None = None,
                         histograms: "dict[str, GrowingHistogram] | None" = None,
                         ) -> dict[str, dict[str, TensorRange]]:
    """``{label: {tensor: TensorRange}}``: `collect_ranges` under several methods in one pass.

    Each tensor feeds one observer per method while onnxruntime runs the model once per
    sample; ``--calib-method auto`` and the accuracy gate's per-tensor method switching
    compare those ranges by the error they cause (see `edgec.compiler.quant_stage`).

    Args:
        model: Float ONNX model.
        samples: Feeds in the model convention.
        methods: Observer names, or ``(label, observer name, ((option, value), ...))``
            specs for configured observers (TensorRT's symmetric calibrators); default:
            every registered observer with its default options.
        tensors: Only these tensors (default: every float input and node output).
        histograms: When given, filled with ``{tensor: GrowingHistogram}`` (one histogram
            observer's, signed when there is one) so callers can measure each range's own
            quantization error without another pass (`edgec.compiler.scale_screen`).

    Raises:
        CalibrationDataError, ConfigError: as `collect_ranges`.
    """
    from edgec.calibration.observers import observer_names

    specs = tuple((m, m, ()) if isinstance(m, str) else (m[0], m[1], tuple(m[2]))
                  for m in (methods or observer_names()))
    return _observe(model, samples, specs, tensors, None, {}, histograms)


def _share_histograms(observers: list[Observer]) -> tuple[list[Observer], list[HistogramObserver]]:
    """Observers of one tensor keeping equal histograms share one, so each is built once.

    Returns the observers to update and the followers whose min/max/count are read from the
    shared histogram after the pass (TensorRT's calibrators keep three identical magnitude
    histograms per tensor; building each costs as much as the model run).
    """
    leaders: dict[tuple[int, bool], HistogramObserver] = {}
    update, followers = [], []
    for obs in observers:
        if isinstance(obs, HistogramObserver) and type(obs)._update is HistogramObserver._update:
            key = (obs.hist.num_bins, obs.hist.absolute)
            if key in leaders:
                obs.hist = leaders[key].hist
                followers.append(obs)
                continue
            leaders[key] = obs
        update.append(obs)
    return update, followers


def _observe(model, samples, methods: tuple, tensors, progress, observer_kw,
             histograms: "dict[str, GrowingHistogram] | None" = None) -> dict[str, dict[str, TensorRange]]:
    """The one calibration loop behind `collect_ranges` and `collect_ranges_multi`.

    ``methods`` holds observer names or ``(label, name, options)`` specs; results are keyed by label.
    """
    specs = [(m, m, observer_kw) if isinstance(m, str) else (m[0], m[1], {**observer_kw, **dict(m[2])})
             for m in methods]
    labels = [label for label, _, _ in specs]
    for _, method, kw in specs:
        make_observer(method, **kw)  # fail on a bad method before running anything
    g = model.graph
    init_names = {i.name for i in g.initializer}
    runtime_inputs = [i.name for i in g.input if i.name not in init_names]
    node_outputs = [o for n in g.node for o in n.output if o]
    aug, types = typed_copy(model)

    def is_float(name: str) -> bool:
        return types.get(name, 1) in FLOAT_TYPES  # unknown: decided by what onnxruntime returns

    if tensors is None:
        observed_inputs = [n for n in runtime_inputs if is_float(n)]
        observed_outputs = [n for n in node_outputs if is_float(n)]
        observed_inits: list[str] = []
    else:
        known = set(runtime_inputs) | set(node_outputs) | init_names
        unknown = [t for t in tensors if t not in known]
        if unknown:
            raise ConfigError(
                f"tensor(s) {', '.join(repr(t) for t in unknown)} to calibrate are not in the model; "
                "expected node outputs, graph inputs or initializers"
            )
        not_float = [t for t in tensors if t in types and types[t] not in FLOAT_TYPES]
        if not_float:
            raise ConfigError(f"tensor(s) {', '.join(repr(t) for t in not_float)} are not float; expected float tensors to calibrate")
        wanted = set(tensors)
        observed_inputs = [n for n in runtime_inputs if n in wanted]
        observed_outputs = [n for n in node_outputs if n in wanted]
        observed_inits = [n for n in g.initializer if n.name in wanted]

    order = [*observed_inputs, *(i.name for i in observed_inits), *observed_outputs]
    observers: dict[str, list[Observer]] = {name: [make_observer(m, **kw) for _, m, kw in specs] for name in order}
    shared = {name: _share_histograms(obs) for name, obs in observers.items()}
    if observed_inits:
        from onnx import numpy_helper

        for init in observed_inits:
            value = numpy_helper.to_array(init)
            for obs in shared[init.name][0]:
                obs.update(value)

    mark_outputs(aug, observed_outputs, types)
    sess = _session(aug)
    del aug  # onnxruntime holds its own copy; do not keep a second 90 MB proto alive
    fetch = observed_outputs
    total = len(samples) if hasattr(samples, "__len__") else None  # type: ignore[arg-type]
    n_seen = 0
    with progress.task("calibrating", total=total) if progress is not None else nullcontext() as task:
        for k, sample in enumerate(samples):
            missing = [n for n in runtime_inputs if n not in sample]
            if missing:
                raise CalibrationDataError(
                    f"calibration sample {k} lacks input(s) {', '.join(repr(m) for m in missing)}; "
                    f"expected {', '.join(repr(n) for n in runtime_inputs)}"
                )
            feed = {n: sample[n] for n in runtime_inputs}
            try:
                results = sess.run(fetch, feed) if fetch else []
            except Exception as exc:  # InvalidArgument / Fail from onnxruntime
                raise CalibrationDataError(f"onnxruntime failed on calibration sample {k}: {exc}") from exc
            for name in observed_inputs:
                for obs in shared[name][0]:
                    obs.update(feed[name])
            for name, value in zip(fetch, results):
                if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                    for obs in shared[name][0]:
                        obs.update(value)
            del results
            n_seen += 1
            if task is not None:
                task.advance()
    if n_seen == 0:
        raise CalibrationDataError("no calibration samples were given; expected at least one")

    for _, followers in shared.values():
        for obs in followers:
            obs.min, obs.max, obs.count = obs.hist.min, obs.hist.max, obs.hist.total
    if histograms is not None:
        for name, per_method in observers.items():
            hists = sorted((o for o in per_method if isinstance(o, HistogramObserver) and o.count),
                           key=lambda o: o.hist.absolute)
            if hists:
                histograms[name] = hists[0].hist
    ranges: dict[str, dict[str, TensorRange]] = {m: {} for m in labels}
    for name, per_method in observers.items():
        for method, obs in zip(labels, per_method):
            if obs.count == 0:
                if types.get(name, 1) in FLOAT_TYPES and name in types:
                    ranges[method][name] = TensorRange(0.0, 0.0, obs.name, 0.0)
                continue  # unknown type and never a float array: not a float tensor
            ranges[method][name] = obs.compute_range()
    return ranges
