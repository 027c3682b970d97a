/* Residual blocks and conv pairs row by row (resblock.c): edgec/targets/mcu/ops/resblock.py. */
#ifndef EDGEC_RESBLOCK_H
#define EDGEC_RESBLOCK_H

#include "edgec_rows.h"

/* out = add(c2(c1(x)), sc ? sc(x) : x) (operands in the Add's order: skip_first puts the
 * skip path first), or out = c2(c1(x)) without add, one output row at a time; out may be
 * x. ring: k_h(c2) rows of c1's output and, with add, one row of c2's and, with sc, one
 * of sc's. */
void edgec_resblock_s8(const edgec_conv_w *c1, const edgec_conv_w *c2, const edgec_conv_w *sc,
                       const edgec_binary_params *add, int32_t skip_first, const int8_t *x, int8_t *out,
                       int8_t *ring);
/* edgec_resblock_s8 without add (out = c2(c1(x))), which leaves the Add kernel unlinked. */
void edgec_convpair_s8(const edgec_conv_w *c1, const edgec_conv_w *c2, const int8_t *x, int8_t *out, int8_t *ring);

#endif
