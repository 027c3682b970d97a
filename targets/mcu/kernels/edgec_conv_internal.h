/* Internals shared by conv.c and dwconv.c (not part of the kernel API): the instruction
 * set the ACLE feature macros select, and the requantization helpers. */
#ifndef EDGEC_CONV_INTERNAL_H
#define EDGEC_CONV_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "edgec_config.h"
#include "edgec_kernels.h"
#include "edgec_fixedpoint.h"

#if defined(__ARM_FEATURE_MVE)
#define EDGEC_MVE 1
#elif defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#define EDGEC_DSP 1
#if defined(__OPTIMIZE__) || !defined(__ARM_FP)
/* The int16-column conv loop (assembly, 13 registers); GCC finds no 13 at -O0 with an FPU. */
#define EDGEC_DSP_COLS16 1
#endif
#endif

/* The kernels' instruction set (ops/conv.py's kernel_isa) and the one the bundle's weight
 * layouts and scratch sizes were made for (edgec_config.h; -1 when unknown). When they are
 * the same, every layer takes this build's vector loops, and the loops for other layouts
 * (a bundle built on the host for checking) are left out. */
#if defined(EDGEC_MVE)
#define EDGEC_ISA 2
#elif defined(EDGEC_DSP)
#define EDGEC_ISA 1
#else
#define EDGEC_ISA 0
#endif
#ifndef EDGEC_BUNDLE_ISA
#define EDGEC_BUNDLE_ISA (-1)
#endif
#define EDGEC_OWN_LAYOUT (EDGEC_BUNDLE_ISA == EDGEC_ISA)
/* Shapes some layer has (edgec_config.h; a bundle's own config may rule them out): a
 * chunked depthwise layer ending in a part chunk, a regular conv whose output channels
 * are not a multiple of 4, a dilated regular conv. */
#ifndef EDGEC_DW_TAIL
#define EDGEC_DW_TAIL 1
#endif
#ifndef EDGEC_CONV_TAIL
#define EDGEC_CONV_TAIL 1
#endif
#ifndef EDGEC_CONV_DILATED
#define EDGEC_CONV_DILATED 1
#endif

/* The SIMD32 requantization variants of this build: those the model uses (edgec_config.h).
 * Optimizing for size, conv keeps rq_fast 2 and the general one (only rq_fast 2 when every
 * layer has it); depthwise one: rq_fast 2 when every layer has it, else the general one. */
#if defined(__OPTIMIZE_SIZE__)
#define EDGEC_DSP_FAST2 1
#define EDGEC_DSP_FAST1 0
#define EDGEC_DSP_GENERAL (EDGEC_RQ_FAST1 || EDGEC_RQ_GENERAL)
#define EDGEC_DSP_DW_FAST2 (!EDGEC_DSP_GENERAL)
#else
#define EDGEC_DSP_FAST2 1
#define EDGEC_DSP_FAST1 EDGEC_RQ_FAST1
#define EDGEC_DSP_GENERAL EDGEC_RQ_GENERAL
#define EDGEC_DSP_DW_FAST2 1
#endif
/* Whether a layer's rq_fast has its own SIMD32 variant (the general one takes any). */
#define EDGEC_DSP_HAS_VARIANT(fast) \
    ((EDGEC_DSP_FAST2 && (fast) == 2) || EDGEC_DSP_GENERAL || (EDGEC_DSP_FAST1 && (fast) == 1))

/* Requantization of one layer's outputs. */
typedef struct {
    const int32_t *bias, *mult, *shift;
    int32_t per_channel, single_round, out_offset, act_min, act_max;
    int32_t fast; /* edgec_conv_params.rq_fast */
} edgec_rq;

static inline int8_t rq_one(const edgec_rq *q, int32_t acc, int32_t c) {
    const int32_t i = c & -q->per_channel; /* c, or 0 for one per-tensor multiplier */
    /* LiteRT's FullyConnected rounds once, its Conv/DepthwiseConv twice. The callers pass
     * constant edgec_rq fields where they can, so this folds to one path. */
    acc = q->single_round ? edgec_mbqm_single(acc, q->mult[i], q->shift[i]) : edgec_mbqm_conv(acc, q->mult[i], q->shift[i]);
    return (int8_t)edgec_clamp(acc + q->out_offset, q->act_min, q->act_max);
}

/* rq_one for a convolution (two roundings, per channel), out of line for the paths that
 * are not hot: one copy of the long general requantization per file. */
