/* edgec int16 (16x8) kernels: int16 activations, symmetric (zero point 0), int8 per-channel
 * weights, int64 bias, as LiteRT's 16x8 mode (TFLite's int16 reference kernels). Built only
 * where a model has int16 tensors (edgec_config.h: EDGEC_WITH_S16). Conv/depthwise take the
 * int8 kernels' edgec_conv_params (the offsets are 0; rq_fast and dw_chunk are not read). */
#ifndef EDGEC_S16_H
#define EDGEC_S16_H

#include <stdint.h>

#include "edgec_kernels.h"

/* HardSwish on int16: y = x * relu6(x + 3) / 6 in fixed point. The gate relu6(x + 3) / 6 in
 * Q30 is (x * gate_mult + 2^(S - 1) >> S) + 2^29 clamped to [0, 2^30], with gate_mult =
 * gate_q * 2^S + gate_rh * 2^15 + gate_rl (S = gate_shift + 15; round_h * 2^15 + round_l =
 * 2^(S - 1)): worked out in int32 from those parts, the clamp as thresholds (x <= x_lo: 0,
 * x >= x_hi: 2^30). y = (x * gate) rounded to Q15, times out_mult * 2^(out_shift - 31),
 * rounded once (ops/s16.py: hardswish16_fields). */
typedef struct {
    int32_t size;
    int32_t x_lo, x_hi;
    int32_t gate_q, gate_rh, gate_rl, round_h, round_l, gate_shift;
    int32_t out_mult, out_shift;
} edgec_hswish16_params;

/* Add of two int16 tensors (LiteRT's general-scale int16 ADD: left shift 15, the int8
 * arithmetic; zero points 0). Same shapes (no broadcasting). */
typedef struct {
    int32_t size;
    int32_t in1_mult, in2_mult, out_mult;
    int16_t in1_shift, in2_shift, out_shift, left_shift;
    int16_t act_min, act_max;
} edgec_add16_params;

/* Conv and depthwise: ``mult`` is each output channel's TFLite multiplier reduced to 16 bits
 * ((m + 2^15) >> 16, at most 0x7FFF, as LiteRT's and CMSIS-NN's int16 kernels round it) and
 * ``shift`` the right shift after it (15 - TFLite's exponent): ops/s16.py s16_multipliers. */
void edgec_conv_s16(const edgec_conv_params *p, const int16_t *in, const int8_t *w, const int64_t *bias,
                    const int32_t *mult, const int32_t *shift, int16_t *out);
/* w is TFLite's 1HWC: [tap][out channel]. */
void edgec_dwconv_s16(const edgec_conv_params *p, const int16_t *in, const int8_t *w, const int64_t *bias,
                      const int32_t *mult, const int32_t *shift, int16_t *out);
void edgec_hardswish_s16(const edgec_hswish16_params *p, const int16_t *in, int16_t *out);
void edgec_add_s16(const edgec_add16_params *p, const int16_t *a, const int16_t *b, int16_t *out);
/* MaxPool and Pad on int16 (the int8 kernels' parameters; the output keeps the input's scale). */
void edgec_maxpool_s16(const edgec_pool_params *p, const int16_t *in, int16_t *out);
void edgec_pad_s16(const edgec_pad_params *p, const int16_t *in, int16_t *out);
/* QUANTIZE between int8 and int16 (LiteRT's Requantize: one MultiplyByQuantizedMultiplier). */
void edgec_requant_s8_s16(const edgec_requant_params *p, const int8_t *in, int16_t *out);
void edgec_requant_s16_s8(const edgec_requant_params *p, const int16_t *in, int8_t *out);

#endif
