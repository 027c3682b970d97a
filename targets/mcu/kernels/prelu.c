/* PRelu, int8: TFLite's reference kernel. Positive inputs are rescaled by in/out scale,
 * negative ones multiplied by alpha first and rescaled by in*alpha/out scale. */
#include "edgec_prelu.h"
#include "edgec_fixedpoint.h"

void edgec_prelu_s8(const edgec_prelu_params *p, const int8_t *in, const int8_t *alpha, int8_t *out) {
    int32_t i0, i1, i2, i3, n = 0;
    for (i0 = 0; i0 < p->dims[0]; ++i0)
        for (i1 = 0; i1 < p->dims[1]; ++i1)
            for (i2 = 0; i2 < p->dims[2]; ++i2)
                for (i3 = 0; i3 < p->dims[3]; ++i3, ++n) {
                    const int32_t x = (int32_t)in[n] + p->in_offset;
                    int32_t v;
                    if (x >= 0) {
                        v = edgec_mbqm(x, p->pos_mult, p->pos_shift);
                    } else {
                        const int32_t ia = i0 * p->alpha_str[0] + i1 * p->alpha_str[1] +
                                           i2 * p->alpha_str[2] + i3 * p->alpha_str[3];
                        const int32_t a = (int32_t)alpha[ia] + p->alpha_offset;
                        v = edgec_mbqm(x * a, p->neg_mult, p->neg_shift);
                    }
                    out[n] = (int8_t)edgec_clamp(v + p->out_offset, -128, 127);
                }
}
