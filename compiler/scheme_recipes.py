"""Per-model variants of a target's `QuantScheme`: the deep-residual and transformer recipes.

A target names, as data, the fields its scheme replaces for models with a deep residual stream
(`QuantScheme.deep_residual_overrides`) or self-attention blocks (`QuantScheme.transformer_overrides`);
these functions detect such models and return the replaced scheme with the manifest's pass entry.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgec.compiler.model import ModelHandle
    from edgec.targets.base import QuantScheme


def deep_residual_scheme(scheme: "QuantScheme", handle: "ModelHandle") -> tuple["QuantScheme", dict | None]:
    """``scheme`` with its ``deep_residual_overrides`` when the model's residual stream is deep, and the pass entry."""
    if not scheme.deep_residual_adds or handle.proto is None:
        return scheme, None
    from edgec.compiler.qdq_graph import conv_residual_adds

    count = conv_residual_adds(handle.proto)
    if count < scheme.deep_residual_adds:
        return scheme, None
    overrides = dict(scheme.deep_residual_overrides)
    return dataclasses.replace(scheme, **overrides), {"name": "deep-residual-recipe",
                                                     "config": {"residual_adds": count, **overrides}}


def transformer_scheme(scheme: "QuantScheme", handle: "ModelHandle") -> tuple["QuantScheme", dict | None]:
    """``scheme`` with its ``transformer_overrides`` when the model has self-attention blocks, and the pass entry."""
    if not scheme.transformer_overrides or handle.proto is None:
        return scheme, None
    from edgec.compiler.qdq_graph import attention_blocks

    count = attention_blocks(handle.proto)
    if not count:
        return scheme, None
    overrides = dict(scheme.transformer_overrides)
    shown = {k: sorted(v) if isinstance(v, frozenset) else v for k, v in overrides.items()}
    return dataclasses.replace(scheme, **overrides), {"name": "transformer-recipe",
                                                     "config": {"attention_blocks": count, **shown}}
