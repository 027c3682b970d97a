"""The bundle README for mobile developers: I/O contract and how to load the ``.tflite``."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgec.compiler.model import TensorSpec

_JAVA_BUF = {"float32": "FloatBuffer / float[]", "int8": "ByteBuffer (signed)", "uint8": "ByteBuffer",
             "int32": "IntBuffer / int[]", "int64": "LongBuffer / long[]", "bool": "ByteBuffer"}
_KOTLIN_ARR = {"float32": "FloatArray", "int8": "ByteArray", "uint8": "ByteArray", "int32": "IntArray",
               "int64": "LongArray", "bool": "BooleanArray"}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.9g}"
    return str(v)


def _table(specs: list[TensorSpec], sources: list[TensorSpec]) -> str:
    rows = ["| # | signature key | source name | shape | dtype | layout | scale | zero point |",
            "|---|---|---|---|---|---|---|---|"]
    for i, (s, src) in enumerate(zip(specs, sources)):
        rows.append(f"| {i} | `{s.name}` | `{src.name}` | {list(s.shape)} | {s.dtype} | {s.layout or '-'} "
                    f"| {_fmt(s.scale)} | {_fmt(s.zero_point)} |")
    return "\n".join(rows)


def _io_notes(inputs: list[TensorSpec], outputs: list[TensorSpec], sources: list[TensorSpec]) -> str:
    notes = []
    for s, src in zip(inputs, sources):
        if s.layout == "NHWC":
            notes.append(f"- `{s.name}` is NHWC (`{list(s.shape)}`): the source model took NCHW "
                         f"`{list(src.shape)}`; give pixels as height x width x channels, as Android "
                         "`Bitmap`/`TensorImage` code does.")
        if s.scale is not None:
            lo = (np.iinfo(s.dtype).min - s.zero_point) * s.scale
            hi = (np.iinfo(s.dtype).max - s.zero_point) * s.scale
            notes.append(f"- `{s.name}` is quantized: `q = clamp(round(x / {s.scale:.9g}) + ({s.zero_point}), "
                         f"{np.iinfo(s.dtype).min}, {np.iinfo(s.dtype).max})` where `x` is the normalized "
                         f"float input (representable range [{lo:.4g}, {hi:.4g}]).")
        if s.dtype == "int32" and src.dtype == "int64":
            notes.append(f"- `{s.name}` takes int32 token ids (the source took int64; ids are cast inside).")
    for s in outputs:
        if s.scale is not None:
            notes.append(f"- `{s.name}` is quantized: `x = ({s.scale:.9g}) * (q - ({s.zero_point}))`.")
        if s.layout == "NHWC":
            notes.append(f"- `{s.name}` is NHWC.")
    return "\n".join(notes) if notes else "- All tensors are float32 in the source model's layout."


def bundle_readme(model, precision: str, io_dtype: str, inputs: list[TensorSpec], outputs: list[TensorSpec],
                  quant: dict[str, Any], versions: dict[str, Any], report: dict[str, Any], spec) -> str:
    prep = model.meta.get("preprocess") if getattr(model, "meta", None) else None
    if prep:
        norm = f"Inputs are normalized as the build's `--preprocess` said: `{prep}`."
    else:
        norm = ("Inputs take the same values the source model took (edgec folds no normalization into "
                "the model): apply your training preprocessing (resize, scale, mean/std, tokenizer) "
                "before quantizing.")
    first_in, first_out = inputs[0], outputs[0]
    kin = _KOTLIN_ARR.get(first_in.dtype, "ByteArray")
    kout = _KOTLIN_ARR.get(first_out.dtype, "ByteArray")
    in_keys = ", ".join(f'"{s.name}" to {s.name.replace(".", "_")}Buffer' for s in inputs)
    out_keys = ", ".join(f'"{s.name}" to {s.name.replace(".", "_")}Buffer' for s in outputs)
    py_feeds = ", ".join(f"{s.name}=np.zeros({tuple(s.shape)}, np.{s.dtype})" for s in inputs
                         if s.name.isidentifier())
    kept = f" ({len(quant['float_nodes'])} ops kept float)" if quant.get("float_nodes") else ""
    if quant.get("float_op_counts"):  # structural float islands: name them (the manifest lists the tensors)
        types = ", ".join(f"{op} x{n}" for op, n in quant["float_op_counts"].items())
        kept = (f" ({len(quant['float_nodes'])} ops kept float, the {' + '.join(quant.get('float_islands', []))} "
                f"islands: {types})")
    if quant.get("float_prefix"):  # `--float-prefix`: the first ops from the input
        kept = (f" ({len(quant['float_nodes'])} ops kept float, the first {quant['float_prefix_ops']} from the input: "
                f"--float-prefix {quant['float_prefix']:g})")
    quant_line = {
        "fp32": "float32 weights and activations.",
        "fp16": "float16 weights (dequantized to float32 at load; XNNPACK may run fp16 where the CPU has it), "
                "float32 activations and I/O.",
        "int8-dynamic": "int8 per-channel weights, float activations quantized on the fly (dynamic range); "
                        "float32 I/O.",
        "int8": f"{quant.get('mode', 'full-integer')}: int8 per-channel weights, "
                f"{quant.get('activations', 'int8')} activations{kept}; I/O {io_dtype}.",
    }[precision]
    buffers = "\n".join(f"- `{s.name}`: {_JAVA_BUF.get(s.dtype, 'ByteBuffer')}, "
                        f"{int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize} bytes" for s in (*inputs, *outputs))
    err = report.get("float_tflite_max_abs_err")
    return f"""# {model.source_path.split('/')[-1] if model.source_path else 'model'} for LiteRT (TensorFlow Lite)

