"""Model sources -> `ModelHandle`: ONNX, HF transformers folders, PyTorch, .pt2, .tflite."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgec._deps import require
from edgec.compiler.config import InputShape
from edgec.compiler.model import ModelHandle, TensorSpec, sha256_bytes, sha256_file
from edgec.compiler.progress import SILENT, Progress
from edgec.errors import ConfigError, ExportError, ModelLoadError

DEFAULT_SEQ_LEN = 128


def source_kind(model: str) -> str:
    """``onnx``, ``tflite``, ``pt2``, ``keras``, ``savedmodel``, ``hf`` or ``torch`` for a MODEL argument."""
    from edgec.compiler.frontends.keras import KERAS_SUFFIXES, is_savedmodel

    p = Path(model)
    if p.is_dir():
        return "savedmodel" if is_savedmodel(p) else "hf"
    if ":" in model and model.rsplit(":", 1)[0].endswith(".py"):
        return "torch"
    suffix = p.suffix.lower()
    if suffix in (".onnx", ".tflite", ".pt2"):
        return suffix[1:]
    if suffix in KERAS_SUFFIXES:
        return "keras"
    if not p.exists():
        raise ModelLoadError(f"model '{model}' does not exist")
    raise ModelLoadError(
        f"'{model}' is not a model edgec reads: give an .onnx or .tflite file, a Keras .h5/.keras file, a "
        "TensorFlow SavedModel folder, a .pt2 ExportedProgram, a Hugging Face transformers folder, or file.py:factory")


def load_model(model: str, *, task: str | None = None, input_shapes: dict[str, InputShape] | None = None,
               parity_tol: float = 1e-3, progress: Progress = SILENT, prune: Any = None) -> ModelHandle:
    """Load or export the model named on the command line as ONNX (or .tflite).

    ``prune`` (an `edgec.compiler.prune.PruneRequest`) prunes and fine-tunes a PyTorch or HF
    module before export (``handle.meta["prune"]`` keeps the state); other sources are
    pruned later on their ONNX graph (`edgec.compiler.prune.hook.after_optimize`).
    """
    from edgec._quiet import quiet_third_party

    with quiet_third_party():  # torch/transformers log and warn while loading; --debug shows it
        return _load_model(model, task=task, input_shapes=input_shapes, parity_tol=parity_tol, progress=progress,
                           prune=prune)


def _load_model(model: str, *, task: str | None, input_shapes: dict[str, InputShape] | None, parity_tol: float,
                progress: Progress, prune: Any) -> ModelHandle:
    kind = source_kind(model)
    shapes = input_shapes or {}
    if kind == "onnx":
        handle = load_onnx(Path(model))
    elif kind == "tflite":
        handle = load_tflite(Path(model))
    elif kind in ("keras", "savedmodel"):
        from edgec.compiler.frontends import keras as keras_frontend

        handle = (keras_frontend.load_keras if kind == "keras" else keras_frontend.load_savedmodel)(Path(model))
    elif kind == "hf":
        from edgec.compiler.hf_loader import load_hf_folder

        handle = load_hf_folder(Path(model), task=task, input_shapes=shapes, parity_tol=parity_tol, progress=progress,
                                prune=prune)
    elif kind == "torch":
        handle = load_torch_factory(model, input_shapes=shapes, parity_tol=parity_tol, progress=progress, prune=prune)
    else:
        handle = load_pt2(Path(model), input_shapes=shapes, parity_tol=parity_tol, progress=progress)
    handle.meta["source_kind"] = kind
    if task is not None and kind != "hf":  # a HF folder's loader already chose its head from the task
        handle.task = task
    return handle


# -- ONNX ------------------------------------------------------------------------------
def load_onnx(path: Path) -> ModelHandle:
    """Read and check an ONNX file (external data next to it is loaded)."""
    import onnx

    if not path.is_file():
        raise ModelLoadError(f"model '{path}' does not exist")
    data = path.read_bytes()
    if not data:
        raise ModelLoadError(f"'{path}' is empty")
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others on junk
        raise ModelLoadError(f"'{path}' is not a valid ONNX model (truncated or corrupt file): {exc}") from exc
    if not proto.graph.node or not proto.graph.output:
        raise ModelLoadError(f"'{path}' is not a valid ONNX model (no graph: truncated or not an ONNX file)")
    has_external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    # Recorded before loading: loading the external data inlines it and clears the locations.
    digest = sha256_with_external_data(data, path, external_locations(proto)) if has_external else sha256_bytes(data)
    if has_external:
        try:
            onnx.load_external_data_for_model(proto, str(path.parent))
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"cannot read the external weights of '{path}': {exc}") from exc
    source_ir = proto.ir_version
    if proto.ir_version > onnx.IR_VERSION:  # newer than this onnx: read it as the newest IR we know
        proto.ir_version = onnx.IR_VERSION
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # noqa: BLE001 - onnx raises ValidationError and C++ errors
        newer = f" (it is ONNX IR {source_ir}, newer than this onnx {onnx.__version__} reads: re-export with IR " \
                f"<= {onnx.IR_VERSION})" if source_ir > onnx.IR_VERSION else ""
        raise ModelLoadError(f"'{path}' is not a valid ONNX model: {str(exc).splitlines()[0]}{newer}") from exc
    proto = convert_down(proto, str(path))
    cap_ir_version(proto)
    handle = ModelHandle.from_onnx(proto, str(path), digest)
    _guess_layouts(handle)
    return handle


def external_locations(proto) -> list[str]:
    """The external-data files an ONNX model's initializers reference (relative to the model)."""
    import onnx

    return sorted({e.value for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
                   for e in t.external_data if e.key == "location"})


