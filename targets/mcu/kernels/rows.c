/* Row-by-row in-place execution: every output row is computed by the op's own kernel on
 * the window of input rows it reads (in_h, pad_h and out_h = 1 adjusted), into a ring of
 * lag + 1 rows, and copied to its place in the shared buffer `lag` rows later, when no
 * row still to compute reads the input bytes it overwrites (edgec/targets/mcu/rows.py). */
#include <string.h>

#include "edgec_rows.h"

void edgec_run_rows(const edgec_rows *r, const void *op, edgec_row_fn fn, int8_t *buf, int8_t *ring) {
    const int32_t out_h = r->out_h, lag = r->lag, slots = r->lag + 1;
    const int32_t in_row = r->in_row, out_row = r->out_row;
    int32_t j;
    for (j = 0; j < out_h + lag; ++j) {
        if (j < out_h) {
            const int32_t row = r->reverse ? out_h - 1 - j : j;
            const int32_t top = row * r->stride - r->pad;
            const int32_t a = top < 0 ? 0 : top;
            const int32_t b = top + r->extent < r->in_h ? top + r->extent : r->in_h;
            fn(op, buf + a * in_row, b - a, a - top, ring + (j % slots) * out_row);
        }
        if (j >= lag) {
            const int32_t k = j - lag;
            const int32_t row = r->reverse ? out_h - 1 - k : k;
            memcpy(buf + row * out_row, ring + (k % slots) * out_row, (size_t)out_row);
        }
    }
}
