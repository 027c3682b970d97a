"""The `edgec` command line: parse, build a typed config, call one `edgec.api` function.

Heavy packages are never imported here: `edgec --help` stays fast.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from edgec import __version__
from edgec.compiler.config import WEIGHT_ROUNDINGS, calib_method_choices, kv_cache_choices
from edgec.compiler.quality import BUILTIN_METRICS
from edgec.errors import ConfigError
from edgec.runtimes.registry import REFERENCE_RUNNER
from edgec.targets.registry import DEFAULT_TARGET

from edgec._quiet import DEBUG as _DEBUG  # noqa: E402 - one flag shared with library code
from edgec.cli_common import emit as _emit, handle_errors, json_option
from edgec.cli_options import (FINETUNE_HELP, PRUNE_HELP, TASK_HELP, RegistryChoice, int4_choices, parse_bytes,
                                parse_input_shapes, target_option_decorators, threads_option, with_target_options)
from edgec.cli_output import (_print_bench, _print_build, _print_generation_bench, _print_inspect, _print_layers,
                              _print_prune, _print_targets, _print_verify)


def _progress(as_json: bool):
    import os

    from edgec.compiler.progress import Progress

    # Progress goes to stderr only on a terminal (or when asked), so scripted runs see
    # exactly one `error: ...` line on failure.
    wanted = sys.stderr.isatty() or os.environ.get("EDGEC_PROGRESS") == "1"
    return Progress(enabled=wanted and not as_json)


# -- commands --------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="edgec")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
def cli(debug: bool) -> None:
    """edgec compiles trained models into verified, quantized bundles for edge devices.

    \b
    Typical use:
      edgec build model.onnx --target intel-cpu --calib calib.npz -o out/
      edgec bench out/ --iters 200
      edgec verify out/ --data eval.npz

    MODEL is an .onnx or .tflite file, a Keras .h5/.keras file, a TensorFlow SavedModel
    folder, a Hugging Face transformers folder, a PyTorch factory as file.py:fn returning
    (module, example_inputs), or a .pt2 ExportedProgram. Run `edgec targets` to see the targets usable on this machine.
    """
    _DEBUG["on"] = debug


@cli.command()
@click.argument("model")
@click.option("--target", "-t", default=DEFAULT_TARGET, show_default=True,
              help="Target or alias (see `edgec targets`).")
@click.option("--precision", "-p", default=None,
              help="fp32, fp16, int8 (and target-specific ones); default: the target's default.")
@click.option("--calib", default=None, metavar="PATH|random",
              help="Calibration data: .npz (keys = input names, leading sample axis), a folder of .npy/.npz or "
                   "images, a .txt/.jsonl of texts, or 'random' (flagged in the report).")
@click.option("--calib-method", type=RegistryChoice(calib_method_choices), default=None,
              help="How activation ranges are chosen from the calibration data (every registered observer); auto "
                   "picks one per tensor by the output error it causes. Default: the target's, measured on real "
                   "models (`edgec targets --json` lists it).")
@click.option("--calib-samples", type=click.IntRange(min=1), default=128, show_default=True,
              help="Maximum calibration samples.")
@click.option("--eval", "eval_data", default=None, metavar="PATH",
              help="Data for the accuracy check (same formats as --calib; default: the calibration data).")
@click.option("--preprocess", default=None, metavar="SPEC",
              help="Image preprocessing, e.g. resize=224x224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,layout=NCHW.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=SHAPE",
              help="Static shape NAME=1x3x224x224, or a profile NAME=MIN:OPT:MAX for dynamic inputs. Repeatable.")
@click.option("--task", default=None, help=TASK_HELP)
@click.option("--keep-float", multiple=True, metavar="NODE", help="Leave this node in float. Repeatable.")
@click.option("--max-accuracy-drop", type=click.FloatRange(min=0), default=None, metavar="X",
              help="Accuracy gate: keep the most sensitive layers in higher precision until the --metric drop "
                   "against the float model is at most X points (measured on --eval, else the calibration data); "
                   "fail with the best result otherwise.")
@click.option("--accept-low-accuracy", is_flag=True,
              help="Ship a quantized artifact even below the accuracy floor (cosine < 0.98, or top-1 agreement < "
                   "0.9 on classifiers, against the float model on real data); without it such a build fails with "
                   "a per-layer diagnosis.")
@click.option("--metric", default="auto", show_default=True, metavar="|".join((*BUILTIN_METRICS, "FILE.py:FN")),
              help="Metric of the accuracy gate: top1 (accuracy on the .npz 'labels', else agreement with the float "
                   "model, in points), cosine (100 x mean cosine), mse, or FILE.py:FN with "
                   "FN(outputs: list[dict[str, np.ndarray]], reference_outputs: list[dict[str, np.ndarray]], "
                   "labels: np.ndarray | None) -> float, higher is better; auto: top1 for classifiers, else cosine.")
@click.option("--group-size", type=RegistryChoice(int4_choices("GROUP_SIZES")), default=None,
              help="INT4: block size along the input dimension of MatMul/Gemm weights [default: 32 for the "
                   "calibrated recipe, 128 for rtn].")
@click.option("--int4-mode", type=RegistryChoice(int4_choices("MODES")), default="asym", show_default=True,
              help="INT4: symmetric int4, or asymmetric uint4 with per-block zero points.")
@click.option("--int4-method", type=RegistryChoice(int4_choices("METHODS")), default="auto", show_default=True,
              help="INT4: auto = calibrated with --calib (GPTQ act-order, error-aware scales, the most sensitive "
                   "layers int8), else round-to-nearest; or rtn, gptq, awq (the last two need --calib).")
@click.option("--smoothquant", type=click.FloatRange(0, 1), default=None, metavar="ALPHA",
              help="INT8: SmoothQuant with migration strength ALPHA (0.5 typical) for transformer activations.")
@click.option("--bias-correction", is_flag=True, help="INT8: correct per-channel output bias shifts (CNNs).")
@click.option("--weight-rounding", type=click.Choice(WEIGHT_ROUNDINGS), default=None,
              help="INT8: how Conv/Gemm/MatMul weights land on their per-channel int8 grid (same scales): nearest, "
                   "or gptq (each rounding chosen for the smallest layer output error on --calib inputs; seconds "
                   "per build) [default: the target's].")
@click.option("--keep-source-quantization", is_flag=True,
              help="An already Q/DQ-quantized ONNX keeps its own scales (targets that take Q/DQ ONNX); default: "
                   "dequantize it and requantize with --calib.")
@click.option("--parity-tol", type=float, default=1e-3, show_default=True,
              help="Max abs error allowed between PyTorch and the exported ONNX.")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path), help="Bundle folder to write.")
@click.option("--force", is_flag=True, help="Replace the output folder if it exists.")
@click.option("--prune", default=None, metavar="SPEC", help=PRUNE_HELP)
@click.option("--finetune", default=None, metavar="FILE.py:FN", help=FINETUNE_HELP)
@click.option("--lora", default=None, metavar="ADAPTER_DIR",
              help="Causal LMs: merge this PEFT LoRA adapter (safetensors) before export; the merge is checked.")
@click.option("--kv-cache", type=RegistryChoice(kv_cache_choices), default=None,
              help="Causal LMs: KV-cache precision (default: the runtime's).")
@with_target_options
@json_option
@handle_errors
def build(model: str, target: str, precision: str | None, calib: str | None, calib_method: str | None, calib_samples: int,
          eval_data: str | None, preprocess: str | None, input_shapes: tuple[str, ...], task: str | None,
          keep_float: tuple[str, ...], parity_tol: float, output: Path, force: bool, as_json: bool,
          max_accuracy_drop: float | None = None, metric: str = "auto", group_size: str | None = None,
          int4_mode: str = "asym", int4_method: str = "auto", smoothquant: float | None = None,
          bias_correction: bool = False, prune: str | None = None, finetune: str | None = None,
          lora: str | None = None, kv_cache: str | None = None, keep_source_quantization: bool = False,
          accept_low_accuracy: bool = False, weight_rounding: str | None = None, **target_options: Any) -> None:
    """Compile MODEL for a target into the bundle folder OUTPUT."""
    from edgec import api
    from edgec.compiler.config import BuildConfig, GateOptions, Int4Options, Int8Options, LLMOptions, PruneOptions

    _, declared = target_option_decorators()
    parsed_opts = {}
    for k, v in target_options.items():
        if v is None or v is False or v == ():
            continue
        parsed_opts[k] = parse_bytes(v) if declared[k].kind == "bytes" else v
        if declared[k].kind == "bytes" and parsed_opts[k] <= 0:
            raise ConfigError(f"{declared[k].flag} must be larger than 0 (got '{v}')")
    pre = None
    if preprocess:
        from edgec.calibration.sources import parse_preprocess

        pre = parse_preprocess(preprocess)
    config = BuildConfig(
        model=model, output=output, target=target, precision=precision, calib=calib, calib_samples=calib_samples,
        eval_data=eval_data, input_shapes=parse_input_shapes(input_shapes), task=task, preprocess=pre,
        keep_float=tuple(keep_float), force=force, parity_tol=parity_tol, target_options=parsed_opts,
        int8=Int8Options(calib_method=calib_method, smoothquant=smoothquant, bias_correction=bias_correction,
                         keep_source_quantization=keep_source_quantization, weight_rounding=weight_rounding),
        int4=Int4Options(group_size=None if group_size is None else int(group_size), mode=int4_mode,
                         method=int4_method),
        gate=GateOptions(max_accuracy_drop=max_accuracy_drop, metric=metric, accept_low_accuracy=accept_low_accuracy),
        prune=PruneOptions(spec=prune, finetune=finetune), llm=LLMOptions(lora=lora, kv_cache=kv_cache))
    result = api.build(config, _progress(as_json))
    summary = {"bundle": str(result.bundle), "manifest": result.manifest, "report": result.report}
    _emit(summary, as_json, _print_build)


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--iters", type=int, default=100, show_default=True, help="Timed iterations.")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed warm-up iterations.")
@click.option("--device", default="host", show_default=True,
              help="Where to run: host; qemu or qemu:cortex-m0|m3|m4|m7|m33|m55 (mcu bundles); "
                   "ssh://user@host[:port][?key=PATH&known_hosts=PATH&python=python3] (a Linux board running the "
                   "bundle's standalone harness); serial:/dev/ttyX[?baud=N] (an MCU board, with --flash).")
@click.option("--flash", default=None, metavar="METHOD",
              help="serial devices: how to flash the firmware first: pyocd:TARGET, openocd:CFG or cmd:\"...{elf}...\".")
@click.option("--timeout", type=float, default=600.0, show_default=True,
              help="Seconds before a remote or emulated run is killed.")
@click.option("--profile", is_flag=True,
              help="Instructions per layer (mcu bundles with --device qemu), like TFLM's MicroProfiler.")
@click.option("--prompt-tokens", type=int, default=128, show_default=True,
              help="Generation bundles: prompt length for time-to-first-token.")
@click.option("--new-tokens", type=int, default=128, show_default=True,
              help="Generation bundles: tokens decoded per run (time per output token).")
@click.option("--repeat", type=int, default=3, show_default=True, help="Generation bundles: timed runs.")
@threads_option
@json_option
@handle_errors
def bench(bundle: Path, iters: int, warmup: int, device: str, flash: str | None, timeout: float, profile: bool,
          threads: int | None, as_json: bool, prompt_tokens: int = 128, new_tokens: int = 128, repeat: int = 3) -> None:
    """Time a bundle's artifact: latency p50/p90/p99/mean, throughput and peak RSS.

    For a generation bundle (a causal LM): load time, TTFT, TPOT median/p90, tokens/s, peak RSS
    and KV-cache bytes over a --prompt-tokens prompt and --new-tokens greedy tokens.
    """
    from edgec import api

    if _is_generation_bundle(bundle):
        _emit(api.bench_generation(bundle, prompt_tokens=prompt_tokens, new_tokens=new_tokens, threads=threads,
                                   repeat=repeat, progress=_progress(as_json)), as_json, _print_generation_bench)
        return
    _emit(api.bench(bundle, iters=iters, warmup=warmup, threads=threads, device=device, profile=profile,
                    flash=flash, timeout=timeout, progress=_progress(as_json)), as_json, _print_bench)


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--prompt", required=True, help="Text to continue (wrapped in the chat template when the model has one).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--no-chat", is_flag=True, help="Use the prompt as is, without the chat template.")
@threads_option
@json_option
@handle_errors
def generate(bundle: Path, prompt: str, max_new_tokens: int, no_chat: bool, threads: int | None,
             as_json: bool) -> None:
    """Generate text greedily with a generation bundle's own runner and tokenizer."""
    from edgec import api

    result = api.generate(bundle, prompt, max_new_tokens=max_new_tokens, threads=threads, chat=not no_chat)
    _emit(result, as_json, lambda r: click.echo(r["text"]))


