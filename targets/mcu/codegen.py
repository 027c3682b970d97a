"""Write the C library for a planned `QGraph`: edgec_model.h/.c, edgec_weights.h/.c, the
kernels it uses, CMakeLists.txt, Makefile and README.md."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgec.targets.mcu.ops import EMITTERS, KERNEL_FILES, KERNEL_HEADERS
from edgec.targets.mcu.ops.conv import kernel_isa
from edgec.targets.mcu.ops.patch import kinds as op_kinds
from edgec.targets.mcu.planner import GUARD_BYTES, Plan
from edgec.targets.mcu.qgraph import QGraph, QOp
from edgec.targets.mcu.rows import ROW_FILES, ROW_KERNELS

KERNEL_DIR = Path(__file__).parent / "kernels"
_CTYPES = {"int8": "int8_t", "float32": "float", "int32": "int32_t", "int16": "int16_t", "int64": "int64_t"}


def c_ident(s: str) -> str:
    out = "".join(ch if ch.isalnum() else "_" for ch in s)
    return out if out and not out[0].isdigit() else "_" + out


@dataclass
class EmitContext:
    g: QGraph
    plan: Plan
    cpu: str = "cortex-m4"  # sizes the scratch the CPU's kernels need
    params: list[str] = field(default_factory=list)
    weights: list[tuple[str, str, np.ndarray]] = field(default_factory=list)
    scratch_bytes: int = 0
    rq_fast: set[int] = field(default_factory=set)  # the conv/depthwise requantization variants used
    dw_generic: bool = False  # a depthwise layer needs the generic loop (edgec_config.h)
    dw_tail: bool = False  # a chunked depthwise layer's channels end in a part chunk
    conv_tail: bool = False  # a regular conv's output channels are not a multiple of 4
    conv_dilated: bool = False  # a regular conv has a dilated row (im2col's slow path)
    _const_syms: dict[Any, str] = field(default_factory=dict)
    _names: set[str] = field(default_factory=set)

    def _unique(self, base: str) -> str:
        base = c_ident(base)[:48]
        name, k = base, 1
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    @staticmethod
    def float_literal(v: float) -> str:
        return repr(float(np.float32(v))) + "f"

    def same_buffer(self, a: str, b: str) -> bool:
        return self.plan.tensor_buffer[a] == self.plan.tensor_buffer[b]

    def ref(self, name: str, writable: bool = False) -> str:
        t = self.g.t(name)
        if t.is_const:
            return self.const_array(name, _CTYPES.get(t.dtype, "int8_t"), t.data)
        b = self.plan.where(name)
        ctype = _CTYPES.get(t.dtype, "int8_t")
        if b.kind == "input":
            return f"((const {ctype} *)inputs[{b.index}])"
        if b.kind == "output":
            return f"(({ctype} *)outputs[{b.index}])"
        cast = "" if ctype == "int8_t" else f"({ctype} *)(void *)"
        return f"{cast}(edgec_arena.bytes + EDGEC_BUF{b.id})"

    def ring(self, op: QOp) -> str:
        """The row ring of a row-in-place or fused op (an arena buffer)."""
        return f"(edgec_arena.bytes + EDGEC_BUF{self.plan.rings[op.outputs[0]]})"

    def const_array(self, name: str, ctype: str, values, dedup_key: Any = "name") -> str:
        key = ("name", name) if dedup_key == "name" else dedup_key
        if key is not None and key in self._const_syms:
            return self._const_syms[key]
        sym = self._unique("edgec_" + name.rsplit("#", 1)[0].split("/")[-1][-40:] + ("" if dedup_key else ""))
        arr = np.asarray(values).reshape(-1)
        self.weights.append((sym, ctype, arr))
        if key is not None:
            self._const_syms[key] = sym
        return sym

    def param_struct(self, ctype: str, fields: dict[str, Any], op: QOp) -> str:
        sym = self._unique("p_" + op.kind + "_" + op.name.split("/")[-1][-32:])

        def fmt(v):
            if isinstance(v, (list, tuple)):
                return "{" + ", ".join(str(int(x)) for x in v) + "}"
            return str(int(v))

        if "rq_fast" in fields:
            self.rq_fast.add(int(fields["rq_fast"]))
        body = ", ".join(f".{k} = {fmt(v)}" for k, v in fields.items())
        self.params.append(f"static const {ctype} {sym} = {{{body}}};")
        return sym


def arena_c(plan: Plan) -> list[str]:
    """The arena, its buffer offsets, and the canary checks of a ``-DEDGEC_ARENA_CANARY`` build.

    The debug build lays the same buffers out with `planner.GUARD_BYTES` canary bytes after
    each; a buffer's canary is written before the op that produces it and checked after
    every op while the buffer is live. A broken canary makes `edgec_model_run` return
    ``EDGEC_CANARY_ERROR + op index`` (ASan cannot see overruns inside one static array).
    """
    bufs = sorted((b for b in plan.buffers.values() if b.kind == "arena" and b.last >= 0
                   and b.first < len(plan.order)), key=lambda b: b.id)
    release = [f"#define EDGEC_BUF{b.id} {b.offset}" for b in bufs]
    guarded = [f"#define EDGEC_BUF{b.id} {plan.guard_offsets[b.id]}" for b in bufs]
    n = len(bufs)

    def table(ctype: str, name: str, vals) -> str:
        return f"static const {ctype} {name}[{n}] = {{{', '.join(str(int(v)) for v in vals)}}};"

    return [
        "#ifndef EDGEC_ARENA_CANARY",
        "#define EDGEC_ARENA_SIZE EDGEC_ARENA_BYTES", *release,
        "#define EDGEC_CANARY_FILL(k) ((void)0)", "#define EDGEC_CANARY_CHECK(k) ((void)0)",
        "#else",
        f"/* Debug layout: {GUARD_BYTES} canary bytes after every buffer. */",
        f"#define EDGEC_ARENA_SIZE {plan.guard_arena_bytes}", *guarded,
        "#define EDGEC_CANARY_ERROR 1000",
        table("int32_t", "edgec_guard_at", [plan.guard_offsets[b.id] + b.size for b in bufs]),
        table("int16_t", "edgec_guard_first", [b.first for b in bufs]),
        table("int16_t", "edgec_guard_last", [b.last for b in bufs]),
        "#endif",
        "static union { int32_t align; int8_t bytes[EDGEC_ARENA_SIZE]; } edgec_arena;",
        "#ifdef EDGEC_ARENA_CANARY",
        "static int8_t edgec_canary_byte(int32_t i) { return (int8_t)(uint8_t)(0xA5u + 29u * (uint32_t)i); }",
        "/* Write the canaries of the buffers op k produces (they become live there). */",
        "static void edgec_canary_fill(int32_t k) {",
        "    int32_t b, i;",
        f"    for (b = 0; b < {n}; ++b)",
        "        if (edgec_guard_first[b] == k)",
        f"            for (i = 0; i < {GUARD_BYTES}; ++i) edgec_arena.bytes[edgec_guard_at[b] + i] = edgec_canary_byte(i);",
        "}",
        "/* 0 when every canary of a buffer live at op k is intact. */",
        "static int edgec_canary_broken(int32_t k) {",
        "    int32_t b, i;",
        f"    for (b = 0; b < {n}; ++b)",
        "        if (edgec_guard_first[b] <= k && k <= edgec_guard_last[b])",
        f"            for (i = 0; i < {GUARD_BYTES}; ++i)",
        "                if (edgec_arena.bytes[edgec_guard_at[b] + i] != edgec_canary_byte(i)) return 1;",
        "    return 0;",
        "}",
        "#define EDGEC_CANARY_FILL(k) edgec_canary_fill(k)",
        "#define EDGEC_CANARY_CHECK(k) \\",
        "    do { if (edgec_canary_broken(k)) return EDGEC_CANARY_ERROR + (k); edgec_canary_fill((k) + 1); } while (0)",
        "#endif",
    ]


def op_macs(g: QGraph, op: QOp) -> int:
    """Multiply-accumulates of one conv/dwconv/fc op or fused block (0 for the others)."""
    if op.kind in ("resblock", "convpair"):
        return sum(op_macs(g, op.attrs[k]) for k in ("c1", "c2", "sc") if op.attrs[k] is not None)
    if op.kind == "patch":  # the stage's nominal MACs (its halo recompute is in the report)
        return sum(op_macs(g, sub) for sub in op.attrs["stage"].ops)
    kind = op.kind.removesuffix("_s16")
    if kind not in ("conv", "dwconv", "fc"):
        return 0
    w, out = g.t(op.inputs[1]), g.t(op.outputs[0])
    if kind == "fc":
        return int(out.size * w.shape[1])
    taps = int(w.shape[1] * w.shape[2])
    return int(out.size * taps * (w.shape[3] if kind == "conv" else 1))


def _arena_io_api(g: QGraph, plan: Plan) -> tuple[list[str], list[str], list[str]]:
    """With graph I/O in the arena: header declarations, the head of the in-place run
    function, and edgec_model_run (the caller-buffer API, copying in and out)."""
    where = {name: plan.where(name) for name in g.inputs + g.outputs}
    if not all(b.io for b in where.values()):
        return [], [], []
    offs = {kind: [f"EDGEC_BUF{where[n].id}" for n in names] for kind, names in (("in", g.inputs), ("out", g.outputs))}
    header = ["/* The inputs and outputs live in the arena: write the inputs where edgec_model_input(i)",
              " * points, call edgec_model_invoke(), read edgec_model_output(i). No I/O buffers of",
              " * your own are needed (edgec_model_run copies from/to yours). */",
              "#define EDGEC_IO_IN_ARENA 1",
              "void *edgec_model_input(int32_t index);", "void *edgec_model_output(int32_t index);",
              "int edgec_model_invoke(void);", ""]
    head = [f"static const uint32_t edgec_input_offset[EDGEC_NUM_INPUTS] = {{{', '.join(map(str, offs['in']))}}};",
            f"static const uint32_t edgec_output_offset[EDGEC_NUM_OUTPUTS] = {{{', '.join(map(str, offs['out']))}}};",
            "",
            "void *edgec_model_input(int32_t index) { return edgec_arena.bytes + edgec_input_offset[index]; }",
            "void *edgec_model_output(int32_t index) { return edgec_arena.bytes + edgec_output_offset[index]; }", "",
            "int edgec_model_invoke(void) {"]
    copy_in = [f"    memcpy(edgec_arena.bytes + edgec_input_offset[{i}], inputs[{i}], EDGEC_INPUT_BYTES_{i});"
               for i in range(len(g.inputs))]
    copy_out = [f"    memcpy(outputs[{i}], edgec_arena.bytes + edgec_output_offset[{i}], EDGEC_OUTPUT_BYTES_{i});"
                for i in range(len(g.outputs))]
    run = ["int edgec_model_run(const void *const *inputs, void *const *outputs) {", *copy_in,
           "    (void)edgec_model_invoke();", *copy_out, "    return 0;", "}", ""]
    return header, head, run


def _row_driven(op: QOp, lines: list[str], ctx: EmitContext) -> list[str]:
    """The op's kernel call turned into its row-in-place twin (`rows.py`, rows.c)."""
    fn = ROW_KERNELS[op.kind]
    calls = [i for i, line in enumerate(lines) if line.startswith(fn + "(")]
    if len(calls) != 1:
        raise RuntimeError(f"mcu: the row-in-place {op.kind} expects one {fn} call, got {lines}")
    i = calls[0]
    call = f"{fn}_rows({ctx.plan.rows[op.outputs[0]].mode}, {ctx.ring(op)}, " + lines[i][len(fn) + 1:]
    return lines[:i] + [call] + lines[i + 1:]


