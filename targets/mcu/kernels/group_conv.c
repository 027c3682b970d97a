/* Grouped Conv2D, int8 NHWC: each group is a regular convolution over its own slice of
 * input channels (ONNX Conv with 1 < group < C, TFLite CONV_2D with a narrower filter). */
#include "edgec_group_conv.h"
#include "edgec_fixedpoint.h"

void edgec_group_conv_s8(const edgec_group_conv_params *p, const int8_t *in, const int8_t *w,
                         const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out) {
    int32_t b, oy, ox, oc, ky, kx, ic;
    const int32_t in_c = p->in_c, in_h = p->in_h, in_w = p->in_w;
    const int32_t group_in = in_c / p->groups, group_out = p->out_c / p->groups;
    for (b = 0; b < p->batch; ++b) {
        const int8_t *in_b = in + (int32_t)b * in_h * in_w * in_c;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                for (oc = 0; oc < p->out_c; ++oc) {
                    const int32_t c0 = (oc / group_out) * group_in;
                    const int8_t *w_oc = w + (int32_t)oc * p->k_h * p->k_w * group_in;
                    int32_t acc = 0;
                    for (ky = 0; ky < p->k_h; ++ky) {
                        const int32_t iy = iy0 + p->dil_h * ky;
                        if (iy < 0 || iy >= in_h) continue;
                        for (kx = 0; kx < p->k_w; ++kx) {
                            const int32_t ix = ix0 + p->dil_w * kx;
                            const int8_t *xp, *wp;
                            if (ix < 0 || ix >= in_w) continue;
                            xp = in_b + (iy * in_w + ix) * in_c + c0;
                            wp = w_oc + (ky * p->k_w + kx) * group_in;
                            for (ic = 0; ic < group_in; ++ic) {
                                acc += (int32_t)wp[ic] * ((int32_t)xp[ic] + p->in_offset);
                            }
                        }
                    }
                    if (bias) acc += bias[oc];
                    acc = edgec_mbqm_conv(acc, mult[oc], shift[oc]) + p->out_offset;
                    *out++ = (int8_t)edgec_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}