def _is_generation_bundle(bundle: Path) -> bool:
    try:
        return "methods" in json.loads((Path(bundle) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--data", required=True, metavar="PATH", help="Inputs (same formats as --calib); an .npz may hold labels.")
@click.option("--min-cosine", type=click.FloatRange(-1.0, 1.0), default=None,
              help="Fail (exit 1) below this mean cosine. Default: the bundle's build-time cosine minus 0.02.")
@click.option("--max-accuracy-drop", type=click.FloatRange(min=0.0), default=None,
              help="Fail (exit 1) when top-1 accuracy on the data's labels drops more than this many points. "
                   "Default: the bundle's build-time drop plus 1.")
@threads_option
@json_option
@handle_errors
def verify(bundle: Path, data: str, min_cosine: float | None, max_accuracy_drop: float | None, threads: int | None,
           as_json: bool) -> None:
    """Compare a bundle's artifact with its float reference model on DATA; the exit code says pass/fail."""
    from edgec import api
    from edgec.errors import AccuracyError

    result = api.verify(bundle, data, threads=threads, min_cosine=min_cosine, max_accuracy_drop=max_accuracy_drop,
                        progress=_progress(as_json))
    _emit(result, as_json, _print_verify)
    if not result["passed"]:
        raise AccuracyError("verify failed: " + "; ".join(result["failures"]))


@cli.command()
@json_option
@handle_errors
def targets(as_json: bool) -> None:
    """List targets, their aliases and precisions, and whether they are usable here."""
    from edgec import api

    _emit(api.list_targets(), as_json, _print_targets)


@cli.command(name="inspect")
@click.argument("model_or_bundle")
@json_option
@handle_errors
def inspect_cmd(model_or_bundle: str, as_json: bool) -> None:
    """Show inputs/outputs, op counts, parameters and size of a model or a bundle."""
    from edgec import api

    _emit(api.inspect(model_or_bundle), as_json, _print_inspect)


@cli.group()
def debug() -> None:
    """Tools to find out why a build is inaccurate."""


@debug.command(name="layers")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--data", required=True, metavar="PATH", help="Inputs (same formats as --calib).")
@click.option("--bisect", "do_bisect", is_flag=True,
              help="Name the first layer in graph order whose output SQNR falls below --threshold.")
@click.option("--threshold", type=float, default=20.0, show_default=True, metavar="DB",
              help="SQNR (dB) below which a layer's output counts as broken (for --bisect).")
@click.option("--samples", "max_samples", type=click.IntRange(min=1), default=64, show_default=True,
              help="Maximum samples of DATA to use.")
@click.option("--runtime", type=click.Choice([REFERENCE_RUNNER, "target"]), default=REFERENCE_RUNNER, show_default=True,
              help="Read the quantized tensors from the bundle's Q/DQ ONNX in onnxruntime, or from the target's "
                   "runtime where it exposes intermediates (intel-cpu: OpenVINO).")
@click.option("--top", type=click.IntRange(min=1), default=15, show_default=True, help="Rows to print.")
@json_option
@handle_errors
def layers(bundle: Path, data: str, do_bisect: bool, threshold: float, max_samples: int, runtime: str, top: int,
           as_json: bool) -> None:
    """Per-layer error of BUNDLE's quantized model against its float reference, worst first.

    \b
    Columns: output SQNR (dB, cumulative), cosine, max abs error, the input SQNR, and the error
    the layer adds: input SQNR - output SQNR, and as noise power relative to the signal (1/SQNR
    out - 1/SQNR in, in %), by which rows are sorted.
    """
    from edgec import api

    result = api.debug_layers(bundle, data, threshold_db=threshold, max_samples=max_samples, runtime=runtime)
    if not do_bisect:
        result.pop("first_above_threshold", None)
    _emit(result, as_json, lambda r: _print_layers(r, top))


@cli.command(name="prune")
@click.argument("model")
@click.option("--prune", "spec", required=True, metavar="SPEC", help=PRUNE_HELP)
@click.option("--finetune", default=None, metavar="FILE.py:FN", help=FINETUNE_HELP)
@click.option("--calib", default=None, metavar="PATH|random",
              help="Data for activation importance, the fine-tune context and the accuracy check (as for build).")
@click.option("--eval", "eval_data", default=None, metavar="PATH", help="Data for the accuracy check (with labels).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=SHAPE", help="As for build. Repeatable.")
@click.option("--task", default=None, help=TASK_HELP)
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path),
              help="Folder to write: model.onnx, report.json (+ model.safetensors for PyTorch sources).")
