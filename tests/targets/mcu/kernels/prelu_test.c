/* PRelu (prelu.c): positive inputs x1, negative ones times alpha, x0.5. */
#include "edgec_prelu.h"
#include "edgec_test.h"

static void prelu_per_channel_alpha(void) {
    /* [1, 1, 2, 2], alpha per channel [2, -1] (broadcast over W), output zero point 1:
     * 3 -> 3; -4 * -1 = 4 x0.5 = 2; -5 * 2 = -10 x0.5 = -5; 6 -> 6; then + 1. */
    static const edgec_prelu_params p = {.dims = {1, 1, 2, 2}, .alpha_str = {0, 0, 0, 1}, .out_offset = 1,
                                         .pos_mult = EDGEC_HALF, .pos_shift = 1, .neg_mult = EDGEC_HALF,
                                         .neg_shift = 0};
    static const int8_t alpha[2] = {2, -1};
    int8_t buf[4] = {3, -4, -5, 6};
    static const int8_t want[4] = {4, 3, -4, 7};
    edgec_prelu_s8(&p, buf, alpha, buf); /* in place, as the planner runs it */
    EXPECT_S8(buf, want);
}

static void prelu_offsets_and_saturation(void) {
    /* Input zero point 2 (offset -2) and alpha zero point -1 (offset +1): x = q - 2;
     * q = 1 -> x = -1, alpha 3 + 1 = 4 -> -4 x0.5 = -2; q = 127 -> 125 x1 = 125 + 10 -> 127 saturated. */
    static const edgec_prelu_params p = {.dims = {1, 1, 1, 2}, .in_offset = -2, .alpha_offset = 1, .out_offset = 10,
                                         .pos_mult = EDGEC_HALF, .pos_shift = 1, .neg_mult = EDGEC_HALF,
                                         .neg_shift = 0};
    static const int8_t alpha[1] = {3}, in[2] = {1, 127};
    static const int8_t want[2] = {8, 127};
    int8_t out[2];
    edgec_prelu_s8(&p, in, alpha, out);
    EXPECT_S8(out, want);
}

int main(void) {
    RUN_TEST(prelu_per_channel_alpha);
    RUN_TEST(prelu_offsets_and_saturation);
    return TESTS_DONE();
}
