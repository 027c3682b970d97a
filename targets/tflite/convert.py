"""ONNX -> ``.tflite``: onnx2tf builds the TensorFlow graph, TFLiteConverter writes the flatbuffer.

Steps (`lower`):

1. prepare the ONNX: static shapes, onnxslim, Erf-GELU -> ``Gelu`` (TFLite has a builtin
   GELU with an int8 kernel; a decomposed Erf has none);
2. onnx2tf -> a Keras model (NHWC for 4-D inputs), run in a private temp folder with the
   offline calibration-sample file it insists on;
3. a ``tf.function`` wrapper fixes the artifact's I/O: one signature (``serving_default``)
   whose keys are the ONNX input/output names, int32 token inputs (cast to int64 inside),
   non-image tensors kept in the ONNX layout;
4. TFLiteConverter (builtin ops only; a Flex op is an error, LiteRT would reject it):
   fp32 always (checked against onnxruntime), then fp16 / dynamic-range / full-integer;
5. I/O specs are read back from the flatbuffer through its signature, in ONNX order.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgec._deps import require, version_of
from edgec.compiler.model import ModelHandle, TensorSpec
from edgec.errors import CalibrationDataError, ConfigError, EdgecError, UnsupportedOpError
from edgec.targets.base import Artifact, LowerResult, LowerSpec
from edgec.targets.tflite.layout import InputAdapter, OutputFix, input_adapter, output_fix
from edgec.targets.tflite.support import check_model, validate_options

SIGNATURE = "serving_default"
CALIB_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
MAX_CHECK_SAMPLES = 16
TEMPLATES = Path(__file__).parent / "templates"


class TFLiteConversionError(EdgecError):
    """onnx2tf or TFLiteConverter could not convert the model."""


# -- quiet, isolated execution of the converters --------------------------------------
@contextlib.contextmanager
def _captured_output() -> Iterator[list[str]]:
    """Send fd 1/2 (Python and C++ logging) to a temp file; yields a list that gets the text."""
    sink: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield sink
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            sink.append(tmp.read().decode("utf-8", "replace"))


@contextlib.contextmanager
def _in_dir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def import_tf():
    """Import TensorFlow quietly (its C++ banner goes to fd 2 on first import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules:
        with _captured_output():
            tf = require("tensorflow", "tflite")
    else:
        tf = sys.modules["tensorflow"]
    return tf


# onnx2tf's generic advice after every failure; the cause is the exception line above it.
_ONNX2TF_BOILERPLATE = ("Read this and deal with it", "Alternatively, if the input OP", "If the input OP of ONNX",
                        "Also, for models that include", "input_onnx_file_path", "onnx_op_name", "The trace log is below")
_EXC_LINE = re.compile(r"^(?:\w+\.)*(\w*(?:Error|Exception)): (.+)$")


def _last_error_line(log: str) -> str:
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in log.splitlines()]
    lines = [ln for ln in lines if ln and not any(b in ln for b in _ONNX2TF_BOILERPLATE)]
    for ln in reversed(lines):  # the innermost exception with a message says what broke
        m = _EXC_LINE.match(ln)
        if m and "Exception encountered when calling layer" not in m.group(2):
            return f"{m.group(1)}: {m.group(2)}"[:300]
    for i, ln in enumerate(lines):  # TF's "Exception encountered ..." is followed by the cause
        if "Exception encountered when calling layer" in ln and i + 1 < len(lines):
            return lines[i + 1][:300]
    for ln in reversed(lines):
        if "ERROR" in ln or "Error" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else "no output"


def _failed_onnx_node(log: str, proto):
    """The ONNX node onnx2tf names in its failure log (``onnx_op_name: NAME``), if any."""
    m = re.search(r"onnx_op_name:\s*(\S+)", re.sub(r"\x1b\[[0-9;]*m", "", log))
    if not m:
        return None
    name = m.group(1)
    return next((n for n in proto.graph.node if n.name == name or name in n.output), None)


