/* MaxPool, AveragePool and Mean (pool.c). Pooling windows exclude padding (TFLite). */
#include "edgec_kernels.h"
#include "edgec_test.h"

static const int8_t grid[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}; /* 3x3x1 */

static void maxpool_valid(void) {
    static const edgec_pool_params p = {.batch = 1, .in_h = 3, .in_w = 3, .c = 1, .out_h = 2, .out_w = 2, .k_h = 2,
                                        .k_w = 2, .stride_h = 1, .stride_w = 1, .act_min = -128, .act_max = 127};
    static const int8_t want[4] = {5, 6, 8, 9};
    int8_t out[4];
    edgec_maxpool_s8(&p, grid, out);
    EXPECT_S8(out, want);
}

static void maxpool_padded_stride2_clamped(void) {
    /* Windows start at -1 and 1: {1}, {2, 3}... -> 1, 3, 7, 9; act_max 8 clamps 9. */
    static const edgec_pool_params p = {.batch = 1, .in_h = 3, .in_w = 3, .c = 1, .out_h = 2, .out_w = 2, .k_h = 2,
                                        .k_w = 2, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1,
                                        .act_min = -128, .act_max = 8};
    static const int8_t want[4] = {1, 3, 7, 8};
    int8_t out[4];
    edgec_maxpool_s8(&p, grid, out);
    EXPECT_S8(out, want);
}

static void avgpool_rounds_half_away_and_skips_padding(void) {
    /* Pad 1 on a 2x2 input: the windows hold 1, 2, 2 and 4 real values (padding is not
     * counted). Averages 1, 1.5 -> 2, 2, 2.5 -> 3; ties round away from zero, so the
     * negated channel gives -1, -2, -2, -3. */
    static const edgec_pool_params p = {.batch = 1, .in_h = 2, .in_w = 2, .c = 2, .out_h = 2, .out_w = 2, .k_h = 2,
                                        .k_w = 2, .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1,
                                        .act_min = -128, .act_max = 127};
    /* channel 0: [[1, 2], [3, 4]]; channel 1: [[-1, -2], [-3, -4]] */
    static const int8_t in[8] = {1, -1, 2, -2, 3, -3, 4, -4};
    /* windows (padding excluded): {1}, {1, 2}, {1, 3}, {1, 2, 3, 4} */
    static const int8_t want[8] = {1, -1, 2, -2, 2, -2, 3, -3};
    int8_t out[8];
    edgec_avgpool_s8(&p, in, out);
    EXPECT_S8(out, want);
}

static void avgpool_valid(void) {
    static const edgec_pool_params p = {.batch = 1, .in_h = 3, .in_w = 3, .c = 1, .out_h = 2, .out_w = 2, .k_h = 2,
                                        .k_w = 2, .stride_h = 1, .stride_w = 1, .act_min = -128, .act_max = 127};
    static const int8_t want[4] = {3, 4, 6, 7};
    int8_t out[4];
    edgec_avgpool_s8(&p, grid, out);
    EXPECT_S8(out, want);
}

static void avgpool_counting_padding(void) {
    /* ONNX count_include_pad=1: the padded taps hold the zero point 2 and count. 2x2 input
     * [[6, 8], [10, 12]], 2x2 windows, pad 1 top/left: (2+2+2+6)/4 = 3, (2+2+6+8)/4 = 4.5 -> 5,
     * (2+6+2+10)/4 = 5, (6+8+10+12)/4 = 9. */
    static const edgec_pool_params p = {.batch = 1, .in_h = 2, .in_w = 2, .c = 1, .out_h = 2, .out_w = 2, .k_h = 2,
                                        .k_w = 2, .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1,
                                        .act_min = -128, .act_max = 127, .count_pad = 1, .pad_value = 2};
    static const int8_t in[4] = {6, 8, 10, 12};
    static const int8_t want[4] = {3, 5, 5, 9};
    int8_t out[4];
    edgec_avgpool_s8(&p, in, out);
    EXPECT_S8(out, want);
}

static void mean_with_zero_points(void) {
    /* Mean over 4 rows of 2 channels, scale x1/4 (EDGEC_HALF, shift -1), input zero point 1,
     * output zero point -1. Channel 0: (16 - 4) / 4 = 3, - 1 = 2. Channel 1: 17 x 0.5 = 8.5
     * -> 9 in the high multiply, then / 2 = 4.5 -> 5 in the rounding shift (TFLite's two
     * rounding steps; one step would give 4), - 1 = 4. */
    static const edgec_mean_params p = {.outer = 1, .reduce = 4, .inner = 2, .mult = EDGEC_HALF, .shift = -1,
                                        .in_zp = 1, .out_zp = -1};
    static const int8_t in[8] = {1, 2, 3, 4, 5, 6, 7, 9};
    static const int8_t want[2] = {2, 4};
    int8_t out[2];
    edgec_mean_s8(&p, in, out);
    EXPECT_S8(out, want);
}

int main(void) {
    RUN_TEST(maxpool_valid);
    RUN_TEST(maxpool_padded_stride2_clamped);
    RUN_TEST(avgpool_valid);
    RUN_TEST(avgpool_rounds_half_away_and_skips_padding);
    RUN_TEST(avgpool_counting_padding);
    RUN_TEST(mean_with_zero_points);
    return TESTS_DONE();
}
