"""``--finetune file.py:train_fn``: the user's own training loop on the pruned PyTorch model.

edgec calls ``train_fn(model, ctx)`` (or ``train_fn(model)`` when it takes one argument)
after pruning and before export. ``model`` is the pruned module in eval mode (call
``model.train()`` in the loop); pruned weights of ``magnitude``/``N:M`` specs are held at
zero by masks while it trains. ``ctx`` is a `FinetuneContext` with the unpruned teacher
for distillation. Return the trained module, or None when it was trained in place.

Example ``finetune.py``::

    import torch
    from edgec.compiler.prune import distillation_loss

    def train_fn(model, ctx):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x, y = my_training_data()
        model.train()
        for _ in range(3):
            with torch.no_grad():
                t = ctx.teacher(x)
            loss = distillation_loss(model(x), t, y, T=4.0, alpha=0.7)
            opt.zero_grad(); loss.backward(); opt.step()
        return model
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgec.compiler.model import sha256_bytes
from edgec.compiler.prune.spec import PruneSpec, check_finetune_ref
from edgec.errors import ConfigError


@dataclass
class FinetuneContext:
    """What ``train_fn`` gets besides the model.

    Attributes:
        teacher: The unpruned model (eval mode, gradients off): the distillation teacher.
        example_inputs: The example inputs ``{name: tensor}``; call models with
            ``model(*example_inputs.values())`` order.
        calibration: The ``--calib`` inputs stacked along the batch axis ``{name: tensor}``,
            or None without ``--calib``.
        labels: Labels of the calibration data (an ``.npz`` ``labels`` key), or None.
        spec: The pruning spec that was applied.
        distillation_loss: `edgec.compiler.prune.distillation_loss`.
    """

    teacher: Any
    example_inputs: dict[str, Any]
    calibration: dict[str, Any] | None
    labels: Any
    spec: PruneSpec
    distillation_loss: Callable[..., Any]


def load_train_fn(ref: str) -> Callable[..., Any]:
    """Import ``file.py`` and return its ``train_fn`` (`ConfigError` when it is not there)."""
    check_finetune_ref(ref)
    file, _, fn = ref.rpartition(":")
    path = Path(file).resolve()
    name = f"edgec_user_finetune_{sha256_bytes(str(path).encode())[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:  # noqa: BLE001 - user code
        raise ConfigError(f"--finetune: importing {file} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.pop(0)
    func = getattr(mod, fn, None)
    if not callable(func):
        raise ConfigError(f"--finetune: '{file}' has no function '{fn}'")
    return func


def run_finetune(ref: str, model: Any, ctx: FinetuneContext) -> Any:
    """Call the user's ``train_fn`` on ``model``; returns the trained module in eval mode."""
    torch = __import__("torch")
    func = load_train_fn(ref)
    try:
        params = [p for p in inspect.signature(func).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
        one_arg = len(params) == 1 and params[0].kind != inspect.Parameter.VAR_POSITIONAL
    except (TypeError, ValueError):
        one_arg = False
    try:
        with torch.enable_grad():
            out = func(model) if one_arg else func(model, ctx)
    except Exception as exc:  # noqa: BLE001 - user code
        raise ConfigError(f"--finetune {ref} failed: {type(exc).__name__}: {exc}") from exc
    if out is None:
        out = model
    if not isinstance(out, torch.nn.Module):
        raise ConfigError(f"--finetune {ref} must return the trained torch.nn.Module (or None), got "
                          f"{type(out).__name__}")
    return out.eval()
