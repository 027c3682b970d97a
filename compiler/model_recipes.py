"""A model's recipes: the target's `QuantScheme` with the overrides the model's structure calls for.

A deep residual stream (`QuantScheme.deep_residual_adds`) and self-attention blocks
(`QuantScheme.transformer_overrides`) replace some of the scheme's fields; the calibration method
a build uses without ``--calib-method`` is the one the recipes leave (`calib_method`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from edgec.compiler.config import CHOOSING_CALIB_METHODS

if TYPE_CHECKING:
    from edgec.compiler.config import BuildConfig
    from edgec.compiler.model import ModelHandle
    from edgec.targets.base import QuantScheme


def collected_with(method: str) -> str:
    """The observer whose ranges a build with ``method`` starts from (min/max for the choosing ones)."""
    return "minmax" if method in CHOOSING_CALIB_METHODS else method


def model_scheme(scheme: "QuantScheme", handle: "ModelHandle") -> "QuantScheme":
    """``scheme`` with the model's recipes applied (`deep_residual_scheme`, `transformer_scheme`).

    Its ``calib_method`` is the build's default for this model: a recipe's overrides may set it
    (a deep residual stream may want other ranges than the target's other models). A recipe applied only
    below a measured cosine (``deep_residual_cosine``) counts as applied here; `Int8Quantizer.create`
    collects the ranges anew when the measurement skips it.
    """
    return transformer_scheme(deep_residual_scheme(scheme, handle)[0], handle)[0]


def calib_method(config: "BuildConfig", scheme: "QuantScheme | None", handle: "ModelHandle") -> str:
    """The calibration method a build uses: ``--calib-method``, else its model's scheme's (`model_scheme`)."""
    if config.int8.calib_method is not None:
        return config.int8.calib_method
    if scheme is None:
        return "minmax"
    return model_scheme(scheme, handle).calib_method


def deep_residual_scheme(scheme: "QuantScheme", handle: "ModelHandle") -> tuple["QuantScheme", dict | None]:
    """``scheme`` with its ``deep_residual_overrides`` when the model's residual stream is deep, and the pass entry."""
    if not scheme.deep_residual_adds or handle.proto is None:
        return scheme, None
    from edgec.compiler.qdq_graph import conv_residual_adds

    count = conv_residual_adds(handle.proto)
    if count < scheme.deep_residual_adds:
        return scheme, None
    overrides = dict(scheme.deep_residual_overrides)
    shown = {k: [c[0] for c in v] if k == "calib_candidates" else v for k, v in overrides.items()}  # labels
    return dataclasses.replace(scheme, **overrides), {"name": "deep-residual-recipe",
                                                     "config": {"residual_adds": count, **shown}}


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
