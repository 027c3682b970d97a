/* Conv2D and FullyConnected (conv.c). Multipliers are exact powers of two
 * (EDGEC_HALF with shift 0 = x0.5, shift 1 = x1), so every golden value is worked out by
 * hand. The kernels take the bias with input_offset * sum(weights) folded in, as the
 * emitter writes it; the regular convolution takes weight rows zero-padded to a whole
 * number of words and an im2col scratch of two columns (host build: the portable path). */
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
    RUN_TEST(fc_batch_rounding_offset_clamp);
    RUN_TEST(fc_per_channel_saturates);
    return TESTS_DONE();
}
