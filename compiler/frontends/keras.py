"""Keras ``.h5``/``.keras`` files and TensorFlow SavedModel folders as sources.

Both go through TensorFlow's own TFLiteConverter (float, builtin ops only) and then the
.tflite front end (`edgec.compiler.frontends.tflite`), so every TF source takes one path.
The input layout stays the user's (NHWC for images) and the manifest says so.

Keras files can carry Python code (``Lambda`` layers store marshalled bytecode). edgec never
runs code from a model file: the stored config is read as JSON first and any Lambda or
custom-object layer is refused before Keras sees the file; Keras then loads it with
``safe_mode=True``.
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from edgec._deps import require
from edgec.compiler.model import ModelHandle, sha256_bytes, sha256_path
from edgec.errors import ModelLoadError

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
# Layer classes whose config holds code rather than data.
CODE_LAYERS = ("Lambda", "TFOpLambda", "SlicingOpLambda")


def is_savedmodel(path: Path) -> bool:
    return path.is_dir() and (path / "saved_model.pb").is_file()


def keras_config(path: Path) -> dict[str, Any]:
    """The model config stored in a Keras file, read as JSON without Keras."""
    try:
        if path.suffix.lower() == ".keras":
            with zipfile.ZipFile(path) as z:
                return json.loads(z.read("config.json"))
        h5py = require("h5py", "tflite")
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            if raw is None:
                raise ModelLoadError(f"'{path}' holds weights only (no model_config): save the whole model "
                                     "with model.save(), not model.save_weights()")
            return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py/zipfile/json errors all mean a corrupt file
        raise ModelLoadError(f"'{path}' is not a readable Keras model: {exc}") from exc


def code_layers(config: Any) -> list[str]:
    """Names of layers in a Keras config that would run stored Python code."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class_name") in CODE_LAYERS:
                cfg = node.get("config") or {}
                found.append(f"{node['class_name']} '{cfg.get('name', node.get('name', '?'))}'")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(config)
    return found


def load_keras(path: Path) -> ModelHandle:
    """A Keras .h5/.hdf5/.keras file -> float ONNX handle (through .tflite)."""
    if not path.is_file():
        raise ModelLoadError(f"model '{path}' does not exist")
    bad = code_layers(keras_config(path))
    if bad:
        raise ModelLoadError(f"'{path}' has {', '.join(bad)}: Python code stored in the file, which edgec never runs; "
                             "rebuild the model without Lambda layers, or convert it to .tflite/SavedModel yourself")
    keras = require("keras", "tflite")
    tf = require("tensorflow", "tflite")
    try:
        with _quiet():
            model = keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - unknown layers, bad weights, version mismatch
        raise ModelLoadError(f"Keras cannot load '{path}': {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
    with _quiet():
        try:
            data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"TensorFlow cannot convert '{path}': {_first_line(exc)}") from exc
    in_names = [t.name for t in model.inputs]
    dynamic_batch = [t.name for t in model.inputs if t.shape and t.shape[0] is None]
    handle = _finish(data, path, sha256_bytes(path.read_bytes()), "keras", dynamic_batch)
    return rename_io(handle, in_names, list(getattr(model, "output_names", None) or []))


def load_savedmodel(path: Path) -> ModelHandle:
    """A TensorFlow SavedModel folder (its serving signature) -> float ONNX handle."""
    tf = require("tensorflow", "tflite")
    with _quiet():
        try:
            data = tf.lite.TFLiteConverter.from_saved_model(str(path)).convert()
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"TensorFlow cannot convert the SavedModel '{path}': {_first_line(exc)}") from exc
    return _finish(data, path, sha256_path(path), "savedmodel", [])


def _finish(data: bytes, path: Path, digest: str, kind: str, dynamic_batch: list[str]) -> ModelHandle:
    from edgec.compiler.frontends.tflite import tflite_to_onnx
    from edgec.compiler.loaders import tflite_handle

    handle = tflite_to_onnx(tflite_handle(data, str(path), digest))
    handle.meta["frontend"] = handle.meta["frontend"] | {"source": kind, "via": "TFLiteConverter (float)"}
    if dynamic_batch:
        handle.meta["batch_set_to_1"] = [s.name for s in handle.inputs]
    return handle


def rename_io(handle: ModelHandle, inputs: list[str], outputs: list[str]) -> ModelHandle:
    """Give the graph the Keras model's own I/O names (TFLiteConverter adds ``serving_default_...:0``)."""
    from dataclasses import replace

    mapping = {}
    for specs, names in ((handle.inputs, inputs), (handle.outputs, outputs)):
        if len(specs) == len(names) and len(set(names)) == len(names):
            mapping.update({s.name: n for s, n in zip(specs, names) if s.name != n})
    if not mapping or set(mapping.values()) & {v.name for v in handle.proto.graph.value_info}:
        return handle
    g = handle.proto.graph
    for vi in [*g.input, *g.output]:
        vi.name = mapping.get(vi.name, vi.name)
    for node in g.node:
        node.input[:] = [mapping.get(x, x) for x in node.input]
        node.output[:] = [mapping.get(x, x) for x in node.output]
    handle.inputs = [replace(s, name=mapping.get(s.name, s.name)) for s in handle.inputs]
    handle.outputs = [replace(s, name=mapping.get(s.name, s.name)) for s in handle.outputs]
    if "batch_set_to_1" in handle.meta:
        handle.meta["batch_set_to_1"] = [mapping.get(n, n) for n in handle.meta["batch_set_to_1"]]
    return handle


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def _quiet():
    """TensorFlow prints progress (``Saved artifact at ...``) on stdout, which --json owns."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        yield
