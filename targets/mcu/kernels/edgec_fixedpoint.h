/* Fixed-point helpers shared by the edgec kernels (gemmlowp/TFLite rounding). */
#ifndef EDGEC_FIXEDPOINT_H
#define EDGEC_FIXEDPOINT_H

#include <stdint.h>

#include "edgec_config.h"

#define EDGEC_INT32_MAX ((int32_t)0x7fffffff)
#define EDGEC_INT32_MIN ((int32_t)(-0x7fffffff - 1))

/* Kernels whose time is small next to the convolutions' (softmax, pooling, the layer
 * loop): GCC and Clang optimize cold functions for size, so an -O2 build spends its bytes
 * on the hot loops only. */
#if defined(__GNUC__)
#define EDGEC_COLD __attribute__((cold))
#else
#define EDGEC_COLD
#endif

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

#if defined(__ARM_FEATURE_MVE)
#include <arm_mve.h>
/* edgec_mbqm on 4 lanes (Helium): VQRDMULH is SaturatingRoundingDoublingHighMul; VRSHL
 * rounds ties up where RoundingDivideByPOT rounds them away from zero, so negative
 * values lose one first (only where a right shift follows). */
static inline int32x4_t edgec_mbqm_mve(int32x4_t x, int32x4_t m, int32x4_t shift) {
    const int32x4_t zero = vdupq_n_s32(0);
    const int32x4_t right = vminq_s32(shift, zero); /* -(right shift), <= 0 */
    x = vqrdmulhq_s32(vshlq_s32(x, vmaxq_s32(shift, zero)), m);
    return vrshlq_s32(vaddq_s32(x, vshrq_n_s32(vandq_s32(x, right), 31)), right);
}
#endif

/* The same product with one rounding step (round half up), as LiteRT's FullyConnected
 * int8 kernel computes it (measured against the BUILTIN_REF interpreter). */
static inline int32_t edgec_mbqm_single(int32_t x, int32_t m, int32_t shift) {
    const int32_t total = 31 - shift;
    if (total >= 32) {
        /* Only the high word survives the shift: one SMLAL with the rounding constant. */
        const uint32_t round_lo = total == 32 ? 0x80000000u : 0u;
        const int32_t round_hi = total > 32 ? (int32_t)1 << (total - 33) : 0;
        const int64_t prod = (int64_t)x * (int64_t)m + (int64_t)(((uint64_t)(uint32_t)round_hi << 32) | round_lo);
        return (int32_t)(prod >> 32) >> (total - 32);
    }
    {
        const int64_t prod = (int64_t)x * (int64_t)m + ((int64_t)1 << (total - 1));
        return (int32_t)(prod >> total);
    }
}

/* A convolution's (conv, depthwise, grouped) requantization: LiteRT's two roundings, or,
 * for a model imported from Q/DQ ONNX (EDGEC_CONV_SINGLE_ROUNDING), one rounding as the
 * source's QuantizeLinear has it (and LiteRT built with TFLITE_SINGLE_ROUNDING). The second
 * rounding step moves up to 2^-right LSB and shifts outputs by one where a value lies that
 * close to .5; a deep int8 detector (BlazeFace) amplifies those into a lost output. */
static inline int32_t edgec_mbqm_conv(int32_t x, int32_t m, int32_t shift) {
#if EDGEC_CONV_SINGLE_ROUNDING
    return edgec_mbqm_single(x, m, shift);
#else
    return edgec_mbqm(x, m, shift);
#endif
}

/* A requantization of int8 data (Requantize, a Concat input whose scale is not the
 * output's): LiteRT's QUANTIZE arithmetic (two roundings), or, in a Q/DQ ONNX model, where
 * it is DequantizeLinear -> QuantizeLinear, one rounding. With a large right shift the first
 * rounding lands on a whole number: BlazeFace-back's classifier Concat (scale ratio 0.037)
 * made -0.481 LSB into -1 on 16 of 896 outputs. */
static inline int32_t edgec_mbqm_requant(int32_t x, int32_t m, int32_t shift) {
    return edgec_mbqm_conv(x, m, shift);
}

/* SaturatingRoundingMultiplyByPOT for a positive exponent: saturating x * 2^e. */
static inline int32_t edgec_sat_shl(int32_t x, int32_t e) {
    int32_t thr = (int32_t)(((uint32_t)1 << (31 - e)) - 1u);
    if (x > thr) return EDGEC_INT32_MAX;
    if (x < -thr) return EDGEC_INT32_MIN;
    return x * ((int32_t)1 << e);
}

#endif