# -- ONNX preparation -----------------------------------------------------------------
def fuse_erf_gelu(proto) -> int:
    """Replace ``x * 0.5 * (1 + erf(x / sqrt2))`` (both Mul orders) by one ``Gelu`` node, in place.

    onnx2tf maps ``Gelu`` to ``tf.nn.gelu``, which TFLite lowers to its GELU builtin (float
    and int8 kernels). Returns the number of patterns fused.
    """
    from onnx import helper, numpy_helper

    g = proto.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].HasField("t"):
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outs = {o.name for o in g.output}

    def scalar(name: str, val: float) -> bool:
        c = consts.get(name)
        return c is not None and c.size == 1 and abs(float(c.reshape(-1)[0]) - val) < 1e-4

    def other(n, name: str) -> str:
        return n.input[1] if n.input[0] == name else n.input[0]

    def only(name: str):
        c = consumers.get(name, [])
        return c[0] if len(c) == 1 and name not in graph_outs else None

    remove: set[int] = set()
    replace: dict[int, Any] = {}
    for div in g.node:
        if div.op_type != "Div" or len(div.input) != 2 or not scalar(div.input[1], 2 ** 0.5):
            continue
        x = div.input[0]
        erf = only(div.output[0])
        if erf is None or erf.op_type != "Erf":
            continue
        add = only(erf.output[0])
        if add is None or add.op_type != "Add" or not scalar(other(add, erf.output[0]), 1.0):
            continue
        m1 = only(add.output[0])
        if m1 is None or m1.op_type != "Mul":
            continue
        m1_other = other(m1, add.output[0])
        if m1_other == x:  # (x * (1 + erf)) * 0.5
            m2 = only(m1.output[0])
            if m2 is None or m2.op_type != "Mul" or not scalar(other(m2, m1.output[0]), 0.5):
                continue
            chain, out = [div, erf, add, m1, m2], m2.output[0]
        else:  # (x * 0.5) * (1 + erf)
            half = next((n for n in g.node if m1_other in n.output), None)
            if (half is None or half.op_type != "Mul" or x not in half.input
                    or not scalar(other(half, x), 0.5) or only(half.output[0]) is not m1):
                continue
            chain, out = [div, erf, add, half, m1], m1.output[0]
        remove.update(id(n) for n in chain)
        replace[id(div)] = helper.make_node("Gelu", [x], [out], name=(div.name or x) + "_gelu")
    if not replace:
        return 0
    nodes = []
    for n in g.node:
        if id(n) in replace:
            nodes.append(replace[id(n)])
        elif id(n) not in remove:
            nodes.append(n)
    # Keep topological order: the Gelu sits where its Div was, which follows x.
    del g.node[:]
    g.node.extend(nodes)
    return len(replace)


def prepare_onnx(model: ModelHandle) -> tuple[Any, list[dict[str, Any]]]:
    """Static-shape, slimmed, GELU-fused copy of the model's proto, and the passes run."""
    import onnx

    for s in model.inputs:
        if not s.is_static:
            raise ConfigError(
                f"the arm target needs static input shapes; input '{s.name}' is {list(s.shape)} "
                "(give --input-shape)")
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    passes: list[dict[str, Any]] = []
    try:
        import onnxslim

        slimmed = onnxslim.slim(proto)
        if slimmed is not None:
            proto = slimmed
            passes.append({"name": "onnxslim", "config": {"version": version_of("onnxslim")}})
    except Exception as exc:  # slimming is an optimization; the unslimmed graph still converts
        passes.append({"name": "onnxslim", "config": {"skipped": type(exc).__name__}})
    n = fuse_erf_gelu(proto)
    if n:
        passes.append({"name": "fuse-erf-gelu", "config": {"fused": n}})
    from edgec.compiler import rewrites

    # onnx2tf reads Pad values and Clip bounds only when constant, and its nearest Resize
    # picks other source pixels than ONNX's coordinate modes when downsampling.
    for rewrite in (rewrites.pad_value_as_where, rewrites.clip_bounds_as_minmax, rewrites.resize_nearest_as_gather):
        n = rewrite(proto, arithmetic=True) if rewrite is rewrites.pad_value_as_where else rewrite(proto)
        if n:
            passes.append({"name": rewrite.__name__.replace("_", "-"), "config": {"rewritten": n}})
    return proto, passes


# -- the TensorFlow graph ---------------------------------------------------------------
def _sanitize(names: list[str], prefix: str) -> list[str]:
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


class _Graph:
    """The onnx2tf Keras model behind a wrapper whose signature is the artifact's I/O.

    Inputs: 4-D images are NHWC (recorded as the layout), every other tensor keeps the
    model's shape. Outputs: how each Keras output maps to the model's is measured on
    ``samples`` (`layout.output_fix`), so non-image outputs come back in the model's shape.
    """

    def __init__(self, tf, keras_model, model: ModelHandle, samples: list[dict[str, np.ndarray]]):
        self.tf = tf
        self.keras = keras_model
        self.in_keys = _sanitize([s.name for s in model.inputs], "input")
        self.out_keys = _sanitize([s.name for s in model.outputs], "output")
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
        conv = self.tf.lite.TFLiteConverter.from_concrete_functions([self.concrete], self.keras)
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


