"""`MCUTarget.check`/`lower`: model -> QGraph -> plan -> C library + harness + report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec.errors import BudgetError, EdgecError
from edgec.targets.base import Artifact, LowerResult, LowerSpec, SupportReport
from edgec.targets.mcu.qgraph import QGraph

if TYPE_CHECKING:
    from edgec.compiler.model import ModelHandle


def load_graph(model: "ModelHandle", proto=None) -> QGraph:
    """The model's QGraph (``proto``: a rewrite of the model's Q/DQ ONNX to read instead)."""
    if model.format == "tflite":
        from edgec.targets.mcu.import_tflite import load_tflite

        assert model.tflite_bytes is not None
        return load_tflite(model.tflite_bytes)
    from edgec.targets.mcu.import_onnx import load_onnx

    nhwc_io = frozenset(s.name for s in [*model.inputs, *model.outputs] if s.layout == "NHWC")
    return load_onnx(model.proto if proto is None else proto, nhwc_io)


def mixed_precision(model: "ModelHandle", spec: LowerSpec, opts: dict, io_in_arena: bool):
    """``(graph, plan, info)`` of the int8/int16 graph `promote16.choose` picks for an int8
    Q/DQ model that misses its bar on the calibration samples, when it fits ``--ram-budget``;
    None otherwise (``info`` says what was measured either way)."""
    from edgec.targets.mcu import planner, promote16

    calib = spec.calibration
    if model.format != "onnx" or calib is None or calib.random or spec.float_model is None \
            or spec.float_model.proto is None or model.proto is None:
        return None, None
    budget = opts.get("ram_budget")
    lowered: dict[frozenset[str], tuple] = {}

    def lower16(names: list[str]):
        """(graph, plan, patching) of the model with ``names`` in int16, or the error that stops it."""
        key = frozenset(names)
        if key not in lowered:
            try:
                g, patching = patch_and_fuse(load_graph(model, promote16.promote(model.proto, names)), opts,
                                             io_in_arena)
                plan = planner.plan(g, io_in_arena=io_in_arena, rows=opts.get("row_inplace") or "auto")
                lowered[key] = (g, plan, patching)
            except EdgecError as exc:  # an op the int16 graph cannot take: that promotion is out
                lowered[key] = (exc,)
        return lowered[key]

    def fits(names: list[str]) -> bool:
        low = lower16(names)
        return len(low) == 3 and not (budget and low[1].arena_bytes > budget)

    proto16, info = promote16.choose(model.proto, spec.float_model.proto, calib.samples, fits if budget else None)
    if proto16 is None:
        return None, info
    low = lower16(sorted(promote16.qdq_int16_names(proto16)))
    if len(low) == 1:
        info["not_used"] = str(low[0])
        return None, info
    g, plan, patching = low
    if budget and plan.arena_bytes > budget:
        info["not_used"] = f"arena {plan.arena_bytes} B over the --ram-budget of {budget} B"
        return None, info
    from edgec.targets.mcu.ops.s16 import int16_names

    info["tensors"] = int16_names(g)
    return (g, plan, patching), info


def check_weights_fit(model: "ModelHandle", flash_budget: int | None) -> None:
    """Fail in seconds when the weights alone, one byte each at int8, exceed ``--flash-budget``."""
    if not flash_budget or model.proto is None:
        return
    import numpy as np

    weights = sum(int(np.prod(i.dims)) for i in model.proto.graph.initializer)
    if weights > flash_budget:
        raise BudgetError(f"model has {weights / 2**20:.1f} M weights, at least {_fmt_bytes(weights)} of flash at int8, "
                          f"over the --flash-budget of {_fmt_bytes(flash_budget)}: pick a smaller model or a part "
                          "with more flash")


def check_model(target, model: "ModelHandle", flash_budget: int | None = None) -> SupportReport:
    """Every node the mcu target cannot run, with the reason (runs on the float graph).

    A model whose weights cannot fit ``flash_budget`` fails first: its ops do not matter then.
    """
    check_weights_fit(model, flash_budget)
    report = SupportReport(target.name)
    if model.format == "tflite":
        from edgec.targets.mcu.import_tflite import SUPPORTED, list_ops

        for op, node in list_ops(model.tflite_bytes or b""):
            if op not in SUPPORTED:
                report.unsupported.append((node, op, "supported: " + ", ".join(SUPPORTED)))
        return report
    from edgec.targets.mcu.ops import onnx_rejection
    from edgec.targets.mcu.ops.record import GraphFacts, NodeView

    facts = GraphFacts(model.proto)
    for node in model.proto.graph.node:
        reason = onnx_rejection(NodeView(node, facts))
        if reason:
            report.unsupported.append((node.name or node.output[0], node.op_type, reason))
    return report


def _fmt_bytes(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def check_budgets(g: QGraph, plan, ram_bytes: int, flash_bytes: int, ram_budget: int | None,
                  flash_budget: int | None) -> None:
    if ram_budget and ram_bytes > ram_budget:
        acts = sorted((t for t in g.tensors.values() if not t.is_const), key=lambda t: -t.nbytes)[:3]
        big = ", ".join(f"{t.name.rsplit('#', 1)[0]} {list(t.shape)} {_fmt_bytes(t.nbytes)}" for t in acts)
        raise BudgetError(f"model needs {_fmt_bytes(ram_bytes)} RAM (arena {_fmt_bytes(plan.arena_bytes)} + I/O "
                          f"buffers), over the --ram-budget of {_fmt_bytes(ram_budget)}; largest tensors: {big}")
    if flash_budget and flash_bytes > flash_budget:
        consts = sorted((t for t in g.tensors.values() if t.is_const), key=lambda t: -t.nbytes)[:3]
        big = ", ".join(f"{t.name.rsplit('#', 1)[0]} {list(t.shape)} {_fmt_bytes(t.nbytes)}" for t in consts)
        raise BudgetError(f"model needs {_fmt_bytes(flash_bytes)} flash (code + constants), over the "
                          f"--flash-budget of {_fmt_bytes(flash_budget)}; largest weights: {big}")


def io_specs(g: QGraph, names: list[str], model_specs) -> list:
    from edgec.compiler.model import TensorSpec

    specs = []
    graph_order = set(g.meta.get("graph_order_io", ()))
    for i, n in enumerate(names):
        t = g.t(n)
        model_spec = model_specs[i] if model_specs and i < len(model_specs) else None
        name = model_spec.name if model_spec and g.source == "tflite" else n.rsplit("#", 1)[0]
        quant = t.scale is not None and t.dtype != "float32"
        # A 4-D tensor kept in the ONNX graph's order has the model's own layout (nothing to transpose).
        layout = None if len(t.shape) != 4 else (model_spec.layout if model_spec else None) if n in graph_order \
            else "NHWC"
        specs.append(TensorSpec(name, tuple(int(d) for d in t.shape), t.dtype,
                                scale=t.s if quant else None, zero_point=t.zp if quant else None, layout=layout))
    return specs


def write_host_main(harness: Path, g: QGraph) -> None:
    ins = [g.t(n) for n in g.inputs]
    outs = [g.t(n) for n in g.outputs]
    harness.joinpath("host_main.c").write_text(f"""/* edgec host harness (generated): runs the model on raw input files.
 * Build (from this folder): cc -std=c99 -O2 -I../c ../c/[a-z]*.c host_main.c -o run
 * Usage: ./run IN0.bin ... OUT0.bin ... (raw bytes in the model's I/O dtype) */
