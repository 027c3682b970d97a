/* PRelu, int8 (TFLite's int8 reference arithmetic). */
#ifndef EDGEC_PRELU_H
#define EDGEC_PRELU_H

#include <stdint.h>

typedef struct {
    int16_t dims[4];         /* output (= input) shape, 4-D */
    int32_t alpha_str[4];    /* alpha strides per output dim (0 where alpha broadcasts) */
    int16_t in_offset, alpha_offset, out_offset;
    int32_t pos_mult, neg_mult;
    int16_t pos_shift, neg_shift;
} edgec_prelu_params;

/* out = x >= 0 ? x : alpha * x, with alpha broadcast onto x. ``out`` may be ``in``. */
void edgec_prelu_s8(const edgec_prelu_params *p, const int8_t *in, const int8_t *alpha, int8_t *out);

#endif
