/* Grouped Conv2D (group_conv.c): each group convolves only its slice of input channels. */
#include "edgec_group_conv.h"
#include "edgec_test.h"

static void two_groups_one_by_one(void) {
    /* 4 input channels, 2 groups, 2 output channels (one per group), 1x1 filters:
     * oc0 = 1*x0 + 2*x1, oc1 = 3*x2 - 1*x3. Two pixels. */
    static const edgec_group_conv_params p = {.batch = 1, .in_h = 1, .in_w = 2, .in_c = 4, .out_h = 1, .out_w = 2,
                                              .out_c = 2, .k_h = 1, .k_w = 1, .stride_h = 1, .stride_w = 1,
                                              .dil_h = 1, .dil_w = 1, .groups = 2, .act_min = -128, .act_max = 127};
    static const int8_t in[8] = {1, 2, 3, 5, -1, 0, 4, 4};
    static const int8_t w[4] = {1, 2, 3, -1};
    static const int32_t bias[2] = {0, 1};
    static const int32_t mult[2] = {EDGEC_HALF, EDGEC_HALF}, shift[2] = {1, 1};
    static const int8_t want[4] = {5, 5, -1, 9};
    int8_t out[4];
    edgec_group_conv_s8(&p, in, w, bias, mult, shift, out);
    EXPECT_S8(out, want);
}

static void three_groups_two_outputs_each_padded(void) {
    /* 3 channels, 3 groups of 1 input -> 2 outputs each (6 channels), 1x2 filter of ones
     * with one column of padding on the left: out(x) = in(x - 1) + in(x), times (oc % 2 + 1). */
    static const edgec_group_conv_params p = {.batch = 1, .in_h = 1, .in_w = 2, .in_c = 3, .out_h = 1, .out_w = 2,
                                              .out_c = 6, .k_h = 1, .k_w = 2, .stride_h = 1, .stride_w = 1,
                                              .dil_h = 1, .dil_w = 1, .pad_w = 1, .groups = 3, .act_min = -128,
                                              .act_max = 127};
    static const int8_t in[6] = {1, 2, 3, 10, 20, 30};
    static const int8_t w[12] = {1, 1, 2, 2, 1, 1, 2, 2, 1, 1, 2, 2};
    static const int32_t mult[6] = {EDGEC_HALF, EDGEC_HALF, EDGEC_HALF, EDGEC_HALF, EDGEC_HALF, EDGEC_HALF};
    static const int32_t shift[6] = {1, 1, 1, 1, 1, 1};
    static const int8_t want[12] = {1, 2, 2, 4, 3, 6, 11, 22, 22, 44, 33, 66};
    int8_t out[12];
    edgec_group_conv_s8(&p, in, w, 0, mult, shift, out);
    EXPECT_S8(out, want);
}

int main(void) {
    RUN_TEST(two_groups_one_by_one);
    RUN_TEST(three_groups_two_outputs_each_padded);
    return TESTS_DONE();
}
