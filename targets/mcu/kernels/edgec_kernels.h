/* edgec int8 kernels for microcontrollers (C99, no malloc, no stdio, no float on the
 * int8 path). Numerics follow TensorFlow Lite's int8 reference kernels: asymmetric int8
 * activations, per-channel symmetric int8 weights, int32 bias, fixed-point requantization
 * with a 31-bit multiplier and a power-of-two shift. Parameters are const structs that
 * the generated edgec_model.c keeps in flash. */
#ifndef EDGEC_KERNELS_H
#define EDGEC_KERNELS_H

#include <stdint.h>

typedef struct {
    int16_t in_h, in_w, in_c, out_h, out_w, out_c;
    int16_t in_offset, out_offset, act_min, act_max;
    /* The small fields in bytes (one struct per layer in flash; the emitter checks the range). */
    int8_t batch, k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_h, pad_w, depth_mult;
    /* Nonzero when every channel's shift is <= -1 and a doubled accumulator either fits in
     * int32 or saturates to the same int8 (checked at build time): SIMD32 kernels then
     * requantize with QADD + SMMULR (edgec_conv_internal.h, rq_dsp); 2 when the activation range is
     * [-128, 127] as well (one SSAT clamps). */
    int8_t rq_fast;
    int8_t dw_chunk; /* depthwise weight layout (below): the chunk size, 0 meaning 1 */
} edgec_conv_params;

typedef struct {
    int16_t batch, in_k, out_n, per_channel;
    int16_t in_offset, out_offset, act_min, act_max;
} edgec_fc_params;

typedef struct {
    int32_t size;
    int16_t dims[4];
    int32_t str1[4], str2[4];
    int16_t broadcast, left_shift;
    int16_t in1_offset, in2_offset, out_offset, act_min, act_max;
    int32_t in1_mult, in2_mult, out_mult;
    int16_t in1_shift, in2_shift, out_shift;
} edgec_binary_params;

typedef struct {
    int16_t batch, in_h, in_w, c, out_h, out_w, k_h, k_w;
    int16_t stride_h, stride_w, pad_h, pad_w, act_min, act_max;
    /* AveragePool with ONNX count_include_pad=1: padded taps count, holding pad_value
     * (the zero point: 0.0). 0 (TFLite, and the default) averages the real taps only. */
    int16_t count_pad, pad_value;
} edgec_pool_params;

typedef struct {
    int32_t outer, reduce, inner;
    int32_t mult;
    int16_t shift, in_zp, out_zp;
} edgec_mean_params;

typedef struct {
    int32_t outer, depth;
    int32_t input_mult;
    int32_t input_left_shift, diff_min;
} edgec_softmax_params;

typedef struct {
    int32_t size;
    int32_t mult;
    int16_t shift, in_zp, out_zp, act_min, act_max;
} edgec_requant_params;

typedef struct {
    int16_t in_dims[4], out_dims[4], pad_before[4];
    int16_t value;
} edgec_pad_params;

typedef struct {
    int16_t in_dims[4], perm[4];
} edgec_transpose_params;

/* conv/dwconv/fc take the bias with input_offset * sum(weights) folded in (never NULL);
 * conv's scratch (scratch_bytes, word aligned) holds im2col columns, and on SIMD32 CPUs
 * their int16 expansion (see ops/conv.py for the sizes). */
void edgec_conv_s8(const edgec_conv_params *p, const int8_t *in, const int8_t *w,
                   const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out,
                   int8_t *scratch, int32_t scratch_bytes);
/* dwconv's pad holds in_c bytes (the input zero point, written by the kernel). With depth
 * multiplier 1 and at most 64 taps, w holds the channels in chunks of p->dw_chunk (8 for
 * Helium, 4 for SIMD32, 1 for portable kernels; the channels past the last whole chunk form
 * chunks of 1), each chunk's taps one after another ([tap][channel of the chunk]); with
 * chunks of 8, bias, mult and shift list each whole chunk's even channels before its odd
 * ones. Any kernel reads any layout; the CPU's own runs its vector loops.
 * Otherwise w is [tap][out channel] (TFLite's 1HWC). */
void edgec_dwconv_s8(const edgec_conv_params *p, const int8_t *in, const int8_t *w,
                     const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out,
                     int8_t *pad);
void edgec_fc_s8(const edgec_fc_params *p, const int8_t *in, const int8_t *w,
                 const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out);
void edgec_add_s8(const edgec_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void edgec_mul_s8(const edgec_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void edgec_maxpool_s8(const edgec_pool_params *p, const int8_t *in, int8_t *out);
void edgec_avgpool_s8(const edgec_pool_params *p, const int8_t *in, int8_t *out);
void edgec_mean_s8(const edgec_mean_params *p, const int8_t *in, int8_t *out);
void edgec_softmax_s8(const edgec_softmax_params *p, const int8_t *in, int8_t *out);
void edgec_requant_s8(const edgec_requant_params *p, const int8_t *in, int8_t *out);
void edgec_lut_s8(int32_t size, const int8_t *table, const int8_t *in, int8_t *out);
void edgec_pad_s8(const edgec_pad_params *p, const int8_t *in, int8_t *out);
void edgec_transpose_s8(const edgec_transpose_params *p, const int8_t *in, int8_t *out);
void edgec_copy_s8(int32_t size, const int8_t *in, int8_t *out);
void edgec_concat_part_s8(const int8_t *in, int8_t *out, int32_t outer, int32_t in_inner,
                          int32_t out_inner, int32_t out_off, const edgec_requant_params *rq);
/* The int16 twins (mixed 16x8 graphs): the same element moves on 2-byte elements. */
void edgec_transpose_s16(const edgec_transpose_params *p, const int16_t *in, int16_t *out);
void edgec_concat_part_s16(const int16_t *in, int16_t *out, int32_t outer, int32_t in_inner,
                           int32_t out_inner, int32_t out_off, const edgec_requant_params *rq);
/* Float I/O helpers, used only when the model's own inputs/outputs are float32. */
void edgec_quantize_f32_s8(int32_t size, float scale, int32_t zp, const float *in, int8_t *out);
void edgec_dequantize_s8_f32(int32_t size, float scale, int32_t zp, const int8_t *in, float *out);
void edgec_quantize_f32_s16(int32_t size, float scale, int32_t zp, const float *in, int16_t *out);
void edgec_dequantize_s16_f32(int32_t size, float scale, int32_t zp, const int16_t *in, float *out);

#endif
