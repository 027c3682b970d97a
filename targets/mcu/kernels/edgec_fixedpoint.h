/* Fixed-point helpers shared by the edgec kernels (gemmlowp/TFLite rounding). */
#ifndef EDGEC_FIXEDPOINT_H
#define EDGEC_FIXEDPOINT_H

#include <stdint.h>

#define EDGEC_INT32_MAX ((int32_t)0x7fffffff)
#define EDGEC_INT32_MIN ((int32_t)(-0x7fffffff - 1))

static inline int32_t edgec_clamp(int32_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/* SaturatingRoundingDoublingHighMul: round(a * b / 2^31), saturating the one overflow. */
static inline int32_t edgec_srdhm(int32_t a, int32_t b) {
    int64_t ab, v;
    if (a == b && a == EDGEC_INT32_MIN) return EDGEC_INT32_MAX;
    ab = (int64_t)a * (int64_t)b;
    v = ab + (ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30)));
    /* Division by 2^31 truncating toward zero, without a 64-bit divide. */
    return (int32_t)(v >= 0 ? (v >> 31) : -((-v) >> 31));
}

/* RoundingDivideByPOT: x / 2^e rounded to nearest, ties away from zero. */
static inline int32_t edgec_rdbpot(int32_t x, int32_t e) {
    int32_t mask, rem, thr;
    if (e <= 0) return x;
    /* |x| / 2^e < 1/2 for e >= 32 (Softmax over >= 512 values): 0, without shifting by 32. */
    if (e >= 32) return 0;
    mask = (int32_t)(((uint32_t)1 << e) - 1u);
    rem = x & mask;
    thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > thr ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier: x * m * 2^(shift - 31) with gemmlowp's two rounding
 * steps, as TFLite's int8 reference kernels (conv, depthwise, add, mul, mean, requantize).
 * Written for few instructions, equal to edgec_rdbpot(edgec_srdhm(x << left, m), right)
 * for every m >= 0 (quantize_multiplier never makes a negative one):
 *  - SRDHM's nudge plus truncating division is (x * m + 2^30) >> 31, floor shift;
 *  - RDBPOT (ties away from zero) is round-half-up of (r - [r < 0]) / 2^e, taken as
 *    ((v >> (e - 1)) + 1) >> 1 so that nothing overflows. */
static inline int32_t edgec_mbqm(int32_t x, int32_t m, int32_t shift) {
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int64_t ab = (int64_t)(int32_t)((uint32_t)x << left) * (int64_t)m;
    int32_t r = (int32_t)((ab + ((int64_t)1 << 30)) >> 31);
    if (right > 0) r = (((r + (r >> 31)) >> (right - 1)) + 1) >> 1;
    return r;
}

/* The same product with one rounding step (round half up), as LiteRT's FullyConnected
 * int8 kernel computes it (measured against the BUILTIN_REF interpreter). */
static inline int32_t edgec_mbqm_single(int32_t x, int32_t m, int32_t shift) {
    const int32_t total = 31 - shift;
    const int64_t prod = (int64_t)x * (int64_t)m + ((int64_t)1 << (total - 1));
    return (int32_t)(prod >> total);
}

/* SaturatingRoundingMultiplyByPOT for a positive exponent: saturating x * 2^e. */
static inline int32_t edgec_sat_shl(int32_t x, int32_t e) {
    int32_t thr = (int32_t)(((uint32_t)1 << (31 - e)) - 1u);
    if (x > thr) return EDGEC_INT32_MAX;
    if (x < -thr) return EDGEC_INT32_MIN;
    return x * ((int32_t)1 << e);
}

#endif
