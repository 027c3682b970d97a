/* Data movement: Pad, Transpose (4-D), Concat (one input per call, requantizing if needed). */
#include "edgec_kernels.h"
#include "edgec_fixedpoint.h"

void edgec_pad_s8(const edgec_pad_params *p, const int8_t *in, int8_t *out) {
    int32_t o0, o1, o2, o3;
    for (o0 = 0; o0 < p->out_dims[0]; ++o0) {
        const int32_t i0 = o0 - p->pad_before[0];
        for (o1 = 0; o1 < p->out_dims[1]; ++o1) {
            const int32_t i1 = o1 - p->pad_before[1];
            for (o2 = 0; o2 < p->out_dims[2]; ++o2) {
                const int32_t i2 = o2 - p->pad_before[2];
                for (o3 = 0; o3 < p->out_dims[3]; ++o3) {
                    const int32_t i3 = o3 - p->pad_before[3];
                    int8_t v = (int8_t)p->value;
                    if (i0 >= 0 && i0 < p->in_dims[0] && i1 >= 0 && i1 < p->in_dims[1] &&
                        i2 >= 0 && i2 < p->in_dims[2] && i3 >= 0 && i3 < p->in_dims[3]) {
                        v = in[((i0 * p->in_dims[1] + i1) * p->in_dims[2] + i2) * p->in_dims[3] + i3];
                    }
                    *out++ = v;
                }
            }
        }
    }
}

/* Transpose and Concat move elements of either width (int16: the activations of a mixed
 * 16x8 graph); one body each, stamped out per element type. */
#define EDGEC_TRANSPOSE(NAME, T)                                                               \
    void NAME(const edgec_transpose_params *p, const T *in, T *out) {                          \
        int32_t stride[4], od[4], os[4], a, b, c, d;                                          \
        stride[3] = 1;                                                                        \
        stride[2] = p->in_dims[3];                                                            \
        stride[1] = stride[2] * p->in_dims[2];                                                \
        stride[0] = stride[1] * p->in_dims[1];                                                \
        for (a = 0; a < 4; ++a) {                                                             \
            od[a] = p->in_dims[p->perm[a]];                                                   \
            os[a] = stride[p->perm[a]];                                                       \
        }                                                                                     \
        for (a = 0; a < od[0]; ++a)                                                           \
            for (b = 0; b < od[1]; ++b)                                                       \
                for (c = 0; c < od[2]; ++c)                                                   \
                    for (d = 0; d < od[3]; ++d)                                               \
                        *out++ = in[a * os[0] + b * os[1] + c * os[2] + d * os[3]];           \
    }

/* One input of a Concat, requantized to the output's parameters when ``rq`` is set (one
 * rounding, as DequantizeLinear -> QuantizeLinear: edgec_mbqm_requant). */
#define EDGEC_CONCAT_PART(NAME, T, LO, HI)                                                     \
    void NAME(const T *in, T *out, int32_t outer, int32_t in_inner, int32_t out_inner,       \
              int32_t out_off, const edgec_requant_params *rq) {                             \
        int32_t o, i;                                                                         \
        for (o = 0; o < outer; ++o) {                                                         \
            const T *src = in + o * in_inner;                                                 \
            T *dst = out + o * out_inner + out_off;                                           \
            for (i = 0; i < in_inner; ++i) {                                                  \
                if (rq) {                                                                     \
                    const int32_t v =                                                         \
                        edgec_mbqm_requant((int32_t)src[i] - rq->in_zp, rq->mult, rq->shift) + rq->out_zp; \
                    dst[i] = (T)edgec_clamp(v, LO, HI);                                       \
                } else {                                                                      \
                    dst[i] = src[i];                                                          \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

EDGEC_TRANSPOSE(edgec_transpose_s8, int8_t)
EDGEC_TRANSPOSE(edgec_transpose_s16, int16_t)
EDGEC_CONCAT_PART(edgec_concat_part_s8, int8_t, -128, 127)
EDGEC_CONCAT_PART(edgec_concat_part_s16, int16_t, -32768, 32767)
