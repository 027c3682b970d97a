"""Shipped trained weights for the small models the tests train.

Training results depend on the CPU (AVX2, AVX-512 and AMX kernels sum in different orders),
so a test that trained its model at test time could pass on one machine and fail on another.
The tests load the weights committed in ``tests/data/weights/`` instead; the training code
stays next to each model and runs only when its file is missing (delete the file to
retrain it, then commit the new one).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent / "data" / "weights"


def load_or_train(name: str, module, train: Callable[[object], None]):
    """``module`` with the shipped weights ``name``, or trained by ``train(module)`` and saved there.

    Args:
        name: file stem in ``tests/data/weights/``.
        module: a freshly constructed ``torch.nn.Module`` of the right architecture.
        train: trains ``module`` in place; called only when the weights file is missing.

    Returns:
        ``module`` in eval mode.
    """
    from safetensors.torch import load_file, save_file

    path = WEIGHTS / f"{name}.safetensors"
    if path.is_file():
        module.load_state_dict(load_file(str(path)))
        return module.eval()
    train(module)
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp))
    os.replace(tmp, path)
    return module.eval()
