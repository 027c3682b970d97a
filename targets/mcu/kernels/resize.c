/* Bilinear resize, int8: TFLite's integer reference kernel. Source coordinates are 10-bit
 * fixed point; the four weights multiply to 20 bits and the sum is rounded half away from zero. */
#include "edgec_resize.h"

static void source_coord(int32_t v, int32_t scale, int32_t half_pixel, int32_t size, int32_t *scaled,
                         int32_t *lo, int32_t *hi) {
    *scaled = half_pixel ? v * scale + scale / 2 - (1 << 9) : v * scale;
    *lo = *scaled / (1 << 10);
    if (*lo < 0) *lo = 0;
    *hi = (*scaled + (1 << 10) - 1) / (1 << 10);
    if (*hi > size - 1) *hi = size - 1;
}

void edgec_resize_bilinear_s8(const edgec_resize_params *p, const int8_t *in, int8_t *out) {
    const int32_t in_h = p->in_dims[1], in_w = p->in_dims[2], ch = p->in_dims[3];
    int32_t b, y, x, c;
    for (b = 0; b < p->in_dims[0]; ++b) {
        const int8_t *img = in + b * in_h * in_w * ch;
        for (y = 0; y < p->out_h; ++y) {
            int32_t sy, y0, y1, sx, x0, x1;
            source_coord(y, p->scale_h, p->half_pixel, in_h, &sy, &y0, &y1);
            for (x = 0; x < p->out_w; ++x) {
                source_coord(x, p->scale_w, p->half_pixel, in_w, &sx, &x0, &x1);
                {
                    /* |weights| <= 1536 each: |acc| <= 128 * 1536^2 < 2^31 */
                    const int32_t dy = sy - (y0 << 10), dx = sx - (x0 << 10);
                    const int32_t w00 = ((1 << 10) - dy) * ((1 << 10) - dx), w10 = dy * ((1 << 10) - dx);
                    const int32_t w01 = ((1 << 10) - dy) * dx, w11 = dy * dx;
                    const int8_t *r0 = img + y0 * in_w * ch, *r1 = img + y1 * in_w * ch;
                    for (c = 0; c < ch; ++c) {
                        const int32_t acc = r0[x0 * ch + c] * w00 + r1[x0 * ch + c] * w10 +
                                            r0[x1 * ch + c] * w01 + r1[x1 * ch + c] * w11;
                        *out++ = (int8_t)((acc + (acc > 0 ? (1 << 19) : -(1 << 19))) / (1 << 20));
                    }
                }
            }
        }
    }
}
