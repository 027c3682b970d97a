/* int16 (16x8) kernels: conv, depthwise, HardSwish, Add, int8 <-> int16 requantization.
 * Numerics of TFLite's int16 reference kernels (LiteRT BUILTIN_REF in 16x8 mode): exact
 * int64 sums of int16 x int8 products plus an int64 bias, requantized with the 64-bit
 * MultiplyByQuantizedMultiplier (the multiplier rounded to 16 bits, one rounding). Portable
 * C, with SMLAD dot products on SIMD32 CPUs (the same int32 sums); an int8-only build leaves
 * this file out (and EDGEC_WITH_S16 0 empties it). */
#include <string.h>

#include "edgec_s16.h"
#include "edgec_fixedpoint.h" /* includes edgec_config.h */

#if defined(__ARM_FEATURE_DSP) && !defined(__ARM_FEATURE_MVE)
#include <arm_acle.h>
#endif

#if EDGEC_WITH_S16

/* MultiplyByQuantizedMultiplier for an int64 accumulator (|x| < 2^47), as TFLite's and
 * CMSIS-NN's s16 kernels: the multiplier reduced to 16 bits, then one rounding shift. */
static inline int32_t edgec_mbqm64(int64_t x, int32_t m, int32_t shift) {
    const int64_t reduced = m < 0x7FFF0000 ? (int64_t)((m + (1 << 15)) >> 16) : 0x7FFF;
    const int32_t total = 15 - shift;
    return (int32_t)((x * reduced + ((int64_t)1 << (total - 1))) >> total);
}

static inline int16_t edgec_sat16(int32_t v, int32_t lo, int32_t hi) {
    return (int16_t)edgec_clamp(v, lo, hi);
}

/* sum x[c] * w[c] over n <= 128 channels (|x * w| <= 2^22: exact in int32). SIMD32 CPUs
 * (M4/M7/M33) take 4 channels per 2 SMLADs: two int16 pairs rearranged to match the
 * SXTB16-extracted weight bytes 0, 2 and 1, 3. */
static inline int32_t edgec_dot_s16_s8(const int16_t *x, const int8_t *w, int32_t n) {
    int32_t acc = 0, c = 0;
#if defined(__ARM_FEATURE_DSP) && !defined(__ARM_FEATURE_MVE)
    for (; c + 4 <= n; c += 4) {
        uint32_t wv, x01, x23;
        int32_t w13;
        memcpy(&wv, w + c, 4); /* one LDR each: unaligned word loads are allowed */
        memcpy(&x01, x + c, 4);
        memcpy(&x23, x + c + 2, 4);
        __asm__("sxtb16 %0, %1, ror #8" : "=r"(w13) : "r"(wv));
        acc = __smlad((int32_t)((x01 & 0xFFFFu) | (x23 << 16)), __sxtb16((int32_t)wv), acc);
        acc = __smlad((int32_t)((x23 & 0xFFFF0000u) | (x01 >> 16)), w13, acc);
    }
#endif
    for (; c < n; ++c) acc += (int32_t)x[c] * w[c];
    return acc;
}

/* A receptive field of at most this many int16 values is gathered into a stack column
 * (zeros for the padding) and each output channel is then one dot product over it. */
#define EDGEC_S16_COL 256

