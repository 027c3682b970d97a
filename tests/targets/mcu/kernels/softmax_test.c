/* Softmax (softmax.c), output scale 1/256 and zero point -128. The input parameters are
 * softmax_fields(beta=1.0, s_in=0.1) from targets/mcu/ops/softmax.py. Goldens follow from
 * the probabilities: 1/4 -> -64, 1/2 -> 0, 1 -> 128 saturated to 127, ~0 -> -128. */
#include "edgec_kernels.h"
#include "edgec_test.h"

static const edgec_softmax_params p4 = {.outer = 3, .depth = 4, .input_mult = 1717986944, .input_left_shift = 23,
                                        .diff_min = -248};

static void softmax_rows(void) {
    static const int8_t in[12] = {
        7, 7, 7, 7,           /* equal: 1/4 each */
        127, -128, -128, -128, /* one dominant (differences of 25.5): 1, 0, 0, 0 */
        -20, 100, 100, -128,   /* two maxima 12 apart from the rest: 1/2, 1/2 */
    };
    static const int8_t want[12] = {-64, -64, -64, -64, 127, -128, -128, -128, -128, 0, 0, -128};
    int8_t out[12];
    edgec_softmax_s8(&p4, in, out);
    EXPECT_S8(out, want);
}

static void softmax_single_element_is_one(void) {
    static const edgec_softmax_params p1 = {.outer = 1, .depth = 1, .input_mult = 1717986944,
                                            .input_left_shift = 23, .diff_min = -248};
    static const int8_t in[1] = {-77};
    static const int8_t want[1] = {127};
    int8_t out[1];
    edgec_softmax_s8(&p1, in, out);
    EXPECT_S8(out, want);
}

static void softmax_wide_row(void) {
    /* 1024 equal values: 1/1024 each, 0.25 of an output step -> -128. The sum of the
     * exponentials is then over 2^28, so the final shift is 32 (was undefined behaviour). */
    static const edgec_softmax_params p = {.outer = 1, .depth = 1024, .input_mult = 1717986944,
                                           .input_left_shift = 23, .diff_min = -248};
    static int8_t in[1024], out[1024], want[1024];
    int i;
    for (i = 0; i < 1024; ++i) {
        in[i] = 3;
        want[i] = -128;
    }
    edgec_softmax_s8(&p, in, out);
    EXPECT_S8(out, want);
}

int main(void) {
    RUN_TEST(softmax_rows);
    RUN_TEST(softmax_single_element_is_one);
    RUN_TEST(softmax_wide_row);
    return TESTS_DONE();
}
