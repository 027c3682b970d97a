"""Typed configuration of one `edgec build`: nested frozen dataclasses, checked when made.

Every choice is checked against the registry that owns it (targets and their options,
observers, int4 methods, gate metrics, ``--prune`` grammar), so a wrong value fails with one
`ConfigError` before any work starts, and a newly registered observer or target is accepted
without touching this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgec.calibration.types import PreprocessConfig
from edgec.errors import ConfigError
from edgec.targets.registry import DEFAULT_TARGET

AUTO_CALIB_METHOD = "auto"  # one observer per tensor, chosen by the output error it causes (quant_stage)
HELD_OUT_CALIB_METHOD = "held-out"  # one observer for the whole model, chosen on held-out samples (held_out_ranges)
# Pseudo-methods that choose among the observers: their first ranges are min/max.
CHOOSING_CALIB_METHODS = (AUTO_CALIB_METHOD, HELD_OUT_CALIB_METHOD)


def one_of(values) -> str:
    """``a, b or c`` for messages."""
    values = [str(v) for v in values]
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


def calib_method_choices() -> tuple[str, ...]:
    """Every registered observer (at call time, so plugins count) plus ``auto`` and ``held-out``."""
    from edgec.calibration.observers import registered_observers

    return (*registered_observers(), *CHOOSING_CALIB_METHODS)


@dataclass(frozen=True)
class InputShape:
    """A fixed shape, or min/opt/max shapes for a dynamic input (TensorRT profiles)."""

    opt: tuple[int, ...]
    min: tuple[int, ...] | None = None
    max: tuple[int, ...] | None = None

    @property
    def is_profile(self) -> bool:
        return self.min is not None


# How int8 weights are rounded onto their per-channel grid (`edgec.compiler.weight_rounding`).
WEIGHT_ROUNDINGS = ("nearest", "gptq")


@dataclass(frozen=True)
class Int8Options:
    """How int8 (calibrated) precisions are quantized.

    Attributes:
        calib_method: Observer for activation ranges (a registered name, ``auto`` or ``held-out``); None:
            the target's default (`QuantScheme.calib_method`).
        smoothquant: SmoothQuant migration strength alpha in [0, 1]; None disables it.
        bias_correction: Correct the int8 model's per-channel output bias on calibration data.
        keep_source_quantization: Lower an already Q/DQ-quantized ONNX with its own scales
            instead of dequantizing and requantizing it with edgec's calibration.
        weight_rounding: ``nearest`` or ``gptq`` (`edgec.compiler.weight_rounding`); None: the
            target's default (`QuantScheme.weight_rounding`).
    """

    calib_method: str | None = None
    smoothquant: float | None = None
    bias_correction: bool = False
    keep_source_quantization: bool = False
    weight_rounding: str | None = None

    def __post_init__(self) -> None:
        if self.weight_rounding is not None and self.weight_rounding not in WEIGHT_ROUNDINGS:
            raise ConfigError(f"--weight-rounding {self.weight_rounding}: expected {one_of(WEIGHT_ROUNDINGS)}")
        if self.calib_method is not None and self.calib_method not in calib_method_choices():
            raise ConfigError(f"--calib-method {self.calib_method}: expected {one_of(calib_method_choices())}")
        if self.smoothquant is not None and not 0.0 <= float(self.smoothquant) <= 1.0:
            raise ConfigError(f"--smoothquant {self.smoothquant}: expected an alpha in [0, 1]")


@dataclass(frozen=True)
class Int4Options:
    """Weight-only int4 (`edgec.compiler.int4`).

    Attributes:
        group_size: Block size along the input dimension (None: the method's own, see
            `edgec.compiler.int4`).
        mode: ``sym`` (int4, zero point 0) or ``asym`` (uint4 with zero points).
        method: ``auto`` (calibrated with ``calib``, else ``rtn``), ``rtn``, ``gptq`` or ``awq``
            (the last two need ``calib``).
    """

    group_size: int | None = None
    mode: str = "asym"
    method: str = "auto"

    def __post_init__(self) -> None:
        from edgec.compiler.int4 import check_int4_options

        check_int4_options(self.group_size, self.mode, self.method)


@dataclass(frozen=True)
class GateOptions:
    """The accuracy gate and the accuracy floor.

    Attributes:
        max_accuracy_drop: Largest allowed drop of ``metric`` against the float model (points;
            see `edgec.compiler.quality`); None disables the gate.
        metric: ``auto``, a built-in metric name or ``file.py:fn``.
        accept_low_accuracy: Ship a quantized artifact below the default accuracy floor
            (`edgec.compiler.accuracy_floor`) instead of failing.
    """

    max_accuracy_drop: float | None = None
    metric: str = "auto"
    accept_low_accuracy: bool = False

    def __post_init__(self) -> None:
        from edgec.compiler.quality import check_metric_name

        if self.max_accuracy_drop is not None and not float(self.max_accuracy_drop) >= 0:
            raise ConfigError(f"--max-accuracy-drop {self.max_accuracy_drop}: expected a number >= 0")
        check_metric_name(self.metric)


@dataclass(frozen=True)
class PruneOptions:
    """``--prune`` (see `edgec.compiler.prune`); the bundle's reference is the pruned float model.

    Attributes:
        spec: ``magnitude:0.5``, ``2:4``, ``channels:0.3``, ``heads:0.25`` ...; None: no pruning.
        finetune: ``file.py:train_fn`` run on the pruned PyTorch model before export.
    """

    spec: str | None = None
    finetune: str | None = None

    def __post_init__(self) -> None:
        from edgec.compiler.prune.spec import PruneSpec, parse_prune_spec

        if self.spec and not isinstance(self.spec, PruneSpec):
            parse_prune_spec(str(self.spec))
        if self.finetune and not self.spec:
            raise ConfigError("--finetune needs --prune: it recovers accuracy after pruning")

    def __bool__(self) -> bool:
        return bool(self.spec)


@dataclass(frozen=True)
class LLMOptions:
    """Options of generation bundles (causal LMs).

    Attributes:
        lora: PEFT LoRA adapter folder merged into a causal LM before export.
        kv_cache: KV-cache precision (one a registered target declares); None keeps the runtime's default.
    """

    lora: str | None = None
    kv_cache: str | None = None

    def __post_init__(self) -> None:
        if self.kv_cache is not None and self.kv_cache not in kv_cache_choices():
            raise ConfigError(f"--kv-cache {self.kv_cache}: expected {one_of(kv_cache_choices())}")


def kv_cache_choices() -> tuple[str, ...]:
    """Every KV-cache precision some registered target declares (`Target.kv_cache_precisions`)."""
    from edgec.targets.registry import TARGETS

    out: dict[str, None] = {}
    for name in TARGETS.names():
        try:
            out.update(dict.fromkeys(getattr(TARGETS.target_class(name), "kv_cache_precisions", ())))
        except (ImportError, AttributeError):
            continue  # a broken target fails when used
    return tuple(out)


# Old flat `BuildConfig` keyword -> (group field, name in the group), for `BuildConfig.from_flat`.
FLAT_NAMES: dict[str, tuple[str, str]] = {
    "calib_method": ("int8", "calib_method"),
    "smoothquant": ("int8", "smoothquant"),
    "bias_correction": ("int8", "bias_correction"),
    "keep_source_quantization": ("int8", "keep_source_quantization"),
    "weight_rounding": ("int8", "weight_rounding"),
    "group_size": ("int4", "group_size"),
    "int4_mode": ("int4", "mode"),
    "int4_method": ("int4", "method"),
    "max_accuracy_drop": ("gate", "max_accuracy_drop"),
    "metric": ("gate", "metric"),
    "accept_low_accuracy": ("gate", "accept_low_accuracy"),
    "prune": ("prune", "spec"),
    "finetune": ("prune", "finetune"),
    "lora": ("llm", "lora"),
    "kv_cache": ("llm", "kv_cache"),
}
_GROUPS = {"int8": Int8Options, "int4": Int4Options, "gate": GateOptions, "prune": PruneOptions, "llm": LLMOptions}


def _pop_flat(kwargs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Remove the flat keywords (`FLAT_NAMES`) from ``kwargs``; returns them as ``{group: {field: value}}``."""
    groups: dict[str, dict[str, Any]] = {}
    for key in [k for k in kwargs if k in FLAT_NAMES]:
        group, name = FLAT_NAMES[key]
        groups.setdefault(group, {})[name] = kwargs.pop(key)
    return groups