void edgec_conv_s16(const edgec_conv_params *p, const int16_t *in, const int8_t *w, const int64_t *bias,
                    const int32_t *mult, const int32_t *shift, int16_t *out) {
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c, out_c = p->out_c;
    const int32_t k_h = p->k_h, k_w = p->k_w, k = k_h * k_w * in_c;
    int16_t col[EDGEC_S16_COL];
    int32_t b, oy, ox, oc, ky, kx, c;
    for (b = 0; b < p->batch; ++b)
        for (oy = 0; oy < p->out_h; ++oy)
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
                if (k <= EDGEC_S16_COL) {
                    int16_t *dst = col;
                    for (ky = 0; ky < k_h; ++ky) {
                        const int32_t iy = y0 + ky * p->dil_h;
                        for (kx = 0; kx < k_w; ++kx, dst += in_c) {
                            const int32_t ix = x0 + kx * p->dil_w;
                            if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w)
                                memset(dst, 0, (size_t)in_c * sizeof(int16_t)); /* zero point 0 */
                            else
                                memcpy(dst, in + ((b * in_h + iy) * in_w + ix) * in_c, (size_t)in_c * sizeof(int16_t));
                        }
                    }
                    for (oc = 0; oc < out_c; ++oc) {
                        const int8_t *f = w + oc * k;
                        int64_t acc = bias[oc];
                        for (c = 0; c < k; c += 128) acc += edgec_dot_s16_s8(col + c, f + c, k - c < 128 ? k - c : 128);
                        *out++ = edgec_sat16(edgec_mbqm64(acc, mult[oc], shift[oc]), p->act_min, p->act_max);
                    }
                    continue;
                }
                for (oc = 0; oc < out_c; ++oc) {
                    int64_t acc = 0;
                    for (ky = 0; ky < k_h; ++ky) {
                        const int32_t iy = y0 + ky * p->dil_h;
                        if (iy < 0 || iy >= in_h) continue; /* zero point 0: padding adds nothing */
                        for (kx = 0; kx < k_w; ++kx) {
                            const int32_t ix = x0 + kx * p->dil_w;
                            const int16_t *x;
                            const int8_t *f;
                            if (ix < 0 || ix >= in_w) continue;
                            x = in + ((b * in_h + iy) * in_w + ix) * in_c;
                            f = w + ((oc * k_h + ky) * k_w + kx) * in_c;
                            for (c = 0; c < in_c; c += 128)
                                acc += edgec_dot_s16_s8(x + c, f + c, in_c - c < 128 ? in_c - c : 128);
                        }
                    }
                    acc += bias[oc];
                    *out++ = edgec_sat16(edgec_mbqm64(acc, mult[oc], shift[oc]), p->act_min, p->act_max);
                }
            }
}

/* Channels per pass of the depthwise loop (int32 sums of at most 511 taps are exact). */
#define EDGEC_S16_DW_CHUNK 32

void edgec_dwconv_s16(const edgec_conv_params *p, const int16_t *in, const int8_t *w, const int64_t *bias,
                      const int32_t *mult, const int32_t *shift, int16_t *out) {
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c, out_c = p->out_c, dm = p->depth_mult;
    int32_t b, oy, ox, ic, m, ky, kx;
    for (b = 0; b < p->batch; ++b)
        for (oy = 0; oy < p->out_h; ++oy)
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
                if (dm == 1 && p->k_h * p->k_w < 512) {
                    /* Channels innermost: contiguous input and weights, the bounds once per tap. */
                    int32_t acc[EDGEC_S16_DW_CHUNK], c0, c, n;
                    for (c0 = 0; c0 < in_c; c0 += EDGEC_S16_DW_CHUNK) {
                        n = in_c - c0 < EDGEC_S16_DW_CHUNK ? in_c - c0 : EDGEC_S16_DW_CHUNK;
                        for (c = 0; c < n; ++c) acc[c] = 0;
                        for (ky = 0; ky < p->k_h; ++ky) {
                            const int32_t iy = y0 + ky * p->dil_h;
                            if (iy < 0 || iy >= in_h) continue;
                            for (kx = 0; kx < p->k_w; ++kx) {
                                const int32_t ix = x0 + kx * p->dil_w;
                                const int16_t *x;
                                const int8_t *f;
                                if (ix < 0 || ix >= in_w) continue;
                                x = in + ((b * in_h + iy) * in_w + ix) * in_c + c0;
                                f = w + (ky * p->k_w + kx) * out_c + c0;
                                for (c = 0; c < n; ++c) acc[c] += (int32_t)x[c] * f[c];
                            }
                        }
                        for (c = 0; c < n; ++c)
                            *out++ = edgec_sat16(edgec_mbqm64(acc[c] + bias[c0 + c], mult[c0 + c], shift[c0 + c]),
                                                 p->act_min, p->act_max);
                    }
                    continue;
                }
                for (ic = 0; ic < in_c; ++ic)
                    for (m = 0; m < dm; ++m) {
                        const int32_t oc = ic * dm + m;
                        int64_t acc = bias[oc];
                        for (ky = 0; ky < p->k_h; ++ky) {
                            const int32_t iy = y0 + ky * p->dil_h;
                            if (iy < 0 || iy >= in_h) continue;
                            for (kx = 0; kx < p->k_w; ++kx) {
                                const int32_t ix = x0 + kx * p->dil_w;
                                if (ix < 0 || ix >= in_w) continue;
                                acc += (int32_t)in[((b * in_h + iy) * in_w + ix) * in_c + ic] *
                                       w[(ky * p->k_w + kx) * out_c + oc];
                            }
                        }
                        *out++ = edgec_sat16(edgec_mbqm64(acc, mult[oc], shift[oc]), p->act_min, p->act_max);
                    }
            }
}

