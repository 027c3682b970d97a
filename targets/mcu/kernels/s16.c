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
 * CMSIS-NN's s16 kernels: the multiplier reduced to 16 bits (``reduced``, by the emitter),
 * then one rounding right shift by ``total``. An accumulator that fits 32 bits with a shift
 * of 16 to 46 (nearly all) is worked out in int32 halves: x * m = (x >> 16) * m * 2^16 +
 * (x & 0xFFFF) * m, each product under 2^31, floored by 2^16 and then by the rest of the
 * shift (the same floor: the same bits). */
static inline int32_t edgec_mbqm64(int64_t x, int32_t reduced, int32_t total) {
    if (x == (int32_t)x && (uint32_t)(total - 16) <= 30u) {
        const int32_t x32 = (int32_t)x;
        const uint32_t round_lo = total == 16 ? 1u << 15 : 0u; /* 2^(total - 1) = round_hi * 2^16 + round_lo */
        const int32_t round_hi = total == 16 ? 0 : (int32_t)1 << (total - 17);
        const int32_t low = (int32_t)((((uint32_t)x32 & 0xFFFFu) * (uint32_t)reduced + round_lo) >> 16);
        return ((x32 >> 16) * reduced + round_hi + low) >> (total - 16);
    }
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

/* Two output channels' dot products over the same n <= 128 inputs (weights w0, w1): the
 * inputs are loaded and paired once for both (the same int32 sums as edgec_dot_s16_s8). */
static inline void edgec_dot2_s16_s8(const int16_t *x, const int8_t *w0, const int8_t *w1, int32_t n,
                                     int32_t *acc0, int32_t *acc1) {
    int32_t a0 = 0, a1 = 0, c = 0;
#if defined(__ARM_FEATURE_DSP) && !defined(__ARM_FEATURE_MVE)
    for (; c + 4 <= n; c += 4) {
        uint32_t x01, x23, wv0, wv1;
        int32_t xa, xb, w13;
        memcpy(&x01, x + c, 4);
        memcpy(&x23, x + c + 2, 4);
        /* x0, x2 (weight bytes 0, 2) and x1, x3 (bytes 1, 3): PKHBT, PKHTB. */
        __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(xa) : "r"(x01), "r"(x23));
        __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(xb) : "r"(x23), "r"(x01));
        memcpy(&wv0, w0 + c, 4);
        memcpy(&wv1, w1 + c, 4);
        __asm__("sxtb16 %0, %1, ror #8" : "=r"(w13) : "r"(wv0));
        a0 = __smlad(xa, __sxtb16((int32_t)wv0), a0);
        a0 = __smlad(xb, w13, a0);
        __asm__("sxtb16 %0, %1, ror #8" : "=r"(w13) : "r"(wv1));
        a1 = __smlad(xa, __sxtb16((int32_t)wv1), a1);
        a1 = __smlad(xb, w13, a1);
    }
#endif
    for (; c < n; ++c) {
        a0 += (int32_t)x[c] * w0[c];
        a1 += (int32_t)x[c] * w1[c];
    }
    *acc0 = a0, *acc1 = a1;
}

/* A receptive field of at most this many int16 values is gathered into a stack column
 * (zeros for the padding) and each output channel is then one dot product over it. */
#define EDGEC_S16_COL 256

