/* MaxPool, AveragePool and Mean (reduction over one contiguous block of axes), int8. */
#include "edgec_kernels.h"
#include "edgec_fixedpoint.h"

static void edgec_pool(const edgec_pool_params *p, const int8_t *in, int8_t *out, int is_max) {
    int32_t b, oy, ox, c, ky, kx;
    for (b = 0; b < p->batch; ++b) {
        const int8_t *in_b = in + (int32_t)b * p->in_h * p->in_w * p->c;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            const int32_t ky0 = iy0 < 0 ? -iy0 : 0;
            const int32_t ky1 = p->in_h - iy0 < p->k_h ? p->in_h - iy0 : p->k_h;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                const int32_t kx0 = ix0 < 0 ? -ix0 : 0;
                const int32_t kx1 = p->in_w - ix0 < p->k_w ? p->in_w - ix0 : p->k_w;
                for (c = 0; c < p->c; ++c) {
                    int32_t acc = is_max ? -128 : 0, count = 0;
                    for (ky = ky0; ky < ky1; ++ky) {
                        for (kx = kx0; kx < kx1; ++kx) {
                            const int32_t v = in_b[((iy0 + ky) * p->in_w + ix0 + kx) * p->c + c];
                            if (is_max) {
                                if (v > acc) acc = v;
                            } else {
                                acc += v;
                            }
                            ++count;
                        }
                    }
                    if (!is_max) {
                        if (p->count_pad) {
                            acc += (p->k_h * p->k_w - count) * p->pad_value;
                            count = p->k_h * p->k_w;
                        }
                        if (count == 0) count = 1;
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    *out++ = (int8_t)edgec_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void edgec_maxpool_s8(const edgec_pool_params *p, const int8_t *in, int8_t *out) {
    edgec_pool(p, in, out, 1);
}

void edgec_avgpool_s8(const edgec_pool_params *p, const int8_t *in, int8_t *out) {
    edgec_pool(p, in, out, 0);
}

void edgec_mean_s8(const edgec_mean_params *p, const int8_t *in, int8_t *out) {
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
