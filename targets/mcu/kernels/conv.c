/* Conv2D and DepthwiseConv2D, int8 NHWC, per-channel requantization. */
#include "edgec_kernels.h"
#include "edgec_fixedpoint.h"

void edgec_conv_s8(const edgec_conv_params *p, const int8_t *in, const int8_t *w,
                   const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out) {
    int32_t b, oy, ox, oc, ky, kx, ic;
    const int32_t in_c = p->in_c, in_h = p->in_h, in_w = p->in_w;
    for (b = 0; b < p->batch; ++b) {
        const int8_t *in_b = in + (int32_t)b * in_h * in_w * in_c;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                for (oc = 0; oc < p->out_c; ++oc) {
                    int32_t acc = 0;
                    const int8_t *w_oc = w + (int32_t)oc * p->k_h * p->k_w * in_c;
                    for (ky = 0; ky < p->k_h; ++ky) {
                        const int32_t iy = iy0 + p->dil_h * ky;
                        if (iy < 0 || iy >= in_h) continue;
                        for (kx = 0; kx < p->k_w; ++kx) {
                            const int32_t ix = ix0 + p->dil_w * kx;
                            const int8_t *xp, *wp;
                            if (ix < 0 || ix >= in_w) continue;
                            xp = in_b + (iy * in_w + ix) * in_c;
                            wp = w_oc + (ky * p->k_w + kx) * in_c;
                            for (ic = 0; ic < in_c; ++ic) {
                                acc += (int32_t)wp[ic] * ((int32_t)xp[ic] + p->in_offset);
                            }
                        }
                    }
                    if (bias) acc += bias[oc];
                    acc = edgec_mbqm(acc, mult[oc], shift[oc]) + p->out_offset;
                    *out++ = (int8_t)edgec_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void edgec_dwconv_s8(const edgec_conv_params *p, const int8_t *in, const int8_t *w,
                     const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out) {
    int32_t b, oy, ox, ic, m, ky, kx;
    const int32_t in_c = p->in_c, in_h = p->in_h, in_w = p->in_w, out_c = p->out_c;
    for (b = 0; b < p->batch; ++b) {
        const int8_t *in_b = in + (int32_t)b * in_h * in_w * in_c;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                for (ic = 0; ic < in_c; ++ic) {
                    for (m = 0; m < p->depth_mult; ++m) {
                        const int32_t oc = ic * p->depth_mult + m;
                        int32_t acc = 0;
                        for (ky = 0; ky < p->k_h; ++ky) {
                            const int32_t iy = iy0 + p->dil_h * ky;
                            if (iy < 0 || iy >= in_h) continue;
                            for (kx = 0; kx < p->k_w; ++kx) {
                                const int32_t ix = ix0 + p->dil_w * kx;
                                if (ix < 0 || ix >= in_w) continue;
                                acc += (int32_t)w[(ky * p->k_w + kx) * out_c + oc] *
                                       ((int32_t)in_b[(iy * in_w + ix) * in_c + ic] + p->in_offset);
                            }
                        }
                        if (bias) acc += bias[oc];
                        acc = edgec_mbqm(acc, mult[oc], shift[oc]) + p->out_offset;
                        out[oc] = (int8_t)edgec_clamp(acc, p->act_min, p->act_max);
                    }
                }
                out += out_c;
            }
        }
    }
}