@click.option("--force", is_flag=True, help="Replace the output folder if it exists.")
@json_option
@handle_errors
def prune_cmd(model: str, spec: str, finetune: str | None, calib: str | None, eval_data: str | None,
              input_shapes: tuple[str, ...], task: str | None, output: Path, force: bool, as_json: bool) -> None:
    """Prune MODEL into a smaller or sparser float model (ONNX) with a report."""
    from edgec import api
    from edgec.compiler.config import BuildConfig

    from edgec.compiler.config import PruneOptions

    config = BuildConfig(model=model, output=output, calib=calib, eval_data=eval_data,
                         input_shapes=parse_input_shapes(input_shapes), task=task, force=force,
                         prune=PruneOptions(spec=spec, finetune=finetune))
    _emit(api.prune(config, _progress(as_json)), as_json, _print_prune)


# `edgec farm` lives in its own module (helpers shared through edgec.cli_common).
from edgec.cli_farm import farm as _farm  # noqa: E402

cli.add_command(_farm)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one ``error: ...`` line and a non-zero exit for every failure."""
    args = list(sys.argv[1:] if argv is None else argv)
    _DEBUG["on"] = "--debug" in args
    try:
        rv = cli.main(args=args, prog_name="edgec", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx else "edgec"
        click.echo(f"error: {exc.format_message()} (see '{cmd} --help')", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - a bug: still one line, traceback with --debug
        if _DEBUG["on"]:
            traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        click.echo(f"error: internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
                   err=True)
        sys.exit(70)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
