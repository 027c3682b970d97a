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

static void pool_rows(int32_t mode, int8_t *ring, const edgec_pool_params *p, int8_t *out, int is_max) {
    pool_op o;
    edgec_rows r;
    r.in_h = p->in_h, r.out_h = p->out_h, r.stride = p->stride_h, r.pad = p->pad_h, r.extent = p->k_h;
    r.in_row = p->in_w * p->c, r.out_row = p->out_w * p->c;
    o.p = p, o.is_max = is_max;
    edgec_run_rows(&r, mode, &o, pool_row, out, ring);
}

void edgec_maxpool_s8_rows(int32_t mode, int8_t *ring, const edgec_pool_params *p, const int8_t *in,
                           int8_t *out) {
    (void)in;
    pool_rows(mode, ring, p, out, 1);
}

void edgec_avgpool_s8_rows(int32_t mode, int8_t *ring, const edgec_pool_params *p, const int8_t *in,
                           int8_t *out) {
    (void)in;
    pool_rows(mode, ring, p, out, 0);
}
