"""Keep third-party chatter (logging, warnings) off the terminal unless ``--debug`` is given.

edgec's contract is one ``error: ...`` line on failure; torch, TensorFlow and friends log
tracebacks and warnings on their own while loading or converting. Stdlib only: the CLI
imports this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from typing import Iterator

# Set by the CLI from ``--debug``; one mutable dict so every importer sees the same flag.
DEBUG = {"on": False}

THIRD_PARTY_LOGGERS = ("torch", "torch._export", "torch.export", "torch.fx", "torch._dynamo", "torch.onnx",
                       "onnxscript", "tensorflow", "absl", "transformers", "nncf", "openvino")


@contextlib.contextmanager
def quiet_third_party() -> Iterator[None]:
    """Silence the loggers and warnings of the libraries edgec drives (all of them with ``--debug``)."""
    if DEBUG["on"]:
        yield
        return
    loggers = [logging.getLogger(name) for name in THIRD_PARTY_LOGGERS]
    saved = [(lg, lg.level, lg.propagate, lg.disabled) for lg in loggers]
    for lg in loggers:
        # A level on each named logger (not ``disabled``): children without their own level inherit it.
        lg.setLevel(logging.CRITICAL + 1)
    bars_were_on = _hf_progress_bars(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level, propagate, disabled in saved:
            lg.setLevel(level)
            lg.propagate = propagate
            lg.disabled = disabled
        if bars_were_on:
            _hf_progress_bars(True)


def _hf_progress_bars(on: bool) -> bool:
    """Turn transformers' and huggingface_hub's tqdm bars ("Loading weights ...") on or off; were they on?

    They write to stderr around the one error line. The environment variable covers a first
    import inside the quiet block; the functions cover modules imported before it.
    """
    if not on:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    was_on = False
    tlog = sys.modules.get("transformers.utils.logging")
    if tlog is not None:
        was_on = tlog.is_progress_bar_enabled()
        (tlog.enable_progress_bar if on else tlog.disable_progress_bar)()
    hub = sys.modules.get("huggingface_hub.utils")
    if hub is not None and hasattr(hub, "are_progress_bars_disabled"):
        was_on = was_on or not hub.are_progress_bars_disabled()
        (hub.enable_progress_bars if on else hub.disable_progress_bars)()
    return was_on