def _run_onnx2tf(proto, work: Path) -> Any:
    """onnx2tf -> Keras model, in ``work`` (cwd restored), output captured."""
    # onnx2tf downloads sample images for its own checks of 4-D RGB models unless this file
    # is in the working folder; offline, the download fails. Any values do: it only runs
    # the ONNX model on them to pick transposes.
    rng = np.random.default_rng(0)
    np.save(work / CALIB_SAMPLE_FILE, rng.random((20, 128, 128, 3), dtype=np.float32))
    with _in_dir(work), _captured_output() as log:
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
        raise _onnx2tf_error(err, text, proto) from (err if isinstance(err, Exception) else None)
    if keras_model is None:
        raise TFLiteConversionError(f"onnx2tf failed: {_last_error_line(text)}")
    return keras_model


def _onnx2tf_error(err: BaseException, log: str, proto) -> EdgecError:
    msg = str(err) if isinstance(err, Exception) else ""
    text = f"{msg}\n{log}"
    # Name the ONNX node when onnx2tf's log or traceback mentions it.
    named = _failed_onnx_node(log, proto)
    if named is not None:
        return UnsupportedOpError(
            named.op_type, named.name or named.output[0], "arm",
            f"onnx2tf could not convert it ({_last_error_line(log or msg)}); "
            "try --target onnxruntime or intel-cpu, or re-export the model with another opset (13-18)")
    for node in proto.graph.node:
        if node.name and (f"onnx_op_name: {node.name}" in text or f"'{node.name}'" in text):
            return UnsupportedOpError(
                node.op_type, node.name, "arm",
                f"onnx2tf could not convert it ({_last_error_line(log or msg)}); "
                "try re-exporting with another opset (13-18)")
    line = _last_error_line(log) if log.strip() else msg
    return TFLiteConversionError(f"onnx2tf could not convert the model: {type(err).__name__}: {line}")


_FLEX_RE = [
    re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op"),
    re.compile(r"Flex ops: (?:Flex)?(\w+)"),
    re.compile(r"ops are not supported by the native TFLite runtime[^\n]*?\btf\.(\w+)"),
]
_QUANT_RE = [
    re.compile(r"Quantization not yet supported for op: '?([\w.]+)'?"),
    re.compile(r"'tfl\.(\w+)' op .*?(?:int8|quantiz)", re.I),
]


def _convert(conv, what: str) -> bytes:
    """Run a TFLiteConverter; map its failures to one-line edgec errors."""
    with _captured_output() as log:
        try:
            data = conv.convert()
            err = None
        except Exception as exc:
            err = exc
    if err is None:
        return bytes(data)
    text = f"{err}\n{log[0] if log else ''}"
    for rx in _FLEX_RE:
        m = rx.search(text)
        if m:
            op = m.group(1)
            return_hint = ("TFLite has no builtin kernel for it and LiteRT runs builtin ops only; "
                           "re-export the model without it (e.g. another opset) or replace it")
            raise UnsupportedOpError(op, f"tf.{op}", "arm", return_hint) from err
    if what == "int8":
        for rx in _QUANT_RE:
            m = rx.search(text)
            if m:
                raise UnsupportedOpError(
                    m.group(1), m.group(1), "arm",
                    "TFLite has no int8 kernel for it; use --precision int8-dynamic or fp16") from err
    first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
    raise TFLiteConversionError(f"TFLiteConverter ({what}) failed: {first[:300]}") from err


# -- reading the flatbuffer back ---------------------------------------------------------
def interpreter_class():
    """The LiteRT Interpreter class and its OpResolverType (ai_edge_litert, else tflite_runtime)."""
    try:
        from ai_edge_litert import interpreter as mod
    except ImportError:
        try:
            from tflite_runtime import interpreter as mod  # type: ignore[no-redef]
        except ImportError:
            from edgec.errors import MissingDependencyError

            raise MissingDependencyError("ai-edge-litert", "tflite") from None
    return mod.Interpreter, getattr(mod, "OpResolverType", None)


def signature_io(interp) -> tuple[dict[str, dict], dict[str, dict]]:
    """``({input_key: details}, {output_key: details})`` of the first signature, else by tensor name."""
    try:
        sigs = interp.get_signature_list()
    except Exception:
        sigs = {}
    if sigs:
        key = SIGNATURE if SIGNATURE in sigs else next(iter(sigs))
        runner = interp.get_signature_runner(key)
        ins, outs = dict(runner.get_input_details()), dict(runner.get_output_details())
        del runner  # it holds references that block invoke() on the interpreter
        return ins, outs
    return ({d["name"]: d for d in interp.get_input_details()},
            {d["name"]: d for d in interp.get_output_details()})