def sha256_with_external_data(data: bytes, path: Path, locations: list[str]) -> str:
    """sha256 of the model bytes plus exactly the external-data files they reference (not the whole folder)."""
    import hashlib

    h = hashlib.sha256(sha256_bytes(data).encode())
    for loc in locations:
        f = path.parent / loc
        h.update(b"\0" + loc.encode() + b"\0")
        h.update((sha256_file(f) if f.is_file() else "missing").encode())
    return h.hexdigest()


# onnxruntime 1.31 reads IR versions up to 10 reliably; newer onnx writers stamp 11+ even when
# the graph uses nothing newer. Features of IR >= 11 (new float types) are not used by edgec.
MAX_IR_VERSION = 10


# onnxruntime 1.31 officially reads the default domain up to opset 26; newer models are
# converted down with onnx's version converter.
MAX_OPSET = 26


def convert_down(proto, source: str):
    """``proto`` at an opset onnxruntime reads (converted down when newer), or one clear error."""
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if version <= MAX_OPSET:
        return proto
    from onnx import version_converter

    try:
        return version_converter.convert_version(proto, MAX_OPSET)
    except Exception as exc:  # noqa: BLE001 - the converter raises C++ errors per op
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"'{source}' uses ONNX opset {version}; onnxruntime here reads opset <= {MAX_OPSET} and "
                             f"onnx's version converter cannot convert it down ({first}): re-export the model with "
                             f"opset {MAX_OPSET} or lower") from exc


def cap_ir_version(proto) -> None:
    """Lower the IR version stamp to one every runtime here reads."""
    if proto.ir_version > MAX_IR_VERSION:
        proto.ir_version = MAX_IR_VERSION


def _guess_layouts(handle: ModelHandle) -> None:
    # ONNX convolutions are channels-first: rank-4 float I/O is NCHW. Targets whose
    # artifacts are channels-last (TFLite, the MCU C code) transpose at the boundary.
    def mark(specs: list[TensorSpec]) -> list[TensorSpec]:
        return [TensorSpec(s.name, s.shape, s.dtype, s.scale, s.zero_point, "NCHW")
                if s.dtype.startswith("float") and len(s.shape) == 4 and s.layout is None else s for s in specs]

    handle.inputs = mark(handle.inputs)
    handle.outputs = mark(handle.outputs)


