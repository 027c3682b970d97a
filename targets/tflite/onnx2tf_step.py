"""ONNX -> TensorFlow with onnx2tf, behind a ``tf.function`` whose signature is the artifact's I/O."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edgec._deps import require
from edgec.compiler.model import ModelHandle
from edgec.errors import EdgecError, UnsupportedOpError
from edgec.targets.tflite.layout import InputAdapter, OutputFix, input_adapter, output_fix
from edgec.targets.tflite.tools import TFLiteConversionError, captured_output, in_dir, last_error_line

CALIB_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def sanitize_names(names: list[str], prefix: str) -> list[str]:
    out, seen = [], set()
    for i, n in enumerate(names):
        s = re.sub(r"[^A-Za-z0-9_.]", "_", n).strip("_.") or f"{prefix}_{i}"
        if not re.match(r"[A-Za-z]", s):
            s = f"{prefix}_{s}"
        while s in seen:
            s = f"{s}_{i}"
        seen.add(s)
        out.append(s)
    return out


class TFGraph:
    """The onnx2tf Keras model behind a wrapper whose signature is the artifact's I/O.

    Inputs: 4-D images are NHWC (recorded as the layout), every other tensor keeps the
    model's shape. Outputs: how each Keras output maps to the model's is measured on
    ``samples`` (`layout.output_fix`), so non-image outputs come back in the model's shape.
    """

    def __init__(self, tf, keras_model, model: ModelHandle, samples: list[dict[str, np.ndarray]]):
        self.tf = tf
        self.keras = keras_model
        self.in_keys = sanitize_names([s.name for s in model.inputs], "input")
        self.out_keys = sanitize_names([s.name for s in model.outputs], "output")
        kin = list(keras_model.inputs)
        if len(kin) != len(model.inputs):
            raise TFLiteConversionError(
                f"onnx2tf produced {len(kin)} inputs for a model with {len(model.inputs)}")
        if len(keras_model.outputs) != len(model.outputs):
            raise TFLiteConversionError(
                f"onnx2tf produced {len(keras_model.outputs)} outputs for a model with {len(model.outputs)}")
        self.model = model
        self.adapters: list[InputAdapter] = []
        sig = []
        for s, key, k in zip(model.inputs, self.in_keys, kin):
            kshape = tuple(int(d) if d is not None else 1 for d in k.shape)
            try:
                adapter = input_adapter(s.name, tuple(s.shape), kshape)
            except ValueError as exc:
                raise TFLiteConversionError(str(exc)) from None
            dt = tf.as_dtype(k.dtype)
            if dt == tf.int64:
                dt = tf.int32  # token ids: int32 on device, cast inside
            self.adapters.append(adapter)
            sig.append(tf.TensorSpec(adapter.artifact_shape, dt, name=key))
        self.signature = sig
        self.in_layout: list[str | None] = [a.layout for a in self.adapters]
        self.kdtypes = [k.dtype for k in kin]
        self.fixes = self._measure_outputs(samples)
        self.out_layout: list[str | None] = [f.layout for f in self.fixes]
        self.fn = tf.function(self._wrapped, input_signature=sig)
        self.concrete = self.fn.get_concrete_function()
        self._holder = None

    def _keras_inputs(self, args):
        tf = self.tf
        xs = []
        for a, want, ad in zip(args, self.kdtypes, self.adapters):
            if ad.perm is not None:
                a = tf.transpose(a, ad.perm)
            if tuple(a.shape) != ad.keras_shape:
                a = tf.reshape(a, ad.keras_shape)
            if a.dtype != want:
                a = tf.cast(a, want)
            xs.append(a)
        return xs

    def _keras_outputs(self, args) -> list:
        outs = self.keras(self._keras_inputs(args))
        return list(outs) if isinstance(outs, (list, tuple)) else [outs]

    def _measure_outputs(self, samples: list[dict[str, np.ndarray]]) -> list[OutputFix]:
        from edgec.runtimes.onnxruntime_runner import make_session

        sess = make_session(self.model.proto.SerializeToString(), threads=1)
        samples = samples[:2]
        want = [sess.run(None, feeds) for feeds in samples]
        got = []
        for feeds in samples:
            args = [self.tf.constant(a) for a in self.to_native(feeds)]
            got.append([np.asarray(o) for o in self._keras_outputs(args)])
        return [output_fix([g[i] for g in got], [w[i] for w in want]) for i in range(len(self.out_keys))]

    def _wrapped(self, *args):
        tf = self.tf
        result = {}
        for o, key, fix in zip(self._keras_outputs(args), self.out_keys, self.fixes):
            if fix.perm is not None:
                o = tf.transpose(o, fix.perm)
            if fix.reshape is not None:
                o = tf.reshape(o, fix.reshape)
            result[key] = o
        return result

    def converter(self):
        # The converter saves its trackable object as a SavedModel before converting; saving
        # the Keras model walks every layer's config and metadata (minutes for a 500-layer
        # MobileNetV3, most of an arm build). A plain module holding only the variables the
        # function captures gives the same SavedModel graph in a fraction of the time.
        # onnx2tf creates some variables outside Keras layers (a strided depthwise conv's
        # kernel): the function's own variables are tracked too. A function capturing any
        # other resource keeps the Keras model (an untracked capture makes the converter drop
        # the signature, and the outputs lose their names).
        if self._holder is None:
            tracked = {id(v): v for v in [*self.keras.weights, *self.concrete.variables]}
            resources = [t for t in self.concrete.captured_inputs if t.dtype == self.tf.resource]
            self._holder = self.keras
            if len(resources) <= len(tracked):
                self._holder = self.tf.Module()
                self._holder.variables_of_model = list(tracked.values())
        conv = self.tf.lite.TFLiteConverter.from_concrete_functions([self.concrete], self._holder)
        conv.target_spec.supported_ops = [self.tf.lite.OpsSet.TFLITE_BUILTINS]
        return conv

    def to_native(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Model-convention float feeds -> float inputs of the wrapper (NHWC, int32), in order."""
        out = []
        for s, layout, spec in zip(self.model.inputs, self.in_layout, self.signature):
            a = np.asarray(feeds[s.name])
            if layout == "NHWC":
                a = a.transpose(0, *range(2, a.ndim), 1)
            out.append(np.array(a, dtype=spec.dtype.as_numpy_dtype, order="C"))  # keeps rank 0
        return out


