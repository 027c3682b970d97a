/* Conv2D, DepthwiseConv2D and FullyConnected, int8 NHWC, per-channel requantization.
 *
 * One source, three instruction sets. The inner loops follow the compiler's ACLE feature
 * macros, which `edgec build --cpu` sets through its flags:
 *   __ARM_FEATURE_MVE  Helium (M55/M85): 16-lane int8 dot products (VMLADAVA), 4-lane
 *                      vector requantization;
 *   __ARM_FEATURE_DSP  SIMD32 (M4/M7/M33): SXTB16 + SMLAD, two int8 MACs per instruction;
 *   neither            portable C (M0/M0+/M3 and the host build).
 * All variants form the same int32 sums and requantize them the same way as LiteRT's
 * reference kernels, so their outputs are identical bit for bit.
 *
 * The bias every kernel receives is bias + input_offset * sum(weights of the channel),
 * folded at build time, so the hot loops multiply raw int8 values. Regular convolutions
 * copy each receptive field into a column (im2col) whose padded taps hold the input zero
 * point, which then adds exactly nothing; depthwise skips padded taps and subtracts their
 * share of the folded bias, outside the channel loop's hot part. */
#include <string.h>

#include "edgec_kernels.h"
#include "edgec_fixedpoint.h"

#if defined(__ARM_FEATURE_MVE)
#include <arm_mve.h>
#define EDGEC_MVE 1
#elif defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#define EDGEC_DSP 1
#endif

/* Requantization of one layer's outputs. */
typedef struct {
    const int32_t *bias, *mult, *shift;
    int32_t per_channel, single_round, out_offset, act_min, act_max;
} edgec_rq;

static inline int8_t rq_one(const edgec_rq *q, int32_t acc, int32_t c) {
    const int32_t i = q->per_channel ? c : 0;
    /* LiteRT's FullyConnected rounds once, its Conv/DepthwiseConv twice. */
    acc = q->single_round ? edgec_mbqm_single(acc, q->mult[i], q->shift[i]) : edgec_mbqm(acc, q->mult[i], q->shift[i]);
    return (int8_t)edgec_clamp(acc + q->out_offset, q->act_min, q->act_max);
}

