/* Row-by-row in-place execution of windowed int8 ops (rows.c): the output shares the
 * input's buffer; see edgec/targets/mcu/rows.py for the schedule. */
#ifndef EDGEC_ROWS_H
#define EDGEC_ROWS_H

#include "edgec_kernels.h"

/* The row geometry of one op (from its params). */
typedef struct {
    int32_t in_h, out_h, stride, pad, extent, in_row, out_row;
} edgec_rows;

/* The schedule rows.py chose, one constant per call: rows bottom-up (bit 0), the lag in
 * chunks (bits 1-15), rows per chunk (bits 16-). */
#define EDGEC_ROWS_REVERSE(mode) ((mode) & 1)
#define EDGEC_ROWS_LAG(mode) (((mode) >> 1) & 0x7fff)
#define EDGEC_ROWS_GROUP(mode) ((mode) >> 16)

/* edgec_conv_s8's signature; the generated model adapts edgec_dwconv_s8 to it (a pointer,
 * so that a model without depthwise convs does not link that kernel). */
typedef void (*edgec_conv_fn)(const edgec_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                              const int32_t *mult, const int32_t *shift, int8_t *out, int8_t *scratch,
                              int32_t scratch_bytes);

/* One Conv's (or DepthwiseConv's) kernel and its arguments besides its input and output;
 * a depthwise conv's scratch is its pad row. */
typedef struct {
    edgec_conv_fn run;
    const edgec_conv_params *p;
    const int8_t *w;
    const int32_t *bias, *mult, *shift;
    int8_t *scratch;
    int32_t scratch_bytes;
} edgec_conv_w;

void edgec_conv_geometry(const edgec_conv_params *p, edgec_rows *r);

/* `out_h` output rows: the op's kernel on `in_h` input rows from `in`, the first output
 * row's window starting `pad_h` rows above them. */
typedef void (*edgec_row_fn)(const void *op, const int8_t *in, int32_t in_h, int32_t pad_h, int32_t out_h,
                             int8_t *out);
void edgec_run_rows(const edgec_rows *r, int32_t mode, const void *op, edgec_row_fn fn, int8_t *buf, int8_t *ring);

/* Each takes the plain kernel's arguments after the mode and a ring of
 * (lag + 1) * group * out_row bytes; `in` and `out` are the same buffer. */
void edgec_conv_s8_rows(int32_t mode, int8_t *ring, const edgec_conv_params *p, const int8_t *in,
                        const int8_t *w, const int32_t *bias, const int32_t *mult, const int32_t *shift,
                        int8_t *out, int8_t *scratch, int32_t scratch_bytes);
void edgec_dwconv_s8_rows(int32_t mode, int8_t *ring, const edgec_conv_params *p, const int8_t *in,
                          const int8_t *w, const int32_t *bias, const int32_t *mult, const int32_t *shift,
                          int8_t *out, int8_t *pad);
void edgec_maxpool_s8_rows(int32_t mode, int8_t *ring, const edgec_pool_params *p, const int8_t *in,
                           int8_t *out);
void edgec_avgpool_s8_rows(int32_t mode, int8_t *ring, const edgec_pool_params *p, const int8_t *in,
                           int8_t *out);

#endif