@dataclass(frozen=True)
class BuildConfig:
    """Everything `edgec.build` needs; checked against the registries when made.

    Attributes:
        model: Path to an ONNX file, HF folder, ``file.py:factory``, ``.pt2`` or ``.tflite``.
        output: Bundle folder to write.
        target: Target name or alias.
        precision: Requested precision; None takes the target's default.
        calib: Calibration data path, or ``random``.
        calib_samples: Maximum samples to use.
        eval_data: Data for the accuracy check (default: the calibration data).
        input_shapes: ``--input-shape`` values.
        task: Task override for HF models.
        preprocess: Image preprocessing for image-folder data.
        keep_float: Node names to leave in float.
        force: Replace an existing output folder.
        parity_tol: Max abs error allowed between PyTorch and the exported ONNX.
        target_options: Target-specific options (see `TargetOption`); only those the target declares.
        seed: Seed for ``--calib random`` and synthetic data.
        int8: `Int8Options`.
        int4: `Int4Options`.
        gate: `GateOptions`.
        prune: `PruneOptions`.
        llm: `LLMOptions`.
    """

    model: str
    output: Path
    target: str = DEFAULT_TARGET
    precision: str | None = None
    calib: str | None = None
    calib_samples: int = 128
    eval_data: str | None = None
    input_shapes: dict[str, InputShape] = field(default_factory=dict)
    task: str | None = None
    preprocess: PreprocessConfig | None = None
    keep_float: tuple[str, ...] = ()
    force: bool = False
    parity_tol: float = 1e-3
    target_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    int8: Int8Options = field(default_factory=Int8Options)
    int4: Int4Options = field(default_factory=Int4Options)
    gate: GateOptions = field(default_factory=GateOptions)
    prune: PruneOptions = field(default_factory=PruneOptions)
    llm: LLMOptions = field(default_factory=LLMOptions)

    def __post_init__(self) -> None:
        from edgec.targets.registry import TARGETS

        for name, cls in _GROUPS.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"BuildConfig.{name} must be a {cls.__name__}, not "
                                  f"{type(getattr(self, name)).__name__} (BuildConfig.from_flat takes flat keywords)")
        if int(self.calib_samples) < 1:
            raise ConfigError(f"--calib-samples {self.calib_samples}: expected at least 1")
        target = TARGETS.target_class(TARGETS.canonical(self.target))  # ConfigError names the known ones
        check_option_names(target, self.target_options)

    @classmethod
    def from_flat(cls, **kwargs: Any) -> "BuildConfig":
        """A config from the flat keywords of earlier versions (``calib_method=``, ``group_size=`` ...).

        Every key of `FLAT_NAMES` goes into its group; the others are `BuildConfig` fields.
        """
        for group, values in _pop_flat(kwargs).items():
            kwargs[group] = _GROUPS[group](**values)
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "BuildConfig":
        """A copy with ``changes``; keys may be fields or flat names (``calib_method=`` ...)."""
        for group, values in _pop_flat(changes).items():
            changes[group] = dataclasses.replace(changes.get(group, getattr(self, group)), **values)
        return dataclasses.replace(self, **changes)

    def __getattr__(self, name: str) -> Any:
        # Only reached for missing attributes: point code written for the flat config at the group.
        if name in FLAT_NAMES:
            group, field_name = FLAT_NAMES[name]
            raise AttributeError(f"BuildConfig.{name} is now BuildConfig.{group}.{field_name}")
        raise AttributeError(f"'BuildConfig' object has no attribute '{name}'")

    def quality_view(self) -> dict[str, Any]:
        """The accuracy/quantization options that differ from their defaults (for the manifest)."""
        out: dict[str, Any] = {}
        if self.gate.max_accuracy_drop is not None:
            out.update(max_accuracy_drop=self.gate.max_accuracy_drop, metric=self.gate.metric)
        if self.gate.accept_low_accuracy:
            out["accept_low_accuracy"] = True
        if self.precision == "int4":
            out.update(group_size=self.int4.group_size, int4_mode=self.int4.mode, int4_method=self.int4.method)
        if self.int8.smoothquant is not None:
            out["smoothquant"] = self.int8.smoothquant
        if self.int8.bias_correction:
            out["bias_correction"] = True
        if self.int8.keep_source_quantization:
            out["keep_source_quantization"] = True
        if self.int8.weight_rounding is not None:
            out["weight_rounding"] = self.int8.weight_rounding
        return out

    def manifest_view(self) -> dict[str, Any]:
        """The parts of the config that shape the bundle (recorded in the manifest)."""
        return {
            "precision": self.precision,
            "calib_method": self.int8.calib_method,
            "calib_samples": self.calib_samples,
            "input_shapes": {k: {"opt": list(v.opt), "min": list(v.min) if v.min else None,
                                 "max": list(v.max) if v.max else None}
                             for k, v in sorted(self.input_shapes.items())},
            "task": self.task,
            "keep_float": list(self.keep_float),
            "target_options": {k: (list(v) if isinstance(v, tuple) else v)
                               for k, v in sorted(self.target_options.items())},
        } | self.quality_view()


def check_option_names(target, options: dict[str, Any]) -> None:
    """Reject options ``target`` does not declare (unset ones, None/False/(), are ignored)."""
    declared = {o.name for o in target.options}
    unknown = sorted(k for k, v in options.items() if k not in declared and v not in (None, False, ()))
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise ConfigError(f"{flags} do(es) not apply to target '{target.name}'")