#if !defined(EDGEC_MVE)
static int32_t dot_s8(const int8_t *a, const int8_t *b, int32_t k, int32_t acc) {
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

#if defined(EDGEC_MVE)
static inline int32x4_t rq_mve(int32x4_t acc, int32x4_t mult, int32x4_t shift) {
    const int32x4_t zero = vdupq_n_s32(0);
    const int32x4_t right = vminq_s32(shift, zero); /* -(right shift), <= 0 */
    int32x4_t fix;
    acc = vshlq_s32(acc, vmaxq_s32(shift, zero));
    acc = vqrdmulhq_s32(acc, mult); /* == SaturatingRoundingDoublingHighMul */
    /* RoundingDivideByPOT rounds ties away from zero, VRSHL rounds them up: take one
     * off negative values first (only where a right shift follows). */
    fix = vshrq_n_s32(vandq_s32(acc, right), 31);
    return vrshlq_s32(vaddq_s32(acc, fix), right);
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

/* out[j * out_stride + n] = requant(bias[n] + w[n, :] . cols[j * k : (j + 1) * k]) for
 * the n_rows weight rows and n_cols columns (n_cols <= 2 except on the scalar path). */
static void gemm_s8(const int8_t *w, int32_t n_rows, int32_t k, const int8_t *cols, int32_t n_cols,
                    const edgec_rq *q, int8_t *out, int32_t out_stride) {
    int32_t n = 0;
#if defined(EDGEC_MVE)
    int32_t j;
    for (j = 0; j < n_cols; ++j) {
        const int8_t *x = cols + j * k;
        int8_t *o = out + j * out_stride;
        for (n = 0; n + 4 <= n_rows; n += 4) {
            const int8_t *w0 = w + n * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k, *xp = x;
            int32_t a0 = q->bias[n], a1 = q->bias[n + 1], a2 = q->bias[n + 2], a3 = q->bias[n + 3], r;
            int32x4_t acc;
            for (r = k; r >= 16; r -= 16) {
                const int8x16_t xv = vldrbq_s8(xp);
                a0 = vmladavaq_s8(a0, vldrbq_s8(w0), xv);
                a1 = vmladavaq_s8(a1, vldrbq_s8(w1), xv);
                a2 = vmladavaq_s8(a2, vldrbq_s8(w2), xv);
                a3 = vmladavaq_s8(a3, vldrbq_s8(w3), xv);
                xp += 16, w0 += 16, w1 += 16, w2 += 16, w3 += 16;
            }
            if (r > 0) {
                const mve_pred16_t p = vctp8q((uint32_t)r);
                const int8x16_t xv = vldrbq_z_s8(xp, p);
                a0 = vmladavaq_p_s8(a0, vldrbq_z_s8(w0, p), xv, p);
                a1 = vmladavaq_p_s8(a1, vldrbq_z_s8(w1, p), xv, p);
                a2 = vmladavaq_p_s8(a2, vldrbq_z_s8(w2, p), xv, p);
                a3 = vmladavaq_p_s8(a3, vldrbq_z_s8(w3, p), xv, p);
            }
            acc = vdupq_n_s32(a0);
            acc = vsetq_lane_s32(a1, acc, 1);
            acc = vsetq_lane_s32(a2, acc, 2);
            acc = vsetq_lane_s32(a3, acc, 3);
            rq_store4(q, acc, n, o + n);
        }
        for (; n < n_rows; ++n) o[n] = rq_one(q, mve_dot(w + n * k, x, k, q->bias[n]), n);
    }
#elif defined(EDGEC_DSP)
    const int32_t k4 = k & ~3;
    if (n_cols == 2) {
        for (n = 0; n + 2 <= n_rows; n += 2) {
            const int8_t *w0 = w + n * k, *x0 = cols;
            int32_t a00 = q->bias[n], a01 = a00, a10 = q->bias[n + 1], a11 = a10, i;
            for (i = 0; i < k4; i += 4) {
                const uint32_t wa = ld32(w0 + i), wb = ld32(w0 + k + i);
                const uint32_t xa = ld32(x0 + i), xb = ld32(x0 + k + i);
                int32_t wl = sx02(wa), vl = sx02(wb), xl = sx02(xa);
                a00 = __smlad(wl, xl, a00);
                a10 = __smlad(vl, xl, a10);
                xl = sx02(xb);
                a01 = __smlad(wl, xl, a01);
                a11 = __smlad(vl, xl, a11);
                wl = sx13(wa), vl = sx13(wb), xl = sx13(xa);
                a00 = __smlad(wl, xl, a00);
                a10 = __smlad(vl, xl, a10);
                xl = sx13(xb);
                a01 = __smlad(wl, xl, a01);
                a11 = __smlad(vl, xl, a11);
            }
            if (i < k) {
                a00 = dot_s8(w0 + i, x0 + i, k - i, a00);
                a01 = dot_s8(w0 + i, x0 + k + i, k - i, a01);
                a10 = dot_s8(w0 + k + i, x0 + i, k - i, a10);
                a11 = dot_s8(w0 + k + i, x0 + k + i, k - i, a11);
            }
            out[n] = rq_one(q, a00, n);
            out[n + 1] = rq_one(q, a10, n + 1);
            out[out_stride + n] = rq_one(q, a01, n);
            out[out_stride + n + 1] = rq_one(q, a11, n + 1);
        }
        for (; n < n_rows; ++n) {
            out[n] = rq_one(q, dot_s8(w + n * k, cols, k, q->bias[n]), n);
            out[out_stride + n] = rq_one(q, dot_s8(w + n * k, cols + k, k, q->bias[n]), n);
        }
        return;
    }
    for (n = 0; n + 4 <= n_rows; n += 4) {
        const int8_t *w0 = w + n * k, *w2 = w0 + 2 * k;
        int32_t a0 = q->bias[n], a1 = q->bias[n + 1], a2 = q->bias[n + 2], a3 = q->bias[n + 3], i;
        for (i = 0; i < k4; i += 4) {
            const uint32_t x = ld32(cols + i);
            const int32_t xl = sx02(x), xh = sx13(x);
            uint32_t v = ld32(w0 + i);
            a0 = __smlad(sx02(v), xl, a0);
            a0 = __smlad(sx13(v), xh, a0);
            v = ld32(w0 + k + i);
            a1 = __smlad(sx02(v), xl, a1);
            a1 = __smlad(sx13(v), xh, a1);
            v = ld32(w2 + i);
            a2 = __smlad(sx02(v), xl, a2);
            a2 = __smlad(sx13(v), xh, a2);
            v = ld32(w2 + k + i);
            a3 = __smlad(sx02(v), xl, a3);
            a3 = __smlad(sx13(v), xh, a3);
        }
        if (i < k) {
            a0 = dot_s8(w0 + i, cols + i, k - i, a0);
            a1 = dot_s8(w0 + k + i, cols + i, k - i, a1);
            a2 = dot_s8(w2 + i, cols + i, k - i, a2);
            a3 = dot_s8(w2 + k + i, cols + i, k - i, a3);
        }
        out[n] = rq_one(q, a0, n);
        out[n + 1] = rq_one(q, a1, n + 1);
        out[n + 2] = rq_one(q, a2, n + 2);
        out[n + 3] = rq_one(q, a3, n + 3);
    }
    for (; n < n_rows; ++n) out[n] = rq_one(q, dot_s8(w + n * k, cols, k, q->bias[n]), n);
#else
    int32_t j;
    for (j = 0; j < n_cols; ++j) {
        for (n = 0; n < n_rows; ++n) {
            out[j * out_stride + n] = rq_one(q, dot_s8(w + n * k, cols + j * k, k, q->bias[n]), n);
        }
    }
#endif
}

#if defined(EDGEC_DSP)
#define EDGEC_CONV_COLS 2
#else
#define EDGEC_CONV_COLS 1
#endif

/* The receptive field of output pixel (oy, ox) as one int8 column of k_h*k_w*in_c. */
static void im2col(const edgec_conv_params *p, const int8_t *in_b, int32_t oy, int32_t ox, int8_t *col) {
    const int32_t in_c = p->in_c, iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
    int32_t ky, kx;
    for (ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + p->dil_h * ky;
        for (kx = 0; kx < p->k_w; ++kx, col += in_c) {
            const int32_t ix = ix0 + p->dil_w * kx;
            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                memset(col, (int8_t)(-p->in_offset), (size_t)in_c);
            } else {
                memcpy(col, in_b + (iy * p->in_w + ix) * in_c, (size_t)in_c);
            }
        }
    }
}

void edgec_conv_s8(const edgec_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                   const int32_t *mult, const int32_t *shift, int8_t *out, int8_t *scratch) {
    const int32_t k = p->k_h * p->k_w * p->in_c, n_pix = p->out_h * p->out_w, out_c = p->out_c;
    /* 1x1, stride 1, no padding: every pixel already is its own column. */
    const int pointwise = p->k_h == 1 && p->k_w == 1 && p->stride_h == 1 && p->stride_w == 1 &&
                          p->pad_h == 0 && p->pad_w == 0 && p->in_h == p->out_h && p->in_w == p->out_w;
    edgec_rq q;
    int32_t b, pix;
    q.bias = bias, q.mult = mult, q.shift = shift, q.per_channel = 1, q.single_round = 0;
    q.out_offset = p->out_offset, q.act_min = p->act_min, q.act_max = p->act_max;
    for (b = 0; b < p->batch; ++b) {
        const int8_t *in_b = in + b * p->in_h * p->in_w * p->in_c;
        for (pix = 0; pix < n_pix; pix += EDGEC_CONV_COLS) {
            const int32_t n_cols = n_pix - pix < EDGEC_CONV_COLS ? n_pix - pix : EDGEC_CONV_COLS;
            const int8_t *cols = in_b + pix * k;
            if (!pointwise) {
                int32_t j;
                for (j = 0; j < n_cols; ++j)
                    im2col(p, in_b, (pix + j) / p->out_w, (pix + j) % p->out_w, scratch + j * k);
                cols = scratch;
            }
            gemm_s8(w, out_c, k, cols, n_cols, &q, out + pix * out_c, out_c);
        }
        out += n_pix * out_c;
    }
}

void edgec_fc_s8(const edgec_fc_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                 const int32_t *mult, const int32_t *shift, int8_t *out) {
    edgec_rq q;
    int32_t b;
    q.bias = bias, q.mult = mult, q.shift = shift, q.per_channel = p->per_channel, q.single_round = 1;
    q.out_offset = p->out_offset, q.act_min = p->act_min, q.act_max = p->act_max;
    for (b = 0; b < p->batch; ++b) gemm_s8(w, p->out_n, p->in_k, in + b * p->in_k, 1, &q, out + b * p->out_n, 0);
}

/* Depthwise: acc = folded bias - in_offset * (weights of the padded taps) + sum over the
 * window's valid taps of w * x. Channels are contiguous in both w (1HWC) and x (NHWC). */
void edgec_dwconv_s8(const edgec_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                     const int32_t *mult, const int32_t *shift, int8_t *out) {
    const int32_t in_c = p->in_c, in_w = p->in_w, out_c = p->out_c, dm = p->depth_mult;
    edgec_rq q;
    int32_t b, oy, ox;
    q.bias = bias, q.mult = mult, q.shift = shift, q.per_channel = 1, q.single_round = 0;
    q.out_offset = p->out_offset, q.act_min = p->act_min, q.act_max = p->act_max;
    for (b = 0; b < p->batch; ++b) {
        const int8_t *in_b = in + b * p->in_h * in_w * in_c;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (ox = 0; ox < p->out_w; ++ox, out += out_c) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                int32_t ky0 = 0, ky1 = p->k_h, kx0 = 0, kx1 = p->k_w, c = 0, ky, kx;
#if defined(EDGEC_MVE) || defined(EDGEC_DSP)
                int full;
#endif
                /* Valid taps form a rectangle [ky0, ky1) x [kx0, kx1) (dilation 1 on fast paths). */
                while (ky0 < ky1 && iy0 + p->dil_h * ky0 < 0) ++ky0;
                while (ky1 > ky0 && iy0 + p->dil_h * (ky1 - 1) >= p->in_h) --ky1;
                while (kx0 < kx1 && ix0 + p->dil_w * kx0 < 0) ++kx0;
                while (kx1 > kx0 && ix0 + p->dil_w * (kx1 - 1) >= in_w) --kx1;
#if defined(EDGEC_MVE) || defined(EDGEC_DSP)
                full = ky0 == 0 && kx0 == 0 && ky1 == p->k_h && kx1 == p->k_w;
#endif
#if defined(EDGEC_MVE)
                if (dm == 1) {
                    for (; c + 4 <= out_c; c += 4) {
                        int32x4_t acc = vld1q_s32(bias + c);
                        if (!full) {
                            for (ky = 0; ky < p->k_h; ++ky)
                                for (kx = 0; kx < p->k_w; ++kx)
                                    if (ky < ky0 || ky >= ky1 || kx < kx0 || kx >= kx1)
                                        acc = vmlaq_n_s32(acc, vldrbq_s32(w + (ky * p->k_w + kx) * out_c + c),
                                                          p->in_offset * -1);
                        }
                        for (ky = ky0; ky < ky1; ++ky) {
                            const int8_t *xr = in_b + ((iy0 + p->dil_h * ky) * in_w + ix0) * in_c + c;
                            const int8_t *wr = w + ky * p->k_w * out_c + c;
                            for (kx = kx0; kx < kx1; ++kx)
                                acc = vaddq_s32(acc, vmulq_s32(vldrbq_s32(wr + kx * out_c), vldrbq_s32(xr + p->dil_w * kx * in_c)));
                        }
                        acc = rq_mve(acc, vld1q_s32(mult + c), vld1q_s32(shift + c));
                        acc = vaddq_n_s32(acc, q.out_offset);
                        acc = vminq_s32(vmaxq_s32(acc, vdupq_n_s32(q.act_min)), vdupq_n_s32(q.act_max));
                        vstrbq_s32(out + c, acc);
                    }
                }
#elif defined(EDGEC_DSP)
                if (dm == 1) {
                    for (; c + 4 <= out_c; c += 4) {
                        int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
                        if (!full) {
                            for (ky = 0; ky < p->k_h; ++ky)
                                for (kx = 0; kx < p->k_w; ++kx)
                                    if (ky < ky0 || ky >= ky1 || kx < kx0 || kx >= kx1) {
                                        const int8_t *wt = w + (ky * p->k_w + kx) * out_c + c;
                                        a0 += p->in_offset * -(int32_t)wt[0];
                                        a1 += p->in_offset * -(int32_t)wt[1];
                                        a2 += p->in_offset * -(int32_t)wt[2];
                                        a3 += p->in_offset * -(int32_t)wt[3];
                                    }
                        }
                        for (ky = ky0; ky < ky1; ++ky) {
                            const int8_t *xr = in_b + ((iy0 + p->dil_h * ky) * in_w + ix0) * in_c + c;
                            const int8_t *wr = w + ky * p->k_w * out_c + c;
                            for (kx = kx0; kx < kx1; ++kx) {
                                const uint32_t wv = ld32(wr + kx * out_c), xv = ld32(xr + p->dil_w * kx * in_c);
                                int32_t wl = sx02(wv), xl = sx02(xv);
                                a0 = __smlabb(wl, xl, a0);
                                a2 = __smlatt(wl, xl, a2);
                                wl = sx13(wv), xl = sx13(xv);
                                a1 = __smlabb(wl, xl, a1);
                                a3 = __smlatt(wl, xl, a3);
                            }
                        }
                        out[c] = rq_one(&q, a0, c);
                        out[c + 1] = rq_one(&q, a1, c + 1);
                        out[c + 2] = rq_one(&q, a2, c + 2);
                        out[c + 3] = rq_one(&q, a3, c + 3);
                    }
                }
#endif
                for (; c < out_c; ++c) {
                    const int32_t ic = c / dm;
                    int32_t acc = bias[c];
                    for (ky = 0; ky < p->k_h; ++ky) {
                        for (kx = 0; kx < p->k_w; ++kx) {
                            const int32_t wv = w[(ky * p->k_w + kx) * out_c + c];
                            if (ky < ky0 || ky >= ky1 || kx < kx0 || kx >= kx1) {
                                acc -= p->in_offset * wv;
                            } else {
                                acc += wv * in_b[((iy0 + p->dil_h * ky) * in_w + ix0 + p->dil_w * kx) * in_c + ic];
                            }
                        }
                    }
                    out[c] = rq_one(&q, acc, c);
                }
            }
        }
    }
}
