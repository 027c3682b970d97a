/* MaxPool, AveragePool and Mean (reduction over one contiguous block of axes), int8. */
#include "edgec_kernels.h"
#include "edgec_fixedpoint.h"

/* Up to 16 channels of one window, summed (or maxed) in int32: Helium as four predicated
 * 4-lane vectors, the portable path (also Helium's at -Os) one channel after another. */
static inline __attribute__((always_inline)) void pool_chunk(const int8_t *base, int32_t row, int32_t pix,
                                                             int32_t n_ky, int32_t n_kx, int32_t n, int32_t *acc,
                                                             const int is_max) {
    int32_t ky, kx;
#if defined(__ARM_FEATURE_MVE) && !defined(__OPTIMIZE_SIZE__)
    const mve_pred16_t p0 = vctp32q((uint32_t)n), p1 = vctp32q((uint32_t)(n > 4 ? n - 4 : 0));
    const mve_pred16_t p2 = vctp32q((uint32_t)(n > 8 ? n - 8 : 0)), p3 = vctp32q((uint32_t)(n > 12 ? n - 12 : 0));
    int32x4_t a0 = vdupq_n_s32(is_max ? -128 : 0), a1 = a0, a2 = a0, a3 = a0;
    for (ky = 0; ky < n_ky; ++ky) {
        const int8_t *s = base + ky * row;
        for (kx = 0; kx < n_kx; ++kx, s += pix) {
            if (is_max) {
                a0 = vmaxq_s32(a0, vldrbq_z_s32(s, p0)), a1 = vmaxq_s32(a1, vldrbq_z_s32(s + 4, p1));
                a2 = vmaxq_s32(a2, vldrbq_z_s32(s + 8, p2)), a3 = vmaxq_s32(a3, vldrbq_z_s32(s + 12, p3));
            } else {
                a0 = vaddq_s32(a0, vldrbq_z_s32(s, p0)), a1 = vaddq_s32(a1, vldrbq_z_s32(s + 4, p1));
                a2 = vaddq_s32(a2, vldrbq_z_s32(s + 8, p2)), a3 = vaddq_s32(a3, vldrbq_z_s32(s + 12, p3));
            }
        }
    }
    vst1q_s32(acc, a0), vst1q_s32(acc + 4, a1), vst1q_s32(acc + 8, a2), vst1q_s32(acc + 12, a3);
#else
    int32_t j;
    for (j = 0; j < n; ++j) acc[j] = is_max ? -128 : 0;
    for (ky = 0; ky < n_ky; ++ky) {
        const int8_t *s = base + ky * row;
        for (kx = 0; kx < n_kx; ++kx, s += pix) {
            for (j = 0; j < n; ++j) {
                if (is_max) {
                    acc[j] = s[j] > acc[j] ? s[j] : acc[j];
                } else {
                    acc[j] += s[j];
                }
            }
        }
    }
#endif
}

static inline __attribute__((always_inline)) void edgec_pool(const edgec_pool_params *p, const int8_t *in,
                                                             int8_t *out, const int is_max) {
    /* Parameters in locals: the int8 output stores may alias *p. */
    const int32_t c = p->c, in_h = p->in_h, in_w = p->in_w, k_h = p->k_h, k_w = p->k_w;
    const int32_t lo = p->act_min, hi = p->act_max, count_pad = p->count_pad, pad_value = p->pad_value;
    int32_t b, oy, ox, c0, j, acc[16];
    for (b = 0; b < p->batch; ++b) {
        const int8_t *in_b = in + (int32_t)b * in_h * in_w * c;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            const int32_t ky0 = iy0 < 0 ? -iy0 : 0;
            const int32_t ky1 = in_h - iy0 < k_h ? in_h - iy0 : k_h;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                const int32_t kx0 = ix0 < 0 ? -ix0 : 0;
                const int32_t kx1 = in_w - ix0 < k_w ? in_w - ix0 : k_w;
                const int32_t real = (ky1 - ky0) * (kx1 - kx0);
                /* The window's first real tap (padding is never read). */
                const int8_t *win = in_b + ((iy0 + ky0) * in_w + ix0 + kx0) * c;
                for (c0 = 0; c0 < c; c0 += 16) {
                    const int32_t n = c - c0 < 16 ? c - c0 : 16;
                    pool_chunk(win + c0, in_w * c, c, ky1 - ky0, kx1 - kx0, n, acc, is_max);
                    for (j = 0; j < n; ++j) {
                        int32_t v = acc[j], count = real;
                        if (!is_max) {
                            if (count_pad) {
                                v += (k_h * k_w - count) * pad_value;
                                count = k_h * k_w;
                            }
                            if (count == 0) count = 1;
                            v = v > 0 ? (v + count / 2) / count : (v - count / 2) / count;
                        }
                        *out++ = (int8_t)edgec_clamp(v, lo, hi);
                    }
                }
            }
        }
    }
}

EDGEC_COLD void edgec_maxpool_s8(const edgec_pool_params *p, const int8_t *in, int8_t *out) {
    edgec_pool(p, in, out, 1);
}

EDGEC_COLD void edgec_avgpool_s8(const edgec_pool_params *p, const int8_t *in, int8_t *out) {
    edgec_pool(p, in, out, 0);
}

EDGEC_COLD void edgec_mean_s8(const edgec_mean_params *p, const int8_t *in, int8_t *out) {
    int32_t o, r, i;
    for (o = 0; o < p->outer; ++o) {
        const int8_t *base = in + o * p->reduce * p->inner;
        for (i = 0; i < p->inner; ++i) {
            int32_t sum = 0, v;
            for (r = 0; r < p->reduce; ++r) sum += base[r * p->inner + i];
            sum -= (int32_t)p->in_zp * p->reduce;
            v = edgec_mbqm(sum, p->mult, p->shift) + p->out_zp;
            out[o * p->inner + i] = (int8_t)edgec_clamp(v, -128, 127);
        }
    }
}
