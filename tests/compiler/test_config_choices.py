"""Choices come from one place (the registries and config constants), and messages say what the checks accept."""

from __future__ import annotations

import pytest

from edgec.errors import ConfigError


def test_cli_choices_come_from_the_registries(cli):
    from edgec.calibration.observers import registered_observers
    from edgec.compiler.config import CALIB_METHOD_CHOICES, INT4_GROUP_SIZES

    assert CALIB_METHOD_CHOICES == (*registered_observers(), "auto")
    out = cli("build", "--help").out
    assert "[" + "|".join(CALIB_METHOD_CHOICES) + "]" in out
    assert "[" + "|".join(str(g) for g in INT4_GROUP_SIZES) + "]" in out


def test_int4_messages_match_their_checks():
    from edgec.compiler.int4 import Int4Quantizer

    with pytest.raises(ConfigError, match=r"--group-size 8: expected 16, 32, 64, 128 or 256"):
        Int4Quantizer(None, None, group_size=8)
    with pytest.raises(ConfigError, match=r"--int4-method nope: expected rtn, gptq or awq"):
        Int4Quantizer(None, None, method="nope")