def run_onnx2tf(proto, work: Path, channels_last_inputs: list[str] | None = None, strict: bool = True,
                unroll_rnn: bool = False) -> Any:
    """onnx2tf -> Keras model, in ``work`` (cwd restored), output captured.

    ``strict=False`` skips onnx2tf's strict mode, which checks the transposes it picks
    around every Reshape/MatMul/Transpose by running the partial Keras model built so far
    (quadratic in the node count: most of a transformer's conversion). ``unroll_rnn``
    unrolls LSTM/GRU/RNN over their (static) time steps instead of a WHILE loop.
    """
    # onnx2tf downloads sample images for its own checks of 4-D RGB models unless this file
    # is in the working folder; offline, the download fails. Any values do: it only runs
    # the ONNX model on them to pick transposes.
    rng = np.random.default_rng(0)
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / CALIB_SAMPLE_FILE, rng.random((20, 128, 128, 3), dtype=np.float32))
    with in_dir(work), captured_output() as log:
        try:
            onnx2tf = require("onnx2tf", "tflite")
            # Keras numbers layers with process-wide counters that end up in the .tflite's
            # tensor names; reset them so a rebuild gives the same bytes.
            import tf_keras

            tf_keras.backend.clear_session()
            # onnx_graph, not the file: from a file onnx2tf 1.28.8 mis-lays-out BERT's
            # LayerNormalization (it takes [1, seq, hidden] for NCW).
            keras_model = onnx2tf.convert(
                onnx_graph=proto,
                output_folder_path=str(work / "saved_model"),
                disable_model_save=True,
                non_verbose=True,
                not_use_onnxsim=True,  # we ran onnxslim; onnxsim is not a dependency
                replace_to_pseudo_operators=["erf"],
                disable_strict_mode=not strict,
                # Inputs already channels-last (TensorFlow sources): keep them as they are
                # instead of guessing NCHW (a [1, 64, 64, 1] image is not N=1, C=64).
                keep_nwc_or_nhwc_or_ndhwc_input_names=channels_last_inputs or None,
                enable_rnn_unroll=unroll_rnn,
            )
            err = None
        except SystemExit as exc:  # onnx2tf calls sys.exit(1) after logging an error
            err = exc
        except EdgecError:
            raise
        except Exception as exc:
            err = exc
    text = log[0] if log else ""
    if err is not None:
        raise onnx2tf_error(err, text, proto) from (err if isinstance(err, Exception) else None)
    if keras_model is None:
        raise TFLiteConversionError(f"onnx2tf failed: {last_error_line(text)}")
    return keras_model


def onnx2tf_error(err: BaseException, log: str, proto) -> EdgecError:
    msg = str(err) if isinstance(err, Exception) else ""
    text = f"{msg}\n{log}"
    # Name the ONNX node onnx2tf names (``onnx_op_name: NAME``), else one its log mentions.
    m = re.search(r"onnx_op_name:\s*(\S+)", re.sub(r"\x1b\[[0-9;]*m", "", log))
    named = next((n for n in proto.graph.node if m and (n.name == m.group(1) or m.group(1) in n.output)), None)
    if named is not None:
        return UnsupportedOpError(
            named.op_type, named.name or named.output[0], "arm",
            f"onnx2tf could not convert it ({last_error_line(log or msg)}); "
            "try --target onnxruntime or intel-cpu, or re-export the model with another opset (13-18)")
    for node in proto.graph.node:
        if node.name and (f"onnx_op_name: {node.name}" in text or f"'{node.name}'" in text):
            return UnsupportedOpError(
                node.op_type, node.name, "arm",
                f"onnx2tf could not convert it ({last_error_line(log or msg)}); "
                "try re-exporting with another opset (13-18)")
    line = last_error_line(log) if log.strip() else msg
    return TFLiteConversionError(f"onnx2tf could not convert the model: {type(err).__name__}: {line}")
