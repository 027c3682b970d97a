"""The accuracy gate skips an arm move the plain build's int8 ladder already built and scored."""

from __future__ import annotations

from edgec.targets.tflite import TFLiteTarget


def _manifest(rungs):
    return {"target_info": {"quantization": {"fallback": {"chosen": "16x8", "rungs": rungs}}}}


def test_a_move_the_ladder_scored_is_named_and_others_are_not():
    target = TFLiteTarget()
    m = _manifest([{"rung": "full-integer", "worst_cosine": 0.9}, {"rung": "float-ops 8", "worst_cosine": 0.93},
                   {"rung": "float-ops 32", "error": "LiteRT aborts", "worst_cosine": None},
                   {"rung": "16x8", "worst_cosine": 0.982}])
    assert "float-ops 8 rung (worst cosine 0.93" in target.move_scored({"float_ops": 8}, m)
    assert "16x8" in target.move_scored({"activations": "int16"}, m)
    assert target.move_scored({"float_ops": 2}, m) is None  # a rung the ladder never built
    assert target.move_scored({"float_ops": 32}, m) is None  # built but not scored: the move may still run
    assert target.move_scored({"activations": "int16"}, {"target_info": {"quantization": {}}}) is None  # no ladder
    assert all(target.move_scored(mv, m) is None for mv in ({"float_ops": 8, "activations": "int16"}, {}))


def test_float_prefix_moves_come_last_cheapest_first_and_are_skipped_when_the_ladder_scored_them():
    moves = TFLiteTarget().gate_moves
    shares = [m["float_prefix"] for m in moves if "float_prefix" in m]
    assert shares and shares == sorted(shares) and all(0 < s < 1 for s in shares)
    assert all("float_prefix" in m for m in moves[-len(shares):])  # after 16x8 and the debugger's float ops
    m = _manifest([{"rung": "full-integer", "worst_cosine": 0.9}, {"rung": "16x8", "worst_cosine": 0.95}])
    assert all(TFLiteTarget().move_scored({"float_prefix": s}, m) is None for s in shares)  # the ladder stopped
    m = _manifest([{"rung": f"float-prefix {s:g}", "worst_cosine": 0.97} for s in shares])
    assert all(f"float-prefix {s:g} rung" in TFLiteTarget().move_scored({"float_prefix": s}, m) for s in shares)
