"""Keep third-party chatter (logging, warnings) off the terminal unless ``--debug`` is given.

edgec's contract is one ``error: ...`` line on failure; torch, TensorFlow and friends log
tracebacks and warnings on their own while loading or converting. Stdlib only: the CLI
imports this module.
"""

from __future__ import annotations

import contextlib
import logging
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level, propagate, disabled in saved:
            lg.setLevel(level)
            lg.propagate = propagate
            lg.disabled = disabled
