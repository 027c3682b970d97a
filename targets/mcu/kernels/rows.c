/* Row-by-row in-place execution: every chunk of `group` output rows is computed by the
 * op's own kernel on the window of input rows it reads (in_h, pad_h and out_h adjusted)
 * into a ring of lag + 1 chunks, and copied to its place in the shared buffer `lag` chunks
 * later, when no chunk still to compute reads the input bytes it overwrites
 * (edgec/targets/mcu/rows.py). */
#include <string.h>

#include "edgec_rows.h"

void edgec_run_rows(const edgec_rows *r, int32_t mode, const void *op, edgec_row_fn fn, int8_t *buf, int8_t *ring) {
    const int32_t out_h = r->out_h, lag = EDGEC_ROWS_LAG(mode), slots = lag + 1, group = EDGEC_ROWS_GROUP(mode);
    const int32_t reverse = EDGEC_ROWS_REVERSE(mode);
    const int32_t chunks = (out_h + group - 1) / group, chunk_bytes = group * r->out_row;
    const int32_t in_row = r->in_row, out_row = r->out_row;
    int32_t j;
    for (j = 0; j < chunks + lag; ++j) {
        if (j < chunks) {
            const int32_t r0 = (reverse ? chunks - 1 - j : j) * group;
            const int32_t r1 = r0 + group < out_h ? r0 + group : out_h;
            const int32_t top = r0 * r->stride - r->pad, bottom = (r1 - 1) * r->stride - r->pad + r->extent;
            const int32_t a = top < 0 ? 0 : top, b = bottom < r->in_h ? bottom : r->in_h;
            fn(op, buf + a * in_row, b - a, a - top, r1 - r0, ring + (j % slots) * chunk_bytes);
        }
        if (j >= lag) {
            const int32_t k = j - lag;
            const int32_t r0 = (reverse ? chunks - 1 - k : k) * group;
            const int32_t r1 = r0 + group < out_h ? r0 + group : out_h;
            memcpy(buf + r0 * out_row, ring + (k % slots) * chunk_bytes, (size_t)((r1 - r0) * out_row));
        }
    }
}

void edgec_conv_geometry(const edgec_conv_params *p, edgec_rows *r) {
    r->in_h = p->in_h, r->out_h = p->out_h, r->stride = p->stride_h, r->pad = p->pad_h;
    r->extent = (p->k_h - 1) * p->dil_h + 1, r->in_row = p->in_w * p->in_c, r->out_row = p->out_w * p->out_c;
}
