/* Add, Mul, requantize, LUT and copy (elementwise.c). Exact power-of-two multipliers. */
#include "edgec_kernels.h"
#include "edgec_test.h"

/* TFLite's add: inputs << 20, each x0.5, sum x2^-19: exactly a + b before the clamp. */
#define ADD_PARAMS .left_shift = 20, .in1_mult = EDGEC_HALF, .in2_mult = EDGEC_HALF, .out_mult = EDGEC_HALF, \
                   .out_shift = -18, .act_min = -128, .act_max = 127

static void add_saturates(void) {
    static const edgec_binary_params p = {.size = 4, .dims = {1, 1, 1, 4}, ADD_PARAMS};
    static const int8_t a[4] = {1, -3, 100, -100}, b[4] = {2, 5, 100, -100};
    static const int8_t want[4] = {3, 2, 127, -128};
    int8_t out[4];
    edgec_add_s8(&p, a, b, out);
    EXPECT_S8(out, want);
}

static void add_broadcast_with_offsets(void) {
    /* a [1,1,2,2] + b [1,1,1,2] broadcast over dim 2; zero points a: -1, b: 2, out: 3. */
    static const edgec_binary_params p = {.size = 4, .dims = {1, 1, 2, 2}, .str1 = {0, 0, 2, 1},
                                          .str2 = {0, 0, 0, 1}, .broadcast = 1, .in1_offset = 1,
                                          .in2_offset = -2, .out_offset = 3, ADD_PARAMS};
    static const int8_t a[4] = {1, 2, 3, 4}, b[2] = {10, 20};
    static const int8_t want[4] = {13, 24, 15, 26};
    int8_t out[4];
    edgec_add_s8(&p, a, b, out);
    EXPECT_S8(out, want);
}

static void mul_offsets_and_act(void) {
    /* (a + 1) * b, x1, then the fused ReLU's lower bound 0. */
    static const edgec_binary_params p = {.size = 4, .dims = {1, 1, 1, 4}, .in1_offset = 1, .out_mult = EDGEC_HALF,
                                          .out_shift = 1, .act_min = 0, .act_max = 127};
    static const int8_t a[4] = {3, -4, 20, 0}, b[4] = {5, 6, 10, -7};
    static const int8_t want[4] = {20, 0, 127, 0};
    int8_t out[4];
    edgec_mul_s8(&p, a, b, out);
    EXPECT_S8(out, want);
}

static void requant_scale_zero_points_relu(void) {
    /* (q + 2) x2 + 3, clamped to [3, 127] (a ReLU at output zero point 3). */
    static const edgec_requant_params p = {.size = 5, .mult = EDGEC_HALF, .shift = 2, .in_zp = -2, .out_zp = 3,
                                           .act_min = 3, .act_max = 127};
    static const int8_t in[5] = {0, 1, -1, 50, -70};
    static const int8_t want[5] = {7, 9, 5, 107, 3};
    int8_t out[5];
    edgec_requant_s8(&p, in, out);
    EXPECT_S8(out, want);
}

static void requant_rounds_half_up(void) {
    /* x0.5 in one SaturatingRoundingDoublingHighMul: ties go up, 1.5 -> 2 and -1.5 -> -1,
     * 2.5 -> 3 and -2.5 -> -2 (as gemmlowp and TFLite round). */
    static const edgec_requant_params p = {.size = 4, .mult = EDGEC_HALF, .shift = 0, .act_min = -128,
                                           .act_max = 127};
    static const int8_t in[4] = {3, -3, 5, -5};
    int8_t out[4];
    static const int8_t want[4] = {2, -1, 3, -2};
    edgec_requant_s8(&p, in, out);
    EXPECT_S8(out, want);
}

static void lut_in_place(void) {
    int8_t table[256], buf[4] = {-128, -5, 0, 127};
    static const int8_t want[4] = {127, 5, 0, -127};
    int i;
    for (i = 0; i < 256; ++i) table[i] = (int8_t)(i == 0 ? 127 : 128 - i); /* -x, saturated */
    edgec_lut_s8(4, table, buf, buf);
    EXPECT_S8(buf, want);
}

static void copy_between_buffers(void) {
    static const int8_t in[3] = {1, -2, 3};
    int8_t out[3] = {0, 0, 0};
    edgec_copy_s8(3, in, out);
    EXPECT_S8(out, in);
}

int main(void) {
    RUN_TEST(add_saturates);
    RUN_TEST(add_broadcast_with_offsets);
    RUN_TEST(mul_offsets_and_act);
    RUN_TEST(requant_scale_zero_points_relu);
    RUN_TEST(requant_rounds_half_up);
    RUN_TEST(lut_in_place);
    RUN_TEST(copy_between_buffers);
    return TESTS_DONE();
}