void edgec_conv_s16(const edgec_conv_params *p, const int16_t *in, const int8_t *w, const int64_t *bias,
                    const int32_t *mult, const int32_t *shift, int16_t *out) {
    const int32_t act_min = p->act_min, act_max = p->act_max; /* locals: the stores cannot reload them */
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
                    for (oc = 0; oc + 2 <= out_c; oc += 2) {
                        const int8_t *f = w + oc * k;
                        int64_t acc0 = bias[oc], acc1 = bias[oc + 1];
                        for (c = 0; c < k; c += 128) {
                            int32_t d0, d1;
                            edgec_dot2_s16_s8(col + c, f + c, f + k + c, k - c < 128 ? k - c : 128, &d0, &d1);
                            acc0 += d0, acc1 += d1;
                        }
                        *out++ = edgec_sat16(edgec_mbqm64(acc0, mult[oc], shift[oc]), act_min, act_max);
                        *out++ = edgec_sat16(edgec_mbqm64(acc1, mult[oc + 1], shift[oc + 1]), act_min, act_max);
                    }
                    if (oc < out_c) {
                        const int8_t *f = w + oc * k;
                        int64_t acc = bias[oc];
                        for (c = 0; c < k; c += 128) acc += edgec_dot_s16_s8(col + c, f + c, k - c < 128 ? k - c : 128);
                        *out++ = edgec_sat16(edgec_mbqm64(acc, mult[oc], shift[oc]), act_min, act_max);
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
                    *out++ = edgec_sat16(edgec_mbqm64(acc, mult[oc], shift[oc]), act_min, act_max);
                }
            }
}

/* The taps [*t0, *t1) of one axis whose input index start + t * dil lies in [0, n). */
static inline void edgec_taps(int32_t start, int32_t k, int32_t dil, int32_t n, int32_t *t0, int32_t *t1) {
    int32_t a = 0, b = k;
    while (a < b && start + a * dil < 0) ++a;
    while (b > a && start + (b - 1) * dil >= n) --b;
    *t0 = a, *t1 = b;
}

/* Four channels of one depthwise tap into four int32 sums (|x * w| <= 2^22: at most 511
 * taps are exact). SIMD32 CPUs: one word load per two int16 inputs and one per four weights,
 * SXTB16 splitting the weights into channels 0, 2 and 1, 3, and the halfword MACs SMLABB,
 * SMLATB, SMLABT, SMLATT (the same products and sums as the portable lines). */
static inline __attribute__((always_inline)) void edgec_dw_mac4(const int16_t *x, const int8_t *f, int32_t *a0,
                                                                  int32_t *a1, int32_t *a2, int32_t *a3) {
#if defined(__ARM_FEATURE_DSP) && !defined(__ARM_FEATURE_MVE)
    uint32_t x01, x23, wv;
    int32_t w13;
    memcpy(&x01, x, 4);
    memcpy(&x23, x + 2, 4);
    memcpy(&wv, f, 4);
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(w13) : "r"(wv));
    {
        const int32_t w02 = __sxtb16((int32_t)wv);
        *a0 = __smlabb((int32_t)x01, w02, *a0);
        *a1 = __smlatb((int32_t)x01, w13, *a1);
        *a2 = __smlabt((int32_t)x23, w02, *a2);
        *a3 = __smlatt((int32_t)x23, w13, *a3);
    }
#else
    *a0 += (int32_t)x[0] * f[0];
    *a1 += (int32_t)x[1] * f[1];
    *a2 += (int32_t)x[2] * f[2];
    *a3 += (int32_t)x[3] * f[3];
#endif
}