def _tensor_spec(name: str, d: dict, layout: str | None) -> TensorSpec:
    dt = np.dtype(d["dtype"]).name
    scale, zp = d.get("quantization", (0.0, 0))
    quant = np.dtype(dt).kind in "iu" and scale and scale > 0
    return TensorSpec(name, tuple(int(x) for x in d["shape"]), dt,
                      float(scale) if quant else None, int(zp) if quant else None, layout)


def read_io(data: bytes, graph: _Graph) -> tuple[list[TensorSpec], list[TensorSpec], dict[str, int]]:
    """Artifact I/O specs (ONNX order) and the op histogram of a flatbuffer."""
    Interpreter, _ = interpreter_class()
    interp = Interpreter(model_content=data)
    ins, outs = signature_io(interp)
    missing = [k for k in (*graph.in_keys, *graph.out_keys) if k not in ins and k not in outs]
    if missing:
        raise TFLiteConversionError(f"the .tflite signature lacks {missing}")
    inputs = [_tensor_spec(k, ins[k], lay) for k, lay in zip(graph.in_keys, graph.in_layout)]
    outputs = [_tensor_spec(k, outs[k], lay) for k, lay in zip(graph.out_keys, graph.out_layout)]
    ops: dict[str, int] = {}
    try:
        for op in interp._get_ops_details():  # noqa: SLF001 - the only op listing API
            ops[op["op_name"]] = ops.get(op["op_name"], 0) + 1
    except Exception:
        pass
    return inputs, outputs, dict(sorted(ops.items()))


