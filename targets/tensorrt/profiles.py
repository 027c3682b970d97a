"""Optimization profiles (min/opt/max shapes) for dynamic inputs.

The pipeline fixes every dynamic dimension to the ``opt`` shape for calibration and
verification, so the float and Q/DQ models `lower` receives are static. A TensorRT
engine for a dynamic input needs an optimization profile, and the bundled ONNX keeps
the dynamic dimensions (named as in the source) so TensorRT can build for the whole
range. Which inputs were dynamic in the source comes from
``model.meta["source_inputs"]`` (TensorSpec JSON of the source model before shapes were
fixed), or from the model's own symbolic dims when the pipeline left them.
"""

from __future__ import annotations

from typing import Any

from edgec.compiler.model import TensorSpec
from edgec.errors import ConfigError

Shape = tuple[int, ...]


def _spec(d: Any) -> TensorSpec:
    return d if isinstance(d, TensorSpec) else TensorSpec.from_json(d)


def source_inputs(model) -> list[TensorSpec]:
    """The inputs as the source model declared them (symbolic dims kept).

    From ``meta["dynamic_dims"]`` (``{input: {axis: dim_name}}``, recorded by the loader
    when ``--input-shape`` fixed them) or ``meta["source_inputs"]`` (TensorSpec JSON), else
    the model's own inputs.
    """
    meta = model.meta or {}
    if meta.get("source_inputs"):
        return [_spec(d) for d in meta["source_inputs"]]
    dyn = meta.get("dynamic_dims") or {}
    out = []
    for s in model.inputs:
        axes = {int(k): v for k, v in (dyn.get(s.name) or {}).items()}
        out.append(TensorSpec(s.name, tuple(axes.get(i, d) for i, d in enumerate(s.shape)), s.dtype,
                              s.scale, s.zero_point, s.layout))
    return out


def shape_syntax(name: str, shape) -> str:
    """An ``--input-shape`` example for ``name`` with dynamic dims filled in (1 / 8 / 16)."""
    def fill(v):
        return "x".join(str(d) if isinstance(d, int) else str(v) for d in shape)

    return f"{name}={fill(1)}:{fill(8)}:{fill(16)}"


def resolve(model, input_profiles: dict[str, tuple[Shape, Shape, Shape]]) -> tuple[dict, dict]:
    """Check profiles against the source inputs.

    Returns ``(profiles, dynamic)``: ``{input: {"min", "opt", "max"}}`` for the inputs whose
    profile spans a range, and ``{input: {axis: dim_name}}`` for the dims that stay dynamic
    in the bundled ONNX.

    Raises:
        ConfigError: a dynamic input without a profile, or a profile that does not fit.
    """
    meta = model.meta or {}
    # Inputs whose dynamic dims were fixed by a single --input-shape (no profile): static.
    fixed = set(meta.get("fixed_shapes", {}) or ()) | (set(meta.get("dynamic_dims") or {}) - set(input_profiles))
    current = {s.name: s for s in model.inputs}
    profiles: dict[str, dict[str, list[int]]] = {}
    dynamic: dict[str, dict[int, str]] = {}
    names = {s.name for s in source_inputs(model)}
    unknown = sorted(set(input_profiles) - names)
    if unknown:
        raise ConfigError(f"--input-shape names unknown input(s) {unknown}; the model takes {sorted(names)}")
    for src in source_inputs(model):
        sym = [i for i, d in enumerate(src.shape) if not isinstance(d, int) or d <= 0]
        prof = input_profiles.get(src.name)
        if prof is None:
            if sym and src.name not in fixed:
                ex = shape_syntax(src.name, src.shape)
                raise ConfigError(
                    f"input '{src.name}' has dynamic shape {list(src.shape)} and no optimization profile: TensorRT "
                    f"needs min:opt:max shapes, e.g. --input-shape {ex} (or one fixed shape, "
                    f"--input-shape {ex.split(':')[0]})")
            continue
        lo, opt, hi = (tuple(int(d) for d in s) for s in prof)
        if not (len(lo) == len(opt) == len(hi) == len(src.shape)):
            raise ConfigError(f"profile of input '{src.name}' has rank {len(opt)}, the input has rank "
                              f"{len(src.shape)} ({list(src.shape)})")
        for i, d in enumerate(src.shape):
            if not (lo[i] <= opt[i] <= hi[i]):
                raise ConfigError(f"profile of input '{src.name}': need min <= opt <= max on axis {i} "
                                  f"(got {lo[i]}, {opt[i]}, {hi[i]})")
            if isinstance(d, int) and d > 0 and not (lo[i] == opt[i] == hi[i] == d):
                raise ConfigError(f"profile of input '{src.name}' varies axis {i}, which is fixed to {d} in the model "
                                  f"({list(src.shape)})")
        cur = current.get(src.name)
        if cur is not None and cur.is_static and tuple(cur.shape) != opt:
            raise ConfigError(f"input '{src.name}' was fixed to {list(cur.shape)} but its profile's opt is {list(opt)}")
        varying = {i: (d if isinstance(d, str) and d else ("batch" if i == 0 else f"{src.name}_dim{i}"))
                   for i, d in enumerate(src.shape) if i in sym and lo[i] != hi[i]}
        if varying:
            profiles[src.name] = {"min": list(lo), "opt": list(opt), "max": list(hi)}
            dynamic[src.name] = varying
    return profiles, dynamic


