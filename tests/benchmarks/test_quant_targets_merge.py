"""benchmarks/quant_targets.py --merge: later sessions' tagged files win over earlier ones."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def test_merge_order_puts_two_digit_sessions_after_one_digit_ones():
    from quant_targets import merge_order

    names = ["quant_targets_s12-gate-arm-ppocr.json", "quant_targets_s8-armppocr.json",
             "quant_targets_s11-gate-intel-ppocr.json", "quant_targets_s7-gatejet.json",
             "quant_targets_int8rnd.json", "quant_targets_intelgate.json", "quant_targets_arm_a.json"]
    assert sorted(names, key=merge_order) == [
        "quant_targets_arm_a.json", "quant_targets_int8rnd.json", "quant_targets_intelgate.json",
        "quant_targets_s7-gatejet.json", "quant_targets_s8-armppocr.json",
        "quant_targets_s11-gate-intel-ppocr.json", "quant_targets_s12-gate-arm-ppocr.json"]
