/* MaxPool and AveragePool row by row in place (rows.c). */
#include "edgec_rows.h"

typedef struct {
    const edgec_pool_params *p;
    int is_max;
} pool_op;

static void pool_row(const void *op, const int8_t *in, int32_t in_h, int32_t pad_h, int32_t out_h,
                     int8_t *out) {
    const pool_op *o = (const pool_op *)op;
    edgec_pool_params p = *o->p;
    p.in_h = (int16_t)in_h, p.pad_h = (int16_t)pad_h, p.out_h = (int16_t)out_h;
    if (o->is_max)
        edgec_maxpool_s8(&p, in, out);
    else
        edgec_avgpool_s8(&p, in, out);
}

void edgec_maxpool_s8_rows(const edgec_rows *r, int8_t *ring, const edgec_pool_params *p, const int8_t *in,
                           int8_t *out) {
    pool_op o;
    (void)in;
    o.p = p, o.is_max = 1;
    edgec_run_rows(r, &o, pool_row, out, ring);
}

void edgec_avgpool_s8_rows(const edgec_rows *r, int8_t *ring, const edgec_pool_params *p, const int8_t *in,
                           int8_t *out) {
    pool_op o;
    (void)in;
    o.p = p, o.is_max = 0;
    edgec_run_rows(r, &o, pool_row, out, ring);
}
