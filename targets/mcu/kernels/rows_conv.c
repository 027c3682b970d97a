/* Conv row by row in place (rows.c). */
#include "edgec_rows.h"

static void conv_row(const void *op, const int8_t *in, int32_t in_h, int32_t pad_h, int32_t out_h, int8_t *out) {
    const edgec_conv_w *o = (const edgec_conv_w *)op;
    edgec_conv_params p = *o->p;
    p.in_h = (int16_t)in_h, p.pad_h = (int8_t)pad_h, p.out_h = (int16_t)out_h;
    edgec_conv_s8(&p, in, o->w, o->bias, o->mult, o->shift, out, o->scratch, o->scratch_bytes);
}

void edgec_conv_s8_rows(int32_t mode, int8_t *ring, const edgec_conv_params *p, const int8_t *in,
                        const int8_t *w, const int32_t *bias, const int32_t *mult, const int32_t *shift,
                        int8_t *out, int8_t *scratch, int32_t scratch_bytes) {
    edgec_conv_w o;
    edgec_rows r;
    (void)in;
    edgec_conv_geometry(p, &r);
    o.run = 0, o.p = p, o.w = w, o.bias = bias, o.mult = mult, o.shift = shift, o.scratch = scratch;
    o.scratch_bytes = scratch_bytes;
    edgec_run_rows(&r, mode, &o, conv_row, out, ring);
}
