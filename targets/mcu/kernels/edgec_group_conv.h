/* Grouped Conv2D (1 < groups < input channels), int8 NHWC, per-channel requantization. */
#ifndef EDGEC_GROUP_CONV_H
#define EDGEC_GROUP_CONV_H

#include <stdint.h>

typedef struct {
    int16_t batch, in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w;
    int16_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w, groups;
    int16_t in_offset, out_offset, act_min, act_max;
} edgec_group_conv_params;

/* Weights OHWI with I = in_c / groups; output channel oc reads input channels
 * [g * in_c / groups, (g + 1) * in_c / groups) of its group g = oc / (out_c / groups). */
void edgec_group_conv_s8(const edgec_group_conv_params *p, const int8_t *in, const int8_t *w,
                         const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out);

#endif