void edgec_hardswish_s16(const edgec_hswish16_params *p, const int16_t *in, int16_t *out) {
    const int64_t gate_round = (int64_t)1 << (p->gate_shift - 1);
    const int32_t out_total = 31 - p->out_shift;
    const int64_t out_round = (int64_t)1 << (out_total - 1);
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int64_t x = in[i];
        /* relu6(x + 3) / 6 in Q30: x * s_in / 6 + 1/2, clamped to [0, 1]. */
        int64_t gate = ((x * p->gate_mult + gate_round) >> p->gate_shift) + ((int64_t)1 << 29);
        int64_t prod;
        gate = gate < 0 ? 0 : gate > ((int64_t)1 << 30) ? ((int64_t)1 << 30) : gate;
        prod = (x * gate + ((int64_t)1 << 14)) >> 15; /* x * gate in Q15: |prod| < 2^30 */
        out[i] = edgec_sat16((int32_t)((prod * p->out_mult + out_round) >> out_total), -32768, 32767);
    }
}

void edgec_add_s16(const edgec_add16_params *p, const int16_t *a, const int16_t *b, int16_t *out) {
    const int32_t left = p->left_shift;
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t x1 = edgec_mbqm((int32_t)a[i] * ((int32_t)1 << left), p->in1_mult, p->in1_shift);
        const int32_t x2 = edgec_mbqm((int32_t)b[i] * ((int32_t)1 << left), p->in2_mult, p->in2_shift);
        out[i] = edgec_sat16(edgec_mbqm(x1 + x2, p->out_mult, p->out_shift), p->act_min, p->act_max);
    }
}

/* The requantizations round as the int8 one does (edgec_mbqm_requant): LiteRT's QUANTIZE
 * for a .tflite, one rounding as QuantizeLinear for a Q/DQ ONNX model. */
void edgec_requant_s8_s16(const edgec_requant_params *p, const int8_t *in, int16_t *out) {
    int32_t i;
    for (i = 0; i < p->size; ++i)
        out[i] = edgec_sat16(edgec_mbqm_requant((int32_t)in[i] - p->in_zp, p->mult, p->shift) + p->out_zp,
                             p->act_min, p->act_max);
}

void edgec_requant_s16_s8(const edgec_requant_params *p, const int16_t *in, int8_t *out) {
    int32_t i;
    for (i = 0; i < p->size; ++i)
        out[i] = (int8_t)edgec_clamp(edgec_mbqm_requant((int32_t)in[i] - p->in_zp, p->mult, p->shift) + p->out_zp,
                                     p->act_min, p->act_max);
}

#endif