void edgec_dwconv_s16(const edgec_conv_params *p, const int16_t *in, const int8_t *w, const int64_t *bias,
                      const int32_t *mult, const int32_t *shift, int16_t *out) {
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c, out_c = p->out_c, dm = p->depth_mult;
    const int32_t act_min = p->act_min, act_max = p->act_max; /* locals: the stores cannot reload them */
    int32_t b, oy, ox, ic, m, ky, kx;
    for (b = 0; b < p->batch; ++b)
        for (oy = 0; oy < p->out_h; ++oy)
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
                if (dm == 1 && p->k_h * p->k_w < 512) {
                    /* Four channels at a time over the window's real taps, the sums in
                     * registers; channels innermost in memory (input and weights). */
                    const int32_t row = p->dil_h * in_w * in_c, col = p->dil_w * in_c;
                    const int32_t wrow = p->k_w * out_c, wcol = out_c;
                    int32_t ky0, ky1, kx0, kx1, c;
                    const int16_t *x00;
                    const int8_t *w00;
                    edgec_taps(y0, p->k_h, p->dil_h, in_h, &ky0, &ky1);
                    edgec_taps(x0, p->k_w, p->dil_w, in_w, &kx0, &kx1);
                    x00 = in + ((b * in_h + y0 + ky0 * p->dil_h) * in_w + x0 + kx0 * p->dil_w) * in_c;
                    w00 = w + ky0 * wrow + kx0 * wcol;
                    for (c = 0; c + 4 <= in_c; c += 4) {
                        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                        for (ky = ky0; ky < ky1; ++ky) {
                            const int16_t *x = x00 + (ky - ky0) * row + c;
                            const int8_t *f = w00 + (ky - ky0) * wrow + c;
                            for (kx = kx0; kx < kx1; ++kx, x += col, f += wcol) edgec_dw_mac4(x, f, &a0, &a1, &a2, &a3);
                        }
                        out[0] = edgec_sat16(edgec_mbqm64(a0 + bias[c], mult[c], shift[c]), act_min, act_max);
                        out[1] = edgec_sat16(edgec_mbqm64(a1 + bias[c + 1], mult[c + 1], shift[c + 1]), act_min, act_max);
                        out[2] = edgec_sat16(edgec_mbqm64(a2 + bias[c + 2], mult[c + 2], shift[c + 2]), act_min, act_max);
                        out[3] = edgec_sat16(edgec_mbqm64(a3 + bias[c + 3], mult[c + 3], shift[c + 3]), act_min, act_max);
                        out += 4;
                    }
                    for (; c < in_c; ++c) {
                        int32_t acc = 0;
                        for (ky = ky0; ky < ky1; ++ky) {
                            const int16_t *x = x00 + (ky - ky0) * row + c;
                            const int8_t *f = w00 + (ky - ky0) * wrow + c;
                            for (kx = kx0; kx < kx1; ++kx, x += col, f += wcol) acc += (int32_t)*x * *f;
                        }
                        *out++ = edgec_sat16(edgec_mbqm64(acc + bias[c], mult[c], shift[c]), act_min, act_max);
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
                        *out++ = edgec_sat16(edgec_mbqm64(acc, mult[oc], shift[oc]), act_min, act_max);
                    }
            }
}

/* One HardSwish value, all in int32 but the last multiply (edgec_s16.h gives the split of
 * the Q30 gate). ``q`` is a local copy of the parameters: the int16 stores cannot reload them. */
static inline __attribute__((always_inline)) int32_t edgec_hswish1(const edgec_hswish16_params *q, int32_t x,
                                                                   int64_t round, const int wide_shift) {
    int32_t gate, prod;
    int64_t v;
    if (x <= q->x_lo) {
        gate = 0;
    } else if (x >= q->x_hi) {
        gate = (int32_t)1 << 30;
    } else {
        const int32_t mid = x * q->gate_rh + q->round_h + ((x * q->gate_rl + q->round_l) >> 15);
        gate = x * q->gate_q + (mid >> q->gate_shift) + ((int32_t)1 << 29);
    }
    prod = x * (gate >> 15) + ((x * (gate & 0x7FFF) + (1 << 14)) >> 15); /* (x * gate) rounded to Q15 */
    v = (int64_t)prod * q->out_mult + round;
    /* A right shift of 32 or more: the high word alone (the same bits). */
    return wide_shift ? (int32_t)(v >> 32) >> (-1 - q->out_shift) : (int32_t)(v >> (31 - q->out_shift));
}

static inline __attribute__((always_inline)) void edgec_hswish_loop(const edgec_hswish16_params *p,
                                                                    const int16_t *in, int16_t *out,
                                                                    const int wide_shift) {
    const edgec_hswish16_params q = *p;
    const int64_t round = (int64_t)1 << (30 - q.out_shift);
    int32_t i = 0;
#if defined(__ARM_FEATURE_DSP) && !defined(__ARM_FEATURE_MVE)
    /* Two values per word: one load, one store (PKHBT), SSAT for the int16 clamp. */
    for (; i + 2 <= q.size; i += 2) {
        uint32_t xv;
        int32_t lo, hi;
        memcpy(&xv, in + i, 4);
        lo = __ssat(edgec_hswish1(&q, (int16_t)(xv & 0xFFFFu), round, wide_shift), 16);
        hi = __ssat(edgec_hswish1(&q, (int32_t)xv >> 16, round, wide_shift), 16);
        __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(xv) : "r"(lo), "r"(hi));
        memcpy(out + i, &xv, 4);
    }