`model.tflite` — precision **{precision}**: {quant_line}
Size: {report.get('size_bytes')} bytes ({report.get('size_ratio_vs_float_tflite', 1.0):.3f}x the float32 .tflite).
Builtin TFLite ops only (no Flex/Select TF ops), so the stock LiteRT runtime and XNNPACK run it.
Converted with onnx2tf {versions.get('onnx2tf')} + TensorFlow {versions.get('tensorflow')}'s TFLiteConverter;
the float32 conversion matched the source model within max abs error {_fmt(err)}.
Accuracy of this file against the float model is in `report.json` (`accuracy`).

## Inputs
{_table(inputs, model.inputs)}

## Outputs
{_table(outputs, model.outputs)}

## Notes on the tensors
{_io_notes(inputs, outputs, model.inputs)}

Normalization: {norm}

Tensors are addressed by the signature `serving_default` and its keys (above). The order of
`getInputTensor(i)` in the flatbuffer may differ from the table: use the signature
(`runSignature`) or look the index up by name.

Buffer sizes (direct, native byte order):
{buffers}

## Android (Kotlin)
Gradle: `implementation("com.google.ai.edge.litert:litert:<version>")` (or the older
`org.tensorflow:tensorflow-lite`, same API). Put `model.tflite` in `src/main/assets/` and keep it
uncompressed (`androidResources {{ noCompress += "tflite" }}`).

```kotlin
import org.tensorflow.lite.Interpreter
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel

fun loadModel(context: android.content.Context): Interpreter {{
    val fd = context.assets.openFd("model.tflite")
    val buf = FileInputStream(fd.fileDescriptor).channel
        .map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
    val options = Interpreter.Options().setNumThreads(2)   // XNNPACK is on by default
    return Interpreter(buf, options)
}}

// One direct buffer per tensor, sizes as listed above.
fun direct(bytes: Int): ByteBuffer = ByteBuffer.allocateDirect(bytes).order(ByteOrder.nativeOrder())

val interpreter = loadModel(context)
// fill the input buffers ({kin} for `{first_in.name}`), then:
interpreter.runSignature(mapOf({in_keys}), mapOf({out_keys}))
// read `{first_out.name}` back as {kout}{' and dequantize with the scale/zero point above' if first_out.scale is not None else ''}
```

## Android (Java)
```java
Interpreter.Options options = new Interpreter.Options().setNumThreads(2);
Interpreter interpreter = new Interpreter(mappedModelBuffer, options);
Map<String, Object> inputs = new HashMap<>();
inputs.put("{first_in.name}", inputBuffer);
Map<String, Object> outputs = new HashMap<>();
outputs.put("{first_out.name}", outputBuffer);
interpreter.runSignature(inputs, outputs);
```

## Python (ai-edge-litert or tflite-runtime)
```python
import numpy as np
try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    from tflite_runtime.interpreter import Interpreter

interp = Interpreter(model_path="model.tflite", num_threads=2)
run = interp.get_signature_runner("serving_default")
outputs = run({py_feeds})   # dict: output key -> array
```

## Benchmark on the device
`bench_tflite.py` needs only numpy and `ai-edge-litert` (or `tflite-runtime`):

```
python3 bench_tflite.py model.tflite --iters 100 --threads 2
```

It prints one JSON object in the `edgec.bench/1` schema, the same as `edgec bench`.
"""