def fix_input_shapes(handle: ModelHandle, shapes: dict[str, InputShape]) -> ModelHandle:
    """Make every input dimension static (from ``--input-shape``) or fail naming the input."""
    import onnx

    names = {s.name for s in handle.inputs}
    unknown = sorted(set(shapes) - names)
    if unknown:
        raise ConfigError(f"--input-shape names unknown input(s) {unknown}; the model's inputs are {sorted(names)}")
    proto = onnx.ModelProto()
    proto.CopyFrom(handle.proto)
    dynamic: dict[str, dict[int, str]] = {}
    needs: list[tuple[str, list, list[int], str]] = []
    batch_one: list[str] = []
    for vi in proto.graph.input:
        if vi.name not in names:
            continue
        dims = vi.type.tensor_type.shape.dim
        given = shapes.get(vi.name)
        if given is not None:
            if len(given.opt) != len(dims):
                raise ConfigError(f"--input-shape {vi.name} has rank {len(given.opt)}, the model input has rank {len(dims)}")
            for i, (d, v) in enumerate(zip(dims, given.opt)):
                if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != v:
                    raise ConfigError(f"--input-shape {vi.name}: axis {i} is fixed to {d.dim_value} in the model, got {v}")
                if not (d.HasField("dim_value") and d.dim_value > 0):
                    dynamic.setdefault(vi.name, {})[i] = d.dim_param or f"{vi.name}_dim{i}"
                d.Clear()
                d.dim_value = v
            continue
        zero = [i for i, d in enumerate(dims) if d.HasField("dim_value") and d.dim_value == 0 and not d.dim_param]
        if zero:
            shape = "x".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)
            raise ConfigError(f"input '{vi.name}' has a zero-size dimension at axis {zero} (shape {shape}); "
                              "every input dimension must be at least 1")
        bad = [(i, d.dim_param or "?") for i, d in enumerate(dims) if not (d.HasField("dim_value") and d.dim_value > 0)]
        if bad and [i for i, _ in bad] == [0] and len(dims) > 1:
            # A dynamic batch alone is the exporters' default: build for batch 1 and say so.
            dims[0].Clear()
            dims[0].dim_value = 1
            dynamic.setdefault(vi.name, {})[0] = bad[0][1]
            batch_one.append(vi.name)
        elif bad:
            found = [d.dim_value if d.dim_value > 0 else (d.dim_param or "?") for d in dims]
            example = "x".join(str(d.dim_value) if d.dim_value > 0 else "1" for d in dims)
            needs.append((vi.name, found, [i for i, _ in bad], example))
    if needs:
        listed = "; ".join(f"'{n}' {found} (dynamic at axis {', '.join(map(str, axes))})" for n, found, axes, _ in needs)
        flags = " ".join(f"--input-shape {n}={ex}" for n, _, _, ex in needs)
        raise ConfigError(f"{len(needs)} input(s) have dynamic dimensions: {listed}; give static shapes, e.g. {flags} "
                          "(with your sizes; or MIN:OPT:MAX profiles for jetson)")
    if not dynamic:
        return handle
    out = handle.with_proto(proto)
    out.meta["dynamic_dims"] = dynamic
    if batch_one:
        out.meta["batch_set_to_1"] = sorted(set(out.meta.get("batch_set_to_1", [])) | set(batch_one))
    _guess_layouts(out)
    return out


# -- .tflite ---------------------------------------------------------------------------
def load_tflite(path: Path) -> ModelHandle:
    """A .tflite source: keeps the flatbuffer (converted to ONNX for targets that need it,
    `edgec.compiler.frontends.tflite`); I/O read with LiteRT's interpreter."""
    if not path.is_file():
        raise ModelLoadError(f"model '{path}' does not exist")
    data = path.read_bytes()
    return tflite_handle(data, str(path), sha256_bytes(data))


def tflite_handle(data: bytes, path: str, digest: str) -> ModelHandle:
    """A handle on .tflite bytes (``format == "tflite"``)."""
    # A .tflite flatbuffer carries the file identifier "TFL3" at bytes 4..8.
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelLoadError(f"'{path}' is not a valid .tflite model (missing TFL3 identifier: truncated or corrupt)")
    from edgec.targets.registry import extra_for_format

    interp_mod = require("ai_edge_litert.interpreter", extra_for_format("tflite"), "ai-edge-litert")
    try:
        interp = interp_mod.Interpreter(model_content=data)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"'{path}' is not a valid .tflite model: {exc}") from exc

    def specs(details) -> list[TensorSpec]:
        out = []
        for d in details:
            scale, zp = d.get("quantization", (0.0, 0))
            dtype = np.dtype(d["dtype"]).name
            q = dtype in ("int8", "uint8", "int16") and scale
            layout = "NHWC" if len(d["shape"]) == 4 else None
            out.append(TensorSpec(d["name"], tuple(int(x) for x in d["shape"]), dtype,
                                  float(scale) if q else None, int(zp) if q else None, layout))
        return out

    return ModelHandle(proto=None, inputs=specs(interp.get_input_details()), outputs=specs(interp.get_output_details()),
                       source_path=path, source_sha256=digest, format="tflite", tflite_bytes=data)


# -- PyTorch ---------------------------------------------------------------------------
def finish_torch(module: Any, example: Any, source: str, digest: str, *, parity_tol: float, progress: Progress,
                  input_shapes: dict[str, InputShape], output_names: list[str] | None = None,
                  task: str | None = None, prune: Any = None) -> ModelHandle:
    from edgec.compiler.export import export_module, export_parity, normalize_example_inputs

    ex = _resize_examples(normalize_example_inputs(module, example), input_shapes)
    dynamic = {n: {i: f"{n}_dim{i}" for i, (lo, hi) in enumerate(zip(s.min, s.max)) if lo != hi}
               for n, s in input_shapes.items() if s.is_profile}
    dynamic = {n: d for n, d in dynamic.items() if d}
    prune_state = None
    if prune is not None:  # structured pruning and fine-tuning act on the module, before export
        from edgec.compiler.prune.hook import apply_torch

        module, prune_state = apply_torch(module, ex, prune, progress)
    progress.message(f"exporting to ONNX ({len(ex)} input(s))")
    try:
        proto, exporter = export_module(module, ex, dynamic_axes=dynamic or None, output_names=output_names)
    except Exception as exc:  # noqa: BLE001 - was it the user's model, or the exporter?
        _check_runs_on_examples(module, ex, source)
        raise exc
    cap_ir_version(proto)
    err = export_parity(module, proto, ex)
    ref_scale = 1.0
    if not err <= parity_tol * max(1.0, ref_scale):
        raise ExportError(
            f"exported ONNX differs from PyTorch by {err:.3g} (max abs) on the example inputs, above the "
            f"tolerance {parity_tol:g}: the model may use ops the exporter mishandles")
    handle = ModelHandle.from_onnx(proto, source, digest, task=task,
                                   example_inputs={k: v.detach().cpu().numpy() for k, v in ex.items()},
                                   export_parity_max_abs_err=err)
    handle.meta["exporter"] = exporter
    if prune_state is not None:
        handle.meta["prune"] = prune_state
    if dynamic:
        handle.meta["dynamic_dims"] = dynamic
    _guess_layouts(handle)
    return handle


