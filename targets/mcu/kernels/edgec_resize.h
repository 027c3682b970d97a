/* Bilinear resize of NHWC int8 (TFLite's integer reference arithmetic). */
#ifndef EDGEC_RESIZE_H
#define EDGEC_RESIZE_H

#include <stdint.h>

typedef struct {
    int32_t in_dims[4];          /* N, H, W, C */
    int32_t out_h, out_w;
    int32_t scale_h, scale_w;    /* input/output size ratios in 10-bit fixed point, as TFLite computes them */
    int32_t half_pixel;          /* 1: sample at pixel centres (half_pixel_centers) */
} edgec_resize_params;

/* Input and output share scale and zero point (TFLite requires it): the bytes are interpolated. */
void edgec_resize_bilinear_s8(const edgec_resize_params *p, const int8_t *in, int8_t *out);

#endif