#include <stdio.h>

#include "edgec_model.h"

static unsigned char in_buf[{max(1, sum(t.nbytes for t in ins))}];
static unsigned char out_buf[{max(1, sum(t.nbytes for t in outs))}];
static const long in_bytes[] = {{{", ".join(str(t.nbytes) for t in ins)}}};
static const long out_bytes[] = {{{", ".join(str(t.nbytes) for t in outs)}}};

int main(int argc, char **argv) {{
    const void *ins[EDGEC_NUM_INPUTS];
    void *outs[EDGEC_NUM_OUTPUTS];
    long off = 0;
    int i, rc;
    if (argc != 1 + EDGEC_NUM_INPUTS + EDGEC_NUM_OUTPUTS) {{
        fprintf(stderr, "usage: %s IN... OUT...\\n", argv[0]);
        return 2;
    }}
    for (i = 0; i < EDGEC_NUM_INPUTS; ++i) {{
        FILE *f = fopen(argv[1 + i], "rb");
        if (!f || fread(in_buf + off, 1, (size_t)in_bytes[i], f) != (size_t)in_bytes[i]) return 3;
        fclose(f);
        ins[i] = in_buf + off;
        off += in_bytes[i];
    }}
    for (i = 0, off = 0; i < EDGEC_NUM_OUTPUTS; ++i) {{
        outs[i] = out_buf + off;
        off += out_bytes[i];
    }}
    rc = edgec_model_run(ins, outs);
    for (i = 0; i < EDGEC_NUM_OUTPUTS; ++i) {{
        FILE *f = fopen(argv[1 + EDGEC_NUM_INPUTS + i], "wb");
        if (!f) return 4;
        fwrite(outs[i], 1, (size_t)out_bytes[i], f);
        fclose(f);
    }}
    return rc;
}}
""")


def patch_and_fuse(g: QGraph, opts: dict, io_in_arena: bool) -> tuple[QGraph, dict]:
    """``g`` with its patch stage (``--patch-inference``), Conv+Pool fusions and fused blocks,
    each kept only where the planned arena drops; and what they did, for the report."""
    from edgec.targets.mcu import planner
    from edgec.targets.mcu.ops.patch import choose_patch_stage, fuse_conv_pools
    from edgec.targets.mcu.ops.resblock import fuse_expanding_pairs, fuse_residual_blocks

    def blocks(graph: QGraph) -> QGraph:
        return fuse_expanding_pairs(fuse_residual_blocks(graph)) if opts.get("fuse_blocks", True) else graph

    def arena(graph: QGraph) -> int:
        return planner.plan(blocks(graph), io_in_arena=io_in_arena, rows=opts.get("row_inplace") or "auto").arena_bytes

    mode = opts.get("patch_inference") or "auto"
    info: dict[str, Any] = {"patch_inference": {"mode": mode, "stage": None}}
    budget = opts.get("ram_budget")
    io_bytes = 0 if io_in_arena else sum(g.t(n).nbytes for n in g.inputs + g.outputs)
    if mode == "on" or mode == "auto" and budget and arena(g) + io_bytes > budget:
        g, info["patch_inference"] = choose_patch_stage(g, arena, budget - io_bytes if mode == "auto" else None)
        info["patch_inference"]["mode"] = mode
    g, info["conv_pool_fused"] = fuse_conv_pools(g, arena)
    return blocks(g), info


def lower_model(model: "ModelHandle", spec: LowerSpec, out_dir: Path) -> LowerResult:
    import shutil

    from edgec.targets.mcu import codegen, planner, toolchain

    opts = spec.options or {}
    cpu = opts.get("cpu") or "cortex-m4"
    io_in_arena = bool(opts.get("io_in_arena", True))
    mixed, int16_info = mixed_precision(model, spec, opts, io_in_arena)
    if mixed is not None:
        g, plan, patching = mixed
    else:
        g, patching = patch_and_fuse(load_graph(model), opts, io_in_arena)
        plan = planner.plan(g, io_in_arena=io_in_arena, rows=opts.get("row_inplace") or "auto")
    c_dir = out_dir / "c"
    info = codegen.generate(g, plan, c_dir, cpu=cpu)
    harness = out_dir / "harness"
    harness.mkdir(parents=True, exist_ok=True)
    # uart_main.c + uart_cmsdk.c: the bench firmware for a real board on a serial line (`--device serial:`).
    for f in ("cm_startup.c", "cm_main.c", "cm_timing.h", "link_mps2.ld", "uart_main.c", "uart_cmsdk.c"):
        shutil.copyfile(toolchain.HARNESS_DIR / f, harness / f)
    write_host_main(harness, g)

    io_bytes = sum(g.t(n).nbytes for n in g.inputs + g.outputs)
    report: dict[str, Any] = {
        "cpu": cpu, "arena_bytes": plan.arena_bytes, "const_bytes": info["const_bytes"],
        "io_bytes": io_bytes, "io_in_arena": io_in_arena, "scratch_bytes": info["scratch_bytes"],
        "row_ring_bytes": plan.ring_bytes, "row_inplace_ops": len(plan.rows),
        "fused_ops": sum(op.kind in ("resblock", "convpair") for op in plan.order),
        "macs": sum(layer["macs"] for layer in info["layers"]),
        "arena_bytes_without_inplace": planner.greedy_baseline(g, io_in_arena),
        "arena_bytes_sum_of_tensors": plan.naive_bytes, "ops": len(plan.order), **patching,
    }
    size = None
    if toolchain.which("arm-none-eabi-gcc") and toolchain.which("arm-none-eabi-size"):
        size = toolchain.arm_size(c_dir, cpu)
        report["arm_size"] = {**size, "flags": " ".join(toolchain.arm_flags(cpu, fpu=toolchain.uses_fpu(c_dir)))}
        flash = size["text"] + size["data"]
    else:
        report["arm_size"] = "not measured: arm-none-eabi-gcc not found (" + toolchain.APT + ")"
        flash = info["const_bytes"]
    report["flash_bytes"] = flash
    # With the I/O in the arena the caller needs no buffers of its own (pointer API).
    report["ram_bytes"] = plan.arena_bytes + (0 if io_in_arena else io_bytes) + info["scratch_bytes"]
    check_budgets(g, plan, report["ram_bytes"], flash, opts.get("ram_budget"), opts.get("flash_budget"))

    luts = sorted({op.attrs.get("lut_source") for op in g.ops if op.kind == "lut"} - {None})
    board = toolchain.BOARDS[cpu]
    manifest = {
        "cpu": cpu, "arena_bytes": plan.arena_bytes, "const_bytes": info["const_bytes"],
        "sources": [f"c/{s}" for s in info["sources"]], "kernels": info["kernels"],
        "source_format": g.source, "qemu_board": board.machine, "qemu_note": board.note or None,
        "api": "int edgec_model_run(const void *const *inputs, void *const *outputs)" + (
            "; void *edgec_model_input(int32_t), void *edgec_model_output(int32_t), int edgec_model_invoke(void)"
            if io_in_arena else ""),
        "lut_source": luts or None, "layers": info["layers"],
    }
    if int16_info and int16_info["rules"]:  # the int16 promotion: measured, and which tensors it made int16
        manifest["int16"] = report["int16"] = int16_info
    files = sorted(p.relative_to(out_dir).as_posix() for p in list(c_dir.iterdir()) + list(harness.iterdir()))
    artifacts = []
    for f in files:
        if f == "c/edgec_model.c":
            artifacts.append(Artifact(f, "c-source", "model"))
        elif f.startswith("harness/"):
            artifacts.append(Artifact(f, "c-harness", "harness"))
        elif f.endswith(".md"):
            artifacts.append(Artifact(f, "readme", "doc"))
        elif f == "c/edgec_weights.c":
            artifacts.append(Artifact(f, "c-source", "weights"))
        else:
            artifacts.append(Artifact(f, "c-source" if f.endswith((".c", ".h")) else "build-file", "library"))
    return LowerResult(
        artifacts=artifacts,
        inputs=io_specs(g, g.inputs, model.inputs),
        outputs=io_specs(g, g.outputs, model.outputs),
        manifest=manifest, report=report,
        passes=[{"name": "mcu-plan", "config": {"inplace": True, "reorder": True, "align": planner.ALIGN,
                                                 "row_inplace": opts.get("row_inplace") or "auto",
                                                 "fuse_blocks": bool(opts.get("fuse_blocks", True))}}],
    )