def make_dynamic(proto, dynamic: dict[str, dict[int, str]]):
    """A copy of ``proto`` whose inputs have the named dynamic dims; output shapes re-inferred."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    if not dynamic:
        return model
    opt_of = {}
    for inp in model.graph.input:
        dims = dynamic.get(inp.name)
        if not dims:
            continue
        for axis, dname in dims.items():
            d = inp.type.tensor_type.shape.dim[axis]
            opt_of[dname] = d.dim_value
            d.Clear()
            d.dim_param = dname
    saved = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    del model.graph.value_info[:]
    for o in model.graph.output:
        o.type.tensor_type.ClearField("shape")
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - fall back to the heuristic below
        inferred = model
    by_name = {o.name: o for o in inferred.graph.output}
    for o in model.graph.output:
        got = by_name.get(o.name)
        if got is not None and got.type.tensor_type.HasField("shape"):
            o.type.tensor_type.shape.CopyFrom(got.type.tensor_type.shape)
            continue
        # Inference failed: keep the static shape, with a dynamic batch where the input's was.
        shape = o.type.tensor_type.shape
        batch = next((n for ds in dynamic.values() for a, n in ds.items() if a == 0), None)
        for i, v in enumerate(saved[o.name]):
            dim = shape.dim.add()
            if i == 0 and batch is not None and v == opt_of.get(batch):
                dim.dim_param = batch
            else:
                dim.dim_value = v
    return model


def check_runs_at(proto_bytes: bytes, model_inputs: list[TensorSpec], profiles: dict) -> None:
    """Run the dynamic ONNX in onnxruntime at the profiles' min and max shapes.

    Raises:
        ConfigError: the model only runs at the opt shape (a shape baked into the graph).
    """
    import numpy as np

    from edgec.runtimes.onnxruntime_runner import make_session

    sess = make_session(proto_bytes, threads=1)
    for key in ("min", "max"):
        feeds = {}
        for s in model_inputs:
            shape = profiles[s.name][key] if s.name in profiles else [d if isinstance(d, int) else 1 for d in s.shape]
            dt = np.dtype(s.dtype)
            feeds[s.name] = np.zeros(shape, dt) if dt.kind == "f" else np.ones(shape, dt)
        try:
            sess.run(None, feeds)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several types
            first = str(exc).strip().splitlines()[0][:300]
            shapes = ", ".join(f"{n}={'x'.join(map(str, p[key]))}" for n, p in profiles.items())
            raise ConfigError(
                f"the model does not run at the profile's {key} shape ({shapes}): {first}; a shape was baked into "
                "the graph when it was exported or simplified at a fixed size; export with dynamic axes, or give "
                "a fixed --input-shape") from None
