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