def _check_runs_on_examples(module: Any, ex: dict[str, Any], source: str) -> None:
    """Raise an `ExportError` naming the shapes when the module itself fails on its example inputs."""
    import torch

    try:
        with torch.no_grad():
            module(*ex.values())
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code may raise anything
        shapes = ", ".join(f"{k}={list(getattr(v, 'shape', []))}" for k, v in ex.items())
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ExportError(f"{source}: the model fails on its own example inputs ({shapes}): "
                          f"{type(exc).__name__}: {first}") from exc


def _resize_examples(ex: dict[str, Any], input_shapes: dict[str, InputShape]) -> dict[str, Any]:
    """Apply ``--input-shape`` to PyTorch example inputs (only the batch axis may change)."""
    names = set(ex)
    unknown = sorted(set(input_shapes) - names)
    if unknown:
        raise ConfigError(f"--input-shape names unknown input(s) {unknown}; the model's inputs are {sorted(names)}")
    out = dict(ex)
    for name, shp in input_shapes.items():
        t = ex[name]
        want = tuple(shp.opt)
        have = tuple(t.shape)
        if want == have:
            continue
        if len(want) != len(have) or want[1:] != have[1:]:
            raise ConfigError(f"--input-shape {name}: the PyTorch example input has shape {list(have)}; "
                              "only the batch axis can be changed")
        reps = -(-want[0] // max(have[0], 1))
        out[name] = t.repeat(reps, *([1] * (t.dim() - 1)))[: want[0]].contiguous()
    return out


def load_torch_factory(spec: str, *, input_shapes: dict[str, InputShape], parity_tol: float,
                       progress: Progress, prune: Any = None) -> ModelHandle:
    """``file.py:factory`` where ``factory()`` returns ``(module, example_inputs)``."""
    file, _, fn = spec.rpartition(":")
    path = Path(file)
    if not path.is_file():
        raise ModelLoadError(f"model factory file '{file}' does not exist")
    require("torch", "export")
    mod_name = f"edgec_user_model_{sha256_bytes(str(path.resolve()).encode())[:12]}"
    spec_ = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec_)
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        spec_.loader.exec_module(module)
        factory = getattr(module, fn, None)
        if factory is None:
            raise ModelLoadError(f"'{file}' has no function '{fn}'")
        result = factory()
    except ModelLoadError:
        raise
    except SystemExit as exc:  # user code calling sys.exit() must not end edgec silently
        raise ModelLoadError(f"running {spec} failed: it called sys.exit({exc.code!r})") from exc
    except Exception as exc:  # noqa: BLE001 - user code may raise anything
        raise ModelLoadError(f"running {spec} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.pop(0)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ModelLoadError(f"{spec} must return (module, example_inputs), got {type(result).__name__}")
    net, example = result
    return finish_torch(net, example, spec, sha256_file(path), parity_tol=parity_tol, progress=progress,
                         input_shapes=input_shapes, prune=prune)


def load_pt2(path: Path, *, input_shapes: dict[str, InputShape], parity_tol: float, progress: Progress) -> ModelHandle:
    """A ``torch.export`` ExportedProgram saved with ``torch.export.save``."""
    require("torch", "export")
    if not path.is_file():
        raise ModelLoadError(f"model '{path}' does not exist")
    from edgec.compiler.pt2_archive import example_inputs, load_exported_program

    ep = load_exported_program(path)
    example = example_inputs(ep, path)
    args, kwargs = example
    module = ep.module()
    ex = dict(kwargs) if kwargs else args
    if not kwargs:
        names = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
        ex = dict(zip(names, args)) if len(names) == len(args) else args
    return finish_torch(module, ex, str(path), sha256_file(path), parity_tol=parity_tol, progress=progress,
                         input_shapes=input_shapes)
