/* FullyConnected (fc.c): one rounding step, round half up (LiteRT's FC int8 kernel). The
 * bias passed in already holds the input zero point's fold (build-time). */
#include "edgec_kernels.h"
#include "edgec_test.h"

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
    static const int32_t mult[3] = {EDGEC_HALF, EDGEC_HALF, EDGEC_HALF}, shift[3] = {1, 2, 2};
    static const int8_t want[3] = {0, 127, -128};
    int8_t out[3];
    edgec_fc_s8(&p, x, w, 0, mult, shift, out);
    EXPECT_S8(out, want);
}

int main(void) {
    RUN_TEST(fc_batch_rounding_offset_clamp);
    RUN_TEST(fc_per_channel_saturates);
    return TESTS_DONE();
}
