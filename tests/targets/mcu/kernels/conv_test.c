/* Conv2D, DepthwiseConv2D and FullyConnected (conv.c). Multipliers are exact powers of two
 * (EDGEC_HALF with shift 0 = x0.5, shift 1 = x1), so every golden value is worked out by
 * hand. The kernels take the bias with input_offset * sum(weights) folded in, as the
 * emitter writes it; the regular convolution takes weight rows zero-padded to a whole
 * number of words and an im2col scratch of two columns (host build: the portable path);
 * depthwise takes an in_c-byte row for its padded taps. */
#include "edgec_kernels.h"
#include "edgec_test.h"

static void conv_valid_window_sums(void) {
    /* 3x3x1 input 1..9, one 2x2 filter of ones: the four window sums. */
    static const edgec_conv_params p = {.batch = 1, .in_h = 3, .in_w = 3, .in_c = 1, .out_h = 2, .out_w = 2,
                                        .out_c = 1, .k_h = 2, .k_w = 2, .stride_h = 1, .stride_w = 1, .dil_h = 1,
                                        .dil_w = 1, .act_min = -128, .act_max = 127};
    static const int8_t in[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    static const int8_t w[4] = {1, 1, 1, 1};
    static const int32_t bias[1] = {0};
    static const int32_t mult[1] = {EDGEC_HALF}, shift[1] = {1};
    static const int8_t want[4] = {12, 16, 24, 28};
    int8_t out[4], scratch[2 * 4];
    edgec_conv_s8(&p, in, w, bias, mult, shift, out, scratch, (int32_t)sizeof scratch);
    EXPECT_S8(out, want);
}

static void conv_pad_stride_offsets_per_channel(void) {
    /* 2x2x2 input (zero point -1: in_offset +1), 3x3 filter, pad 1, stride 2 -> one pixel.
     * oc0 = center tap of channel 0 = 4+1 = 5, +bias 10 = 15, x0.5 = 7.5 -> 8, -5 = 3 -> act_max 2.
     * oc1 = ones over channel 1 = (1+1)+(3+1)+(-1+1)+(2+1) = 9, +bias -3 = 6, x1 = 6, -5 = 1.
     * Folded biases: 10 + 1 * 1 = 11 and -3 + 1 * 9 = 6 (padded taps hold the zero point). */
    static const edgec_conv_params p = {.batch = 1, .in_h = 2, .in_w = 2, .in_c = 2, .out_h = 1, .out_w = 1,
                                        .out_c = 2, .k_h = 3, .k_w = 3, .stride_h = 2, .stride_w = 2, .dil_h = 1,
                                        .dil_w = 1, .pad_h = 1, .pad_w = 1, .in_offset = 1, .out_offset = -5,
                                        .act_min = -10, .act_max = 2};
    static const int8_t in[8] = {4, 1, -2, 3, 6, -1, 0, 2};
    int8_t w[40] = {0}; /* 2 rows of 18 taps, each padded to 20 bytes */
    static const int32_t bias[2] = {11, 6};
    static const int32_t mult[2] = {EDGEC_HALF, EDGEC_HALF}, shift[2] = {0, 1};
    static const int8_t want[2] = {2, 1};
    int8_t out[2], scratch[2 * 20];
    int k;
    w[(1 * 3 + 1) * 2 + 0] = 1;                        /* oc0: ky=1, kx=1, ic=0 */
    for (k = 0; k < 9; ++k) w[20 + k * 2 + 1] = 1;     /* oc1: every tap of ic=1 */
    edgec_conv_s8(&p, in, w, bias, mult, shift, out, scratch, (int32_t)sizeof scratch);
    EXPECT_S8(out, want);
}

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

/* FullyConnected: one rounding step, round half up (LiteRT's FC int8 kernel). */
static void fc_batch_rounding_offset_clamp(void) {
    /* W = [[1, 2, 3], [-1, 0, 1]], bias [0, -5]; x0 = [1, 1, 1], x1 = [2, -1, 0].
     * acc: x0 -> [6, -5], x1 -> [0, -7]; x0.5 with half up -> [3, -2], [0, -3];
     * +1 output offset -> [4, -1], [1, -2]; act_min -1 clamps -2 -> -1. */
    static const edgec_fc_params p = {.batch = 2, .in_k = 3, .out_n = 2, .per_channel = 0, .in_offset = 0,
                                      .out_offset = 1, .act_min = -1, .act_max = 127};
    static const int8_t x[6] = {1, 1, 1, 2, -1, 0};
    static const int8_t w[6] = {1, 2, 3, -1, 0, 1};
    static const int32_t bias[2] = {0, -5};
    static const int32_t mult[1] = {EDGEC_HALF}, shift[1] = {0};
    static const int8_t want[4] = {4, -1, 1, -1};
    int8_t out[4];
    edgec_fc_s8(&p, x, w, bias, mult, shift, out);
    EXPECT_S8(out, want);
}

static void fc_per_channel_saturates(void) {
    /* Row 0 scaled x1, row 1 x2 (shift 2); 100 * 2 saturates to 127, -100 * 2 to -128. */
    static const edgec_fc_params p = {.batch = 1, .in_k = 2, .out_n = 3, .per_channel = 1, .in_offset = 0,
                                      .out_offset = 0, .act_min = -128, .act_max = 127};
    static const int8_t x[2] = {10, -10};
    static const int8_t w[6] = {5, 5, 10, 0, -10, 0};
    static const int32_t bias[3] = {0, 0, 0};
    static const int32_t mult[3] = {EDGEC_HALF, EDGEC_HALF, EDGEC_HALF}, shift[3] = {1, 2, 2};
    static const int8_t want[3] = {0, 127, -128};
    int8_t out[3];
    edgec_fc_s8(&p, x, w, bias, mult, shift, out);
    EXPECT_S8(out, want);
}

int main(void) {
    RUN_TEST(conv_valid_window_sums);
    RUN_TEST(conv_pad_stride_offsets_per_channel);
    RUN_TEST(depthwise_per_channel_filters);
    RUN_TEST(depthwise_chunks_of_1_4_8);
    RUN_TEST(depthwise_multiplier_two);
    RUN_TEST(fc_batch_rounding_offset_clamp);
    RUN_TEST(fc_per_channel_saturates);
    return TESTS_DONE();
}
