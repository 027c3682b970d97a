/* DepthwiseConv2D (dwconv.c). Multipliers are exact powers of two (EDGEC_HALF with shift 1
 * = x1), so every golden value is worked out by hand. The kernel takes the bias with
 * input_offset * sum(weights) folded in, weights in channel chunks (edgec_kernels.h), and
 * an in_c-byte row for its padded taps (host build: the portable path, which reads every
 * chunk layout). */
#include "edgec_kernels.h"
#include "edgec_test.h"

static void depthwise_per_channel_filters(void) {
    /* 3x3x2 input, 2x2 depthwise filters (1HWC): channel 0 sums its window, channel 1
     * computes 1*a - 1*b + 0*c + 2*d over [[a, b], [c, d]]. */
    static const edgec_conv_params p = {.batch = 1, .in_h = 3, .in_w = 3, .in_c = 2, .out_h = 2, .out_w = 2,
                                        .out_c = 2, .k_h = 2, .k_w = 2, .stride_h = 1, .stride_w = 1, .dil_h = 1,
                                        .dil_w = 1, .depth_mult = 1, .act_min = -128, .act_max = 127};
    /* channel 0: 1..9; channel 1: [[0, 1, 0], [2, 0, -1], [1, 1, 1]] */
    static const int8_t in[18] = {1, 0, 2, 1, 3, 0, 4, 2, 5, 0, 6, -1, 7, 1, 8, 1, 9, 1};
    static const int8_t w[8] = {1, 1, 1, 1, 1, -1, 0, 2}; /* per channel its taps (chunks of 1) */
    static const int32_t bias[2] = {0, 0};
    static const int32_t mult[2] = {EDGEC_HALF, EDGEC_HALF}, shift[2] = {1, 1};
    static const int8_t want[8] = {12, -1, 16, -1, 24, 4, 28, 3};
    int8_t out[8], pad[2];
    edgec_dwconv_s8(&p, in, w, bias, mult, shift, out, pad);
    EXPECT_S8(out, want);
}

static void depthwise_layouts(int16_t g) {
    /* 1x2x10 input (pixel 0: channel c holds c + 1; pixel 1: 1), a 1x2 window: tap 0
     * weighs c - 4, tap 1 weighs 1; bias c. Weights in chunks of g ([tap][channel]) and the
     * channels past the last whole chunk one by one; chunks of 8 list bias/mult/shift even
     * channels first. The portable kernel reads every layout. */
    edgec_conv_params p = {.batch = 1, .in_h = 1, .in_w = 2, .in_c = 10, .out_h = 1, .out_w = 1, .out_c = 10,
                           .k_h = 1, .k_w = 2, .stride_h = 1, .stride_w = 1, .dil_h = 1, .dil_w = 1,
                           .depth_mult = 1, .act_min = -128, .act_max = 127, .rq_fast = 2};
    static const int8_t in[20] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    static const int8_t want[10] = {-3, -4, -3, 0, 5, 12, 21, 32, 45, 60};
    static const int32_t order8[10] = {0, 2, 4, 6, 1, 3, 5, 7, 8, 9};
    int32_t bias[10], mult[10], shift[10], c, whole = 10 - 10 % g;
    int8_t w[20], out[10], pad[10];
    for (c = 0; c < 10; ++c) {
        const int32_t j = c < whole ? c % g : 0, base = (c - j) * 2, stride = c < whole ? g : 1;
        w[base + j] = (int8_t)(c - 4);
        w[base + j + stride] = 1;
        bias[c] = g == 8 ? order8[c] : c;
        mult[c] = EDGEC_HALF, shift[c] = 1;
    }
    p.dw_chunk = g;
    edgec_dwconv_s8(&p, in, w, bias, mult, shift, out, pad);
    EXPECT_S8(out, want);
}

static void depthwise_chunks_of_1_4_8(void) {
    depthwise_layouts(1);
    depthwise_layouts(4);
    depthwise_layouts(8);
}

static void depthwise_multiplier_two(void) {
    /* 1x2x1 input, depth multiplier 2, 1x1 filters x3 and x-1 per output channel. */
    static const edgec_conv_params p = {.batch = 1, .in_h = 1, .in_w = 2, .in_c = 1, .out_h = 1, .out_w = 2,
                                        .out_c = 2, .k_h = 1, .k_w = 1, .stride_h = 1, .stride_w = 1, .dil_h = 1,
                                        .dil_w = 1, .depth_mult = 2, .act_min = -128, .act_max = 127};
    static const int8_t in[2] = {5, -7};
    static const int8_t w[2] = {3, -1};
    static const int32_t bias[2] = {1, 0};
    static const int32_t mult[2] = {EDGEC_HALF, EDGEC_HALF}, shift[2] = {1, 1};
    static const int8_t want[4] = {16, -5, -20, 7};
    int8_t out[4], pad[1];
    edgec_dwconv_s8(&p, in, w, bias, mult, shift, out, pad);
    EXPECT_S8(out, want);
}

int main(void) {
    RUN_TEST(depthwise_per_channel_filters);
    RUN_TEST(depthwise_chunks_of_1_4_8);
    RUN_TEST(depthwise_multiplier_two);
    return TESTS_DONE();
}