def run_tflite(data: bytes, graph: _Graph, feeds_list: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    """Run a float/int8 flatbuffer on model-convention samples; outputs dequantized, ONNX layout."""
    Interpreter, _ = interpreter_class()
    interp = Interpreter(model_content=data, num_threads=1)
    interp.allocate_tensors()
    ins, outs = signature_io(interp)
    results = []
    for feeds in feeds_list:
        for key, a in zip(graph.in_keys, graph.to_native(feeds)):
            d = ins[key]
            scale, zp = d["quantization"]
            if np.dtype(d["dtype"]).kind in "iu" and a.dtype.kind == "f" and scale:
                info = np.iinfo(d["dtype"])
                a = np.clip(np.round(a / scale) + zp, info.min, info.max)
            interp.set_tensor(d["index"], a.astype(d["dtype"]))
        interp.invoke()
        row = []
        for key, lay in zip(graph.out_keys, graph.out_layout):
            d = outs[key]
            o = interp.get_tensor(d["index"])
            scale, zp = d["quantization"]
            if np.dtype(d["dtype"]).kind in "iu" and scale:
                o = (o.astype(np.float32) - zp) * np.float32(scale)
            if lay == "NHWC":
                o = o.transpose(0, 3, 1, 2)
            row.append(np.array(o))
        results.append(row)
    return results


def _check_samples(model: ModelHandle, spec: LowerSpec) -> list[dict[str, np.ndarray]]:
    if spec.calibration is not None and len(spec.calibration):
        return list(spec.calibration.samples[:MAX_CHECK_SAMPLES])
    from edgec.runtimes.io import synthetic_feeds

    return [synthetic_feeds(model.inputs, seed=i) for i in range(4)]


def float_error(proto_bytes: bytes, data: bytes, graph: _Graph, samples) -> float:
    """Max abs error of a float .tflite against onnxruntime on ``samples``."""
    from edgec.runtimes.onnxruntime_runner import make_session

    sess = make_session(proto_bytes, threads=1)
    names = [o.name for o in sess.get_outputs()]
    got = run_tflite(data, graph, samples)
    err = 0.0
    for feeds, row in zip(samples, got):
        want = sess.run(names, feeds)
        for w, g in zip(want, row):
            err = max(err, float(np.abs(np.asarray(g, np.float64).reshape(w.shape) - w).max(initial=0.0)))
    return err


def _representative(graph: _Graph, samples: list[dict[str, np.ndarray]]):
    # Keyed by signature input name: the flatbuffer's input order need not be the signature's.
    def gen():
        for feeds in samples:
            yield dict(zip(graph.in_keys, graph.to_native(feeds)))
    return gen


def lower(model: ModelHandle, spec: LowerSpec, out_dir: Path, target: str = "arm") -> LowerResult:
    """Write ``model.tflite``, ``bench_tflite.py`` and ``README.md`` into ``out_dir``."""
    check_model(model, spec, target).raise_if_unsupported()
    io_dtype = validate_options(spec)
    precision = spec.precision
    if precision not in ("fp32", "fp16", "int8", "int8-dynamic"):
        raise ConfigError(f"target '{target}' has no precision '{precision}' (fp32, fp16, int8, int8-dynamic)")
    if spec.keep_float and precision == "int8":
        raise ConfigError(
            "--keep-float is not supported by the arm target: a full-integer .tflite has no float "
            "islands; use --precision int8-dynamic (int8 weights, float activations) or fp16")
    if precision == "int8" and (spec.calibration is None or not len(spec.calibration)):
        raise CalibrationDataError("--precision int8 on the arm target needs calibration data (--calib)")
    progress = spec.progress
    say = progress.message if progress is not None else (lambda _t: None)

    proto, passes = prepare_onnx(model)
    tf = import_tf()
    samples = _check_samples(model, spec)
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgec-tflite-") as tmp:
        say("onnx2tf: ONNX -> TensorFlow")
        keras_model = _run_onnx2tf(proto, Path(tmp))
        with _captured_output():
            graph = _Graph(tf, keras_model, model, samples)
        say("TFLiteConverter: float32")
        float_bytes = _convert(graph.converter(), "fp32")
        err = float_error(model.proto.SerializeToString(), float_bytes, graph, samples)
        report["float_tflite_max_abs_err"] = err
        report["float_tflite_samples"] = len(samples)
        report["float_tflite_bytes"] = len(float_bytes)
        passes.append({"name": "onnx2tf", "config": {"version": version_of("onnx2tf"),
                                                     "replace_to_pseudo_operators": ["erf"]}})

        conv = graph.converter()
        quant: dict[str, Any] = {"mode": "none"}
        if precision == "fp32":
            data = float_bytes
        else:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            if precision == "fp16":
                conv.target_spec.supported_types = [tf.float16]
                quant = {"mode": "float16-weights"}
            elif precision == "int8-dynamic":
                quant = {"mode": "dynamic-range", "weights": "int8 per-channel", "activations": "float"}
            else:
                calib = list(spec.calibration.samples)
                conv.representative_dataset = _representative(graph, calib)
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                io_tf = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[io_dtype]
                conv.inference_input_type = io_tf
                conv.inference_output_type = io_tf
                quant = {"mode": "full-integer", "weights": "int8 per-channel symmetric",
                         "activations": "int8 per-tensor asymmetric", "bias": "int32",
                         "calibration_samples": len(calib), "representative_layout": "NHWC"}
            say(f"TFLiteConverter: {precision}")
            data = _convert(conv, precision)

        inputs, outputs, ops = read_io(data, graph)
        if precision == "int8":
            got = run_tflite(data, graph, samples)
            from edgec.runtimes.onnxruntime_runner import make_session

            sess = make_session(model.proto.SerializeToString(), threads=1)
            errs = []
            for feeds, row in zip(samples, got):
                for w, g in zip(sess.run(None, feeds), row):
                    errs.append(float(np.abs(g.reshape(w.shape) - w).max(initial=0.0)))
            report["int8_tflite_max_abs_err"] = max(errs) if errs else None

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.tflite").write_bytes(data)
    shutil.copyfile(TEMPLATES / "bench_tflite.py", out_dir / "bench_tflite.py")
    versions = {"onnx2tf": version_of("onnx2tf"), "tensorflow": version_of("tensorflow"),
                "ai-edge-litert": version_of("ai-edge-litert"), "onnxslim": version_of("onnxslim")}
    manifest = {
        "converter": "onnx2tf+TFLiteConverter",
        "versions": versions,
        "io_dtype": io_dtype,
        "signature": SIGNATURE,
        "quantization": quant,
        "layout": {s.name: s.layout for s in inputs if s.layout},
        "input_names": {m.name: s.name for m, s in zip(model.inputs, inputs)},
        "output_names": {m.name: s.name for m, s in zip(model.outputs, outputs)},
        "builtin_ops_only": True,
        "ops": ops,
    }
    report.update({"size_bytes": len(data), "size_ratio_vs_float_tflite": len(data) / len(float_bytes),
                   "ops": ops})

    from edgec.targets.tflite.readme import bundle_readme

    (out_dir / "README.md").write_text(bundle_readme(model, precision, io_dtype, inputs, outputs,
                                                     quant, versions, report, spec))
    return LowerResult(
        artifacts=[Artifact("model.tflite", "tflite", "model"),
                   Artifact("bench_tflite.py", "python", "harness"),
                   Artifact("README.md", "markdown", "doc")],
        inputs=inputs, outputs=outputs, manifest=manifest, report=report, passes=passes,
    )
