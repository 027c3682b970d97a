/* Residual block (or conv pair) row by row: the inner activation exists only as a window of k_h rows,
 * every row computed by the unchanged Conv and Add kernels on a window of input rows
 * (in_h, pad_h and out_h = 1 adjusted), so the result is bit-exact with the unfused ops.
 * Output row r is written after the rows that read the input bytes it overwrites
 * (checked at build time by ops/resblock.py when out is x). */
#include <string.h>

#include "edgec_resblock.h"

/* Row `row` of conv c over an input of in_h rows of in_row bytes starting at input row
 * `first` (the caller holds rows first.. of the input at `in`). */
static void conv_row(const edgec_conv_w *c, const int8_t *in, int32_t first, int32_t in_h, int32_t in_row,
                     int32_t row, int8_t *out) {
    edgec_conv_params p = *c->p;
    const int32_t ext = (p.k_h - 1) * p.dil_h + 1, top = row * p.stride_h - p.pad_h;
    const int32_t a = top < 0 ? 0 : top, b = top + ext < in_h ? top + ext : in_h;
    p.in_h = (int16_t)(b - a), p.pad_h = (int8_t)(a - top), p.out_h = 1;
    c->run(&p, in + (a - first) * in_row, c->w, c->bias, c->mult, c->shift, out, c->scratch, c->scratch_bytes);
}

/* dst[0:n] = dst[step:step + n] (overlapping, forward): words while aligned; memmove's
 * bytes would be most of a small model's library. */
static void shift_down(int8_t *dst, int32_t step, int32_t n) {
    const int8_t *src = dst + step;
    int32_t i = 0;
    if ((((uintptr_t)dst | (uintptr_t)step) & 3u) == 0)
        for (; i + 4 <= n; i += 4) memcpy(dst + i, src + i, 4); /* one LDR, one STR */
    for (; i < n; ++i) dst[i] = src[i];
}

typedef void (*edgec_add_fn)(const edgec_binary_params *, const int8_t *, const int8_t *, int8_t *);

/* The add kernel comes as a pointer (0 for a conv pair), so a pair does not link it. */
static __attribute__((noinline)) void resblock(const edgec_conv_w *c1, const edgec_conv_w *c2,
                                               const edgec_conv_w *sc, const edgec_binary_params *add,
                                               edgec_add_fn add_fn, int32_t skip_first, const int8_t *x,
                                               int8_t *out, int8_t *ring) {
    const edgec_conv_params *p1 = c1->p, *p2 = c2->p;
    const int32_t x_row = p1->in_w * p1->in_c, y_row = p1->out_w * p1->out_c, o_row = p2->out_w * p2->out_c;
    const int32_t k2 = (p2->k_h - 1) * p2->dil_h + 1;
    int8_t *win = ring, *y2 = ring + k2 * y_row, *s = y2 + o_row;
    edgec_binary_params q;
    int32_t first = 0, n = 0, r; /* the window holds rows [first, first + n) of c1's output */
    memset(&q, 0, sizeof q);
    if (add) q = *add, q.size = o_row;
    for (r = 0; r < p2->out_h; ++r) {
        const int32_t top = r * p2->stride_h - p2->pad_h;
        const int32_t need = top + k2 < p1->out_h ? top + k2 : p1->out_h;
        const int8_t *skip;
        while (first + n < need) {
            if (n == k2) {
                shift_down(win, y_row, (k2 - 1) * y_row);
                ++first, --n;
            }
            conv_row(c1, x, 0, p1->in_h, x_row, first + n, win + n * y_row);
            ++n;
        }
        if (!add) {
            conv_row(c2, win, first, p1->out_h, y_row, r, out + r * o_row);
            continue;
        }
        conv_row(c2, win, first, p1->out_h, y_row, r, y2);
        if (sc) {
            conv_row(sc, x, 0, sc->p->in_h, x_row, r, s);
            skip = s;
        } else {
            skip = x + r * o_row;
        }
        add_fn(&q, skip_first ? skip : y2, skip_first ? y2 : skip, out + r * o_row);
    }
}

void edgec_resblock_s8(const edgec_conv_w *c1, const edgec_conv_w *c2, const edgec_conv_w *sc,
                       const edgec_binary_params *add, int32_t skip_first, const int8_t *x, int8_t *out,
                       int8_t *ring) {
    resblock(c1, c2, sc, add, add ? edgec_add_s8 : 0, skip_first, x, out, ring);
}

void edgec_convpair_s8(const edgec_conv_w *c1, const edgec_conv_w *c2, const int8_t *x, int8_t *out, int8_t *ring) {
    resblock(c1, c2, 0, 0, 0, 0, x, out, ring);
}
