"""Option types, value parsers and option sets the `edgec` commands share.

Choices are read from the registries that own them when a command runs (`RegistryChoice`),
and every target's own options are declared once, on the target classes.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import click

from edgec.errors import ConfigError

# -- value parsers ---------------------------------------------------------------------
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(i?[bB])?\s*$")


def parse_bytes(text: str) -> int:
    """``256K`` / ``1M`` / ``1.5MiB`` / ``4096`` -> bytes (binary units)."""
    m = _SIZE.match(str(text))
    if not m:
        raise ConfigError(f"'{text}' is not a size (examples: 256K, 1M, 4096)")
    mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def _dims(text: str, flag: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{flag}: '{text}' is not a shape like 1x3x224x224") from None
    if not dims or any(d <= 0 for d in dims):
        raise ConfigError(f"{flag}: '{text}' is not a shape like 1x3x224x224")
    return dims


def parse_input_shapes(values: tuple[str, ...]):
    """``name=1x3x32x32`` or ``name=MIN:OPT:MAX`` shapes -> ``{name: InputShape}``."""
    from edgec.compiler.config import InputShape

    out = {}
    for v in values:
        name, eq, shape = v.partition("=")
        if not eq or not name:
            raise ConfigError(f"--input-shape '{v}' must look like NAME=1x3x224x224 or NAME=MIN:OPT:MAX")
        parts = shape.split(":")
        if len(parts) == 1:
            out[name] = InputShape(_dims(parts[0], "--input-shape"))
        elif len(parts) == 3:
            lo, opt, hi = (_dims(p, "--input-shape") for p in parts)
            if not (len(lo) == len(opt) == len(hi)) or any(a > b or b > c for a, b, c in zip(lo, opt, hi)):
                raise ConfigError(f"--input-shape {name}: profile shapes must have one rank and min <= opt <= max")
            out[name] = InputShape(opt, lo, hi)
        else:
            raise ConfigError(f"--input-shape '{v}': give one shape or three (min:opt:max)")
    return out


class RegistryChoice(click.Choice):
    """A `click.Choice` whose choices are read from a registry when used, so a later registration counts."""

    def __init__(self, names: Callable[[], Sequence[Any]]):
        self._names = names
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(str(n) for n in self._names())

    @choices.setter
    def choices(self, _value) -> None:  # click.Choice.__init__ assigns; the registry stays the source
        pass


def int4_choices(name: str) -> Callable[[], Sequence[Any]]:
    def names():
        from edgec.compiler import int4

        return getattr(int4, name)
    return names


# -- shared options --------------------------------------------------------------------
def threads_option(fn):
    return click.option("--threads", type=click.IntRange(min=1), default=None,
                        help="Intra-op threads for the runtime (default: the runtime decides).")(fn)


def target_option_decorators():
    """Every target's own options, declared once in the target classes."""
    from edgec.targets.registry import TARGETS

    seen: dict[str, Any] = {}
    owners: dict[str, list[str]] = {}
    for name in TARGETS.names():
        try:
            cls = TARGETS.target_class(name)
        except (ImportError, AttributeError):
            continue  # `edgec targets` reports the broken target; the others stay usable
        for opt in cls.options:
            if opt.name in seen and seen[opt.name] != opt:
                raise RuntimeError(f"targets declare option {opt.flag} differently")
            seen[opt.name] = opt
            owners.setdefault(opt.name, []).append(name)
    decorators = []
    for opt_name, opt in sorted(seen.items()):
        help_text = f"{opt.help} [{', '.join(owners[opt_name])}]"
        kw: dict[str, Any] = {"help": help_text, "default": None, "multiple": opt.multiple}
        if opt.kind == "flag":
            kw.update(is_flag=True, default=False)
        elif opt.kind == "choice":
            kw["type"] = click.Choice(opt.choices)
        elif opt.kind == "int":
            kw["type"] = int
        elif opt.kind == "float":
            kw["type"] = float
        decorators.append(click.option(opt.flag, opt_name, **kw))
    return decorators, seen


def with_target_options(fn):
    decorators, _ = target_option_decorators()
    for d in decorators:
        fn = d(fn)
    return fn


PRUNE_HELP = ("Prune before quantizing: magnitude:0.5[,scope=global|layer] (unstructured: smaller compressed, not "
              "faster), 2:4 (N:M for TensorRT sparse kernels, with jetson --sparsity), channels:0.3 or heads:0.25 "
              "(structured: a smaller model, faster on every target; importance=magnitude|activation). The bundle's "
              "reference is the pruned float model; report.json 'pruning' compares it with the unpruned one.")
FINETUNE_HELP = ("Your training loop FN(model, ctx) run on the pruned PyTorch model before export; ctx.teacher is the "
                 "unpruned model (see edgec.compiler.prune.distillation_loss).")
TASK_HELP = ("What the model does. For a Hugging Face folder it picks the head (default: from config.json); for any "
             "model it picks the score: classification tasks (classification, image-classification, "
             "text-classification, ...) add top-1 agreement, any other (detection, landmarks, regression, "
             "feature-extraction) is scored by cosine only. Default: a 2-D first output is read as class scores.")