def _c_array(sym: str, ctype: str, arr: np.ndarray) -> str:
    if ctype == "float":
        vals = [repr(float(np.float32(v))) + "f" for v in arr]
    elif ctype == "int32_t":
        vals = [str(int(v)) if int(v) != -(1 << 31) else "(-2147483647 - 1)" for v in arr]
    else:
        vals = [str(int(v)) for v in arr]
    if not vals:
        vals = ["0"]
    lines = []
    for i in range(0, len(vals), 24):
        lines.append("    " + ", ".join(vals[i:i + 24]) + ",")
    return f"const {ctype} {sym}[{max(len(arr), 1)}] = {{\n" + "\n".join(lines) + "\n};\n"


def generate(g: QGraph, plan: Plan, out_dir: Path, *, model_name: str = "model", cpu: str = "cortex-m4") -> dict[str, Any]:
    """Write the library into ``out_dir`` (the bundle's ``c/``); return facts for the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = EmitContext(g, plan, cpu=cpu)
    body: list[str] = []
    kernel_files: set[str] = set()
    kernel_headers: set[str] = set()
    layers = []
    for i, op in enumerate(plan.order):
        emit = EMITTERS[op.kind]
        lines = emit(op, ctx)
        if op.outputs[0] in plan.rows:
            lines = _row_driven(op, lines, ctx)
            kernel_files.update(ROW_FILES[op.kind])
            kernel_headers.add("edgec_rows.h")
        body.append(f"    /* {op.source_op or op.kind}: {op.name.replace('*/', '* /')} */")
        body.append(f"    EDGEC_MARK({i});")
        body.extend("    " + line for line in lines)
        if plan.arena_bytes:
            body.append(f"    EDGEC_CANARY_CHECK({i});")
        layers.append({"name": op.name.rsplit("#", 1)[0], "op": op.source_op or op.kind, "macs": op_macs(g, op)})
        if op.kind != "reshape" or not ctx.same_buffer(op.inputs[0], op.outputs[0]):
            for kind in op_kinds(op):
                kernel_files.update(KERNEL_FILES[kind])
                kernel_headers.update(KERNEL_HEADERS[kind])
    body.append(f"    EDGEC_MARK({len(plan.order)});")

    ins = [g.t(n) for n in g.inputs]
    outs = [g.t(n) for n in g.outputs]
    macros = [f"#define EDGEC_NUM_INPUTS {len(ins)}", f"#define EDGEC_NUM_OUTPUTS {len(outs)}",
              f"#define EDGEC_ARENA_BYTES {plan.arena_bytes}", f"#define EDGEC_NUM_LAYERS {len(plan.order)}"]
    for kind, ts in (("INPUT", ins), ("OUTPUT", outs)):
        for i, t in enumerate(ts):
            macros.append(f"#define EDGEC_{kind}_BYTES_{i} {t.nbytes}")
            macros.append(f"#define EDGEC_{kind}_SIZE_{i} {t.size}")
            macros.append(f"#define EDGEC_{kind}_DTYPE_{i} \"{t.dtype}\"")
            macros.append(f"/* {kind.lower()} {i}: {t.name.rsplit('#', 1)[0]} shape {list(t.shape)} */")
            if t.scale is not None:
                macros.append(f"#define EDGEC_{kind}_SCALE_{i} {ctx.float_literal(t.s)}")
                macros.append(f"#define EDGEC_{kind}_ZERO_POINT_{i} {t.zp}")
    io_api = _arena_io_api(g, plan)
    header = "\n".join([
        "/* Generated by edgec (target mcu). Do not edit. */",
        "#ifndef EDGEC_MODEL_H", "#define EDGEC_MODEL_H", "", "#include <stdint.h>", "",
        *macros, "",
        "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
        "/* Run the model once. inputs[i] / outputs[i] point to EDGEC_INPUT_BYTES_i /",
        " * EDGEC_OUTPUT_BYTES_i bytes in the model's I/O dtype (int8 NHWC for images).",
        " * Uses a static arena of EDGEC_ARENA_BYTES: not reentrant. Returns 0. */",
        "int edgec_model_run(const void *const *inputs, void *const *outputs);", "",
        *io_api[0],
        "#ifdef __cplusplus", "}", "#endif", "", "#endif", ""])
    (out_dir / "edgec_model.h").write_text(header)

    model_c = "\n".join([
        "/* Generated by edgec (target mcu). Do not edit. */",
        *(["#include <string.h>"] if io_api[0] else []),
        '#include "edgec_model.h"', '#include "edgec_kernels.h"',
        *(f'#include "{h}"' for h in sorted(kernel_headers)), '#include "edgec_weights.h"', "",
        "#ifdef EDGEC_PROFILE",
        "/* Profiling builds: the harness records the time at the start of every layer. */",
        "void edgec_profile_mark(int32_t layer);",
        "#define EDGEC_MARK(i) edgec_profile_mark(i)",
        "#else",
        "#define EDGEC_MARK(i) ((void)0)",
        "#endif", "",
        f"/* Activation arena: {plan.arena_bytes} bytes, offsets fixed at build time. */",
        *(arena_c(plan) if plan.arena_bytes else ["/* (every tensor lives in the caller's I/O buffers) */"]),
        *([f"/* im2col columns of the regular convolutions: {ctx.scratch_bytes} bytes. */",
           f"static union {{ int32_t align; int8_t bytes[{ctx.scratch_bytes}]; }} edgec_scratch_buf;",
           "#define edgec_scratch (edgec_scratch_buf.bytes)"] if ctx.scratch_bytes else []),
        "",
        *ctx.params, "",
        *(io_api[1] or [
            "int edgec_model_run(const void *const *inputs, void *const *outputs) {",
            "    (void)inputs;", "    (void)outputs;"]),
        *(["    EDGEC_CANARY_FILL(-1);", "    EDGEC_CANARY_FILL(0);"] if plan.arena_bytes else []),
        *body, "    return 0;", "}", "", *io_api[2]])
    (out_dir / "edgec_model.c").write_text(model_c)

    w_h = ["/* Generated by edgec: constant data (weights, biases, requantization). */",
           "#ifndef EDGEC_WEIGHTS_H", "#define EDGEC_WEIGHTS_H", "#include <stdint.h>", ""]
    w_c = ["/* Generated by edgec: constant data, placed in flash. */", '#include "edgec_weights.h"', ""]
    const_bytes = 0
    for sym, ctype, arr in ctx.weights:
        w_h.append(f"extern const {ctype} {sym}[{max(arr.size, 1)}];")
        w_c.append(_c_array(sym, ctype, arr))
        const_bytes += arr.size * {"int8_t": 1, "int16_t": 2, "int32_t": 4, "int64_t": 8, "float": 4}[ctype]
    w_h += ["", "#endif", ""]
    (out_dir / "edgec_weights.h").write_text("\n".join(w_h))
    (out_dir / "edgec_weights.c").write_text("\n".join(w_c))

    kernel_files = sorted(kernel_files)
    # Headers the kernel sources include themselves (internals such as edgec_conv_internal.h).
    private = {h for f in kernel_files for h in re.findall(r'#include "([^"]+)"', (KERNEL_DIR / f).read_text())}
    base = ["edgec_kernels.h", "edgec_fixedpoint.h"]
    for f in [*base, *sorted((kernel_headers | private) - set(base)), *kernel_files]:
        shutil.copyfile(KERNEL_DIR / f, out_dir / f)
    (out_dir / "edgec_config.h").write_text(_config_h(ctx, plan, layers))
    sources = ["edgec_model.c", "edgec_weights.c", *kernel_files]
    _write_build_files(out_dir, sources, ins, outs, plan.arena_bytes)
    return {"sources": sources, "const_bytes": const_bytes, "kernels": kernel_files,
            "scratch_bytes": ctx.scratch_bytes, "layers": layers,
            "ops": [op.kind for op in plan.order]}


def _config_h(ctx: EmitContext, plan: Plan, layers: list[dict]) -> str:
    """The kernel variants this model needs (kernels/edgec_config.h): the variants no layer
    takes are left out of the build, and FullyConnected keeps its SIMD loops only where it
    holds at least a tenth of the MACs (the autoencoder; not a classifier's last layer)."""
    total = sum(layer["macs"] for layer in layers)
    fc = sum(layer["macs"] for op, layer in zip(plan.order, layers) if op.kind == "fc")
    knobs = {"EDGEC_RQ_FAST1": int(1 in ctx.rq_fast), "EDGEC_RQ_GENERAL": int(0 in ctx.rq_fast),
             "EDGEC_FC_FAST": int(fc > 0 and 10 * fc >= total), "EDGEC_DW_GENERIC": int(ctx.dw_generic),
             "EDGEC_BUNDLE_ISA": kernel_isa(ctx.cpu), "EDGEC_DW_TAIL": int(ctx.dw_tail),
             "EDGEC_CONV_TAIL": int(ctx.conv_tail), "EDGEC_CONV_DILATED": int(ctx.conv_dilated),
             "EDGEC_CONV_SINGLE_ROUNDING": int(ctx.g.source == "onnx")}
    if any(t.dtype == "int16" and not t.is_const for t in ctx.g.tensors.values()):
        knobs["EDGEC_WITH_S16"] = 1  # only then: int8-only bundles stay as they were
    return "\n".join(["/* Generated by edgec (target mcu): the kernel variants this model needs. */",
                      "#ifndef EDGEC_CONFIG_H", "#define EDGEC_CONFIG_H",
                      *(f"#define {k} {v}" for k, v in knobs.items()), "#endif", ""])


def _write_build_files(out_dir: Path, sources: list[str], ins, outs, arena: int) -> None:
    src = " ".join(sources)
    (out_dir / "CMakeLists.txt").write_text(
        "# Generated by edgec: add_subdirectory(c) then link edgec_model.\n"
        "cmake_minimum_required(VERSION 3.13)\n"
        "project(edgec_model C)\n"
        f"add_library(edgec_model STATIC {src})\n"
        "target_include_directories(edgec_model PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})\n"
        "set_property(TARGET edgec_model PROPERTY C_STANDARD 99)\n")
    (out_dir / "Makefile").write_text(
        "# Generated by edgec. `make` builds libedgec_model.a; override CC/CFLAGS for your MCU,\n"
        "# e.g. make CC=arm-none-eabi-gcc CFLAGS='-mcpu=cortex-m4 -mthumb -Os'\n"
        "CC ?= cc\nAR ?= ar\nCFLAGS ?= -O2\n"
        "CFLAGS += -std=c99 -Wall -Wextra -pedantic -ffunction-sections -fdata-sections\n"
        f"SRCS := {src}\nOBJS := $(SRCS:.c=.o)\n\n"
        "libedgec_model.a: $(OBJS)\n\t$(AR) rcs $@ $^\n\n"
        "%.o: %.c\n\t$(CC) $(CFLAGS) -c $< -o $@\n\n"
        "clean:\n\trm -f $(OBJS) libedgec_model.a\n\n.PHONY: clean\n")
    in_decl = "\n".join(f"static int8_t in{i}[EDGEC_INPUT_BYTES_{i}];  /* {list(t.shape)} {t.dtype} */"
                        for i, t in enumerate(ins))
    out_decl = "\n".join(f"static int8_t out{i}[EDGEC_OUTPUT_BYTES_{i}]; /* {list(t.shape)} {t.dtype} */"
                         for i, t in enumerate(outs))
    in_list = ", ".join(f"in{i}" for i in range(len(ins)))
    out_list = ", ".join(f"out{i}" for i in range(len(outs)))
    (out_dir / "README.md").write_text(f"""# edgec model library (C99)

Generated by `edgec build --target mcu`. Plain C99: no malloc, no stdio, no float on the
int8 path; a static activation arena of **{arena} bytes** (`EDGEC_ARENA_BYTES`); weights are
`const` (flash). Tensors are int8, images NHWC, quantized as
`real = scale * (q - zero_point)` with the `EDGEC_INPUT_SCALE_i` / `EDGEC_INPUT_ZERO_POINT_i`
macros in `edgec_model.h`.

## Build
- Make: `make CC=arm-none-eabi-gcc CFLAGS='-mcpu=cortex-m4 -mthumb -Os'` -> `libedgec_model.a`
- CMake: `add_subdirectory(c)` and `target_link_libraries(app edgec_model)`
- Or add these files to your project: {src}

## Call it
```c
#include "edgec_model.h"

{in_decl}
{out_decl}

int infer(void) {{
    const void *inputs[EDGEC_NUM_INPUTS] = {{{in_list}}};
    void *outputs[EDGEC_NUM_OUTPUTS] = {{{out_list}}};
    /* fill in0 with quantized input: q = round(x / EDGEC_INPUT_SCALE_0) + EDGEC_INPUT_ZERO_POINT_0 */
    return edgec_model_run(inputs, outputs);  /* 0 on success */
}}
```
`edgec_model_run` is not reentrant (one static arena).

## Debug build
Compile with `-DEDGEC_ARENA_CANARY` to lay the arena out with guard bytes after every
tensor and check them after each op: a kernel writing past its tensor makes
`edgec_model_run` return 1000 + the op's index (in the order of `edgec_model.c`).
""")