#endif
    for (; i < q.size; ++i) out[i] = edgec_sat16(edgec_hswish1(&q, in[i], round, wide_shift), -32768, 32767);
}

void edgec_hardswish_s16(const edgec_hswish16_params *p, const int16_t *in, int16_t *out) {
    if (p->out_shift < 0)
        edgec_hswish_loop(p, in, out, 1);
    else
        edgec_hswish_loop(p, in, out, 0);
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

/* MaxPool on int16 (LiteRT's int16 MAX_POOL_2D: the largest real tap, clamped to the fused
 * activation; the input's scale). Up to 16 channels of a window at a time, channels innermost. */
void edgec_maxpool_s16(const edgec_pool_params *p, const int16_t *in, int16_t *out) {
    const int32_t c = p->c, in_h = p->in_h, in_w = p->in_w;
    int32_t b, oy, ox, c0, j, ky, kx, acc[16];
    for (b = 0; b < p->batch; ++b)
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            int32_t ky0, ky1;
            edgec_taps(iy0, p->k_h, 1, in_h, &ky0, &ky1);
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                int32_t kx0, kx1;
                const int16_t *win;
                edgec_taps(ix0, p->k_w, 1, in_w, &kx0, &kx1);
                win = in + ((b * in_h + iy0 + ky0) * in_w + ix0 + kx0) * c;
                for (c0 = 0; c0 < c; c0 += 16) {
                    const int32_t n = c - c0 < 16 ? c - c0 : 16;
                    for (j = 0; j < n; ++j) acc[j] = -32768;
                    for (ky = 0; ky < ky1 - ky0; ++ky) {
                        const int16_t *s = win + ky * in_w * c + c0;
                        for (kx = 0; kx < kx1 - kx0; ++kx, s += c)
                            for (j = 0; j < n; ++j) acc[j] = s[j] > acc[j] ? s[j] : acc[j];
                    }
                    for (j = 0; j < n; ++j) *out++ = edgec_sat16(acc[j], p->act_min, p->act_max);
                }
            }
        }
}

/* Pad of a 4-D int16 tensor with one value (LiteRT's int16 PAD / PADV2): rows of the
 * innermost axis copied whole, the rest filled. */
void edgec_pad_s16(const edgec_pad_params *p, const int16_t *in, int16_t *out) {
    const int32_t n3 = p->in_dims[3], b3 = p->pad_before[3], o3 = p->out_dims[3];
    const int16_t v = p->value;
    int32_t o0, o1, o2, k;
    for (o0 = 0; o0 < p->out_dims[0]; ++o0) {
        const int32_t i0 = o0 - p->pad_before[0];
        for (o1 = 0; o1 < p->out_dims[1]; ++o1) {
            const int32_t i1 = o1 - p->pad_before[1];
            for (o2 = 0; o2 < p->out_dims[2]; ++o2, out += o3) {
                const int32_t i2 = o2 - p->pad_before[2];
                if (i0 < 0 || i0 >= p->in_dims[0] || i1 < 0 || i1 >= p->in_dims[1] || i2 < 0 || i2 >= p->in_dims[2]) {
                    for (k = 0; k < o3; ++k) out[k] = v;
                    continue;
                }
                for (k = 0; k < b3; ++k) out[k] = v;
                memcpy(out + b3, in + ((i0 * p->in_dims[1] + i1) * p->in_dims[2] + i2) * n3,
                       (size_t)n3 * sizeof(int16_t));
                for (k = b3 + n3; k < o3; ++k) out[k] = v;
            }
        }
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