static __attribute__((noinline, unused)) int8_t rq_conv(const edgec_rq *q, int32_t acc, int32_t c) {
    acc = edgec_mbqm_conv(acc, q->mult[c], q->shift[c]);
    return (int8_t)edgec_clamp(acc + q->out_offset, q->act_min, q->act_max);
}

#if !defined(EDGEC_MVE)
static inline int32_t dot_s8(const int8_t *a, const int8_t *b, int32_t k, int32_t acc) {
    int32_t i;
    for (i = 0; i < k; ++i) acc += (int32_t)a[i] * (int32_t)b[i];
    return acc;
}
#endif

#if defined(EDGEC_DSP)
static inline uint32_t ld32(const int8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4); /* one LDR: ARMv7E-M/ARMv8-M main allow unaligned word loads */
    return v;
}
/* Bytes 0 and 2 / 1 and 3 sign-extended into two int16 halves. Both operands of every
 * SMLAD go through the same pair of extractions, so the byte order never matters. */
static inline int32_t sx02(uint32_t v) { return __sxtb16((int32_t)v); }
static inline int32_t sx13(uint32_t v) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}
#endif

#if defined(EDGEC_DSP)
/* edgec_mbqm + offset + clamp for a layer with rq_fast (every shift <= -1). SRDHM(x, m) is
 * (2x * m + 2^31) >> 32, one SMMULR, while 2x fits; a saturated 2x (|x| >= 2^30) and the
 * exact product both leave |SRDHM| >= 2^29, which every right shift the build allows (the
 * accumulator bound or right <= 21) still clamps to the same int8. RoundingDivideByPOT
 * then is ((r - [r < 0]) >> (right - 1) + 1) >> 1, the offset folded in as 2 * offset. */
static inline int32_t rq_dsp(int32_t acc, int32_t m, int32_t shift, int32_t off2p1, int32_t lo, int32_t hi,
                             const int fast) {
    int32_t r;
#if EDGEC_CONV_SINGLE_ROUNDING
    r = edgec_mbqm_single(acc, m, shift) + (off2p1 >> 1);
#else
    acc = __qadd(acc, acc);
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(acc), "r"(m));
    r = (((r + (r >> 31)) >> ~shift) + off2p1) >> 1;
#endif
    if (fast == 2) return __ssat(r, 8); /* activation range [-128, 127] */
    r = r < lo ? lo : r;
    return r > hi ? hi : r; /* the caller's byte store narrows it */
}
#endif

#if defined(EDGEC_MVE)
static inline int32x4_t rq_mve(int32x4_t acc, int32x4_t mult, int32x4_t shift) {
#if EDGEC_CONV_SINGLE_ROUNDING
    int32_t a[4], m[4], e[4], i;
    vst1q_s32(a, acc), vst1q_s32(m, mult), vst1q_s32(e, shift);
    for (i = 0; i < 4; ++i) a[i] = edgec_mbqm_single(a[i], m[i], e[i]);
    return vld1q_s32(a);
#else
    return edgec_mbqm_mve(acc, mult, shift);
#endif
}

/* Requantize 4 accumulators (bias included) of channels c..c+3 and store them. */
static inline void rq_store4(const edgec_rq *q, int32x4_t acc, int32_t c, int8_t *out) {
    if (q->single_round || !q->per_channel) {
        int32_t a[4], i;
        vst1q_s32(a, acc);
        for (i = 0; i < 4; ++i) out[i] = rq_one(q, a[i], c + i);
        return;
    }
    acc = rq_mve(acc, vld1q_s32(q->mult + c), vld1q_s32(q->shift + c));
    acc = vaddq_n_s32(acc, q->out_offset);
    acc = vmaxq_s32(acc, vdupq_n_s32(q->act_min));
    acc = vminq_s32(acc, vdupq_n_s32(q->act_max));
    vstrbq_s32(out, acc);
}

static inline int32_t mve_dot(const int8_t *a, const int8_t *b, int32_t k, int32_t acc) {
    for (; k >= 16; k -= 16, a += 16, b += 16) acc = vmladavaq_s8(acc, vldrbq_s8(a), vldrbq_s8(b));
    if (k > 0) {
        const mve_pred16_t p = vctp8q((uint32_t)k);
        acc = vmladavaq_p_s8(acc, vldrbq_z_s8(a, p), vldrbq_z_s8(b, p), p);
    }
    return acc;
}
#endif

#endif
