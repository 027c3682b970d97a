/* Pad, Transpose and Concat (shape.c). */
#include "edgec_kernels.h"
#include "edgec_test.h"

static void pad_h_and_w_with_value(void) {
    /* [1, 2, 2, 1] -> one row on top, one column on the right, filled with -3. */
    static const edgec_pad_params p = {.in_dims = {1, 2, 2, 1}, .out_dims = {1, 3, 3, 1}, .pad_before = {0, 1, 0, 0},
                                       .value = -3};
    static const int8_t in[4] = {1, 2, 3, 4};
    static const int8_t want[9] = {-3, -3, -3, 1, 2, -3, 3, 4, -3};
    int8_t out[9];
    edgec_pad_s8(&p, in, out);
    EXPECT_S8(out, want);
}

static void transpose_nhwc_to_nchw(void) {
    /* [1, 2, 2, 3] NHWC -> perm (0, 3, 1, 2): element (h, w, c) = 10 * c + 2 * h + w. */
    static const edgec_transpose_params p = {.in_dims = {1, 2, 2, 3}, .perm = {0, 3, 1, 2}};
    static const int8_t in[12] = {0, 10, 20, 1, 11, 21, 2, 12, 22, 3, 13, 23};
    static const int8_t want[12] = {0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23};
    int8_t out[12];
    edgec_transpose_s8(&p, in, out);
    EXPECT_S8(out, want);
}

static void transpose_3d_padded_to_4d(void) {
    /* An ONNX Transpose (0, 2, 1) of a [1, 2, 3] tensor, as emitted: dims and perm padded to 4-D
     * with a leading axis (in_dims {1, 1, 2, 3}, perm {0, 1, 3, 2}). Element (i, j) = 10 * i + j. */
    static const edgec_transpose_params p = {.in_dims = {1, 1, 2, 3}, .perm = {0, 1, 3, 2}};
    static const int8_t in[6] = {0, 1, 2, 10, 11, 12};
    static const int8_t want[6] = {0, 10, 1, 11, 2, 12};
    int8_t out[6];
    edgec_transpose_s8(&p, in, out);
    EXPECT_S8(out, want);
}

static void transpose_swap_h_and_w(void) {
    /* NHWC [1, 2, 3, 2] -> perm (0, 2, 1, 3): element (h, w, c) = 50 * c + 10 * h + w;
     * the output walks c, then h, then w. */
    static const edgec_transpose_params p = {.in_dims = {1, 2, 3, 2}, .perm = {0, 2, 1, 3}};
    static const int8_t in[12] = {0, 50, 1, 51, 2, 52, 10, 60, 11, 61, 12, 62};
    static const int8_t want[12] = {0, 50, 10, 60, 1, 51, 11, 61, 2, 52, 12, 62};
    int8_t out[12];
    edgec_transpose_s8(&p, in, out);
    EXPECT_S8(out, want);
}

static void concat_channels_with_requantization(void) {
    /* Two pixels: a has 1 channel (same parameters as the output), b 2 channels with
     * scale x2 and zero points 1 -> 0 ((q - 1) x 2). */
    static const edgec_requant_params rq = {.size = 4, .mult = EDGEC_HALF, .shift = 2, .in_zp = 1, .out_zp = 0,
                                            .act_min = -128, .act_max = 127};
    static const int8_t a[2] = {5, 6}, b[4] = {1, 2, 3, 100};
    static const int8_t want[6] = {5, 0, 2, 6, 4, 127};
    int8_t out[6];
    edgec_concat_part_s8(a, out, 2, 1, 3, 0, 0);
    edgec_concat_part_s8(b, out, 2, 2, 3, 1, &rq);
    EXPECT_S8(out, want);
}

int main(void) {
    RUN_TEST(pad_h_and_w_with_value);
    RUN_TEST(transpose_nhwc_to_nchw);
    RUN_TEST(transpose_3d_padded_to_4d);
    RUN_TEST(transpose_swap_h_and_w);
    RUN_TEST(concat_channels_with_requantization);
    return TESTS_DONE();
}
