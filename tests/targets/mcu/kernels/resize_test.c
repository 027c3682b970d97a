/* Bilinear resize (resize.c). Goldens worked by hand from TFLite's integer arithmetic
 * (ResizeBilinearInteger): 10-bit source coordinates, weights to 20 bits, rounding half
 * away from zero; they equal the float interpolation rounded the same way. */
#include "edgec_resize.h"
#include "edgec_test.h"

static void width_x2_half_pixel(void) {
    /* [1, 1, 2, 2] -> [1, 1, 4, 2]; scale 512 (= 1/2). Source x: -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
     * Channel 0: 0 and 100 -> 0, 25, 75, 100. Channel 1: -1 and 0 -> -1, -0.75 -> -1, -0.25 -> 0, 0. */
    static const edgec_resize_params p = {.in_dims = {1, 1, 2, 2}, .out_h = 1, .out_w = 4, .scale_h = 1024,
                                          .scale_w = 512, .half_pixel = 1};
    static const int8_t in[4] = {0, -1, 100, 0};
    static const int8_t want[8] = {0, -1, 25, -1, 75, 0, 100, 0};
    int8_t out[8];
    edgec_resize_bilinear_s8(&p, in, out);
    EXPECT_S8(out, want);
}

static void height_x2_asymmetric(void) {
    /* [1, 2, 1, 1] -> [1, 4, 1, 1] without half-pixel centres: source y 0, 0.5, 1, 1.5 (clamped).
     * 10 and -11 -> 10, -0.5 -> -1 (half away from zero), -11, -11. */
    static const edgec_resize_params p = {.in_dims = {1, 2, 1, 1}, .out_h = 4, .out_w = 1, .scale_h = 512,
                                          .scale_w = 1024, .half_pixel = 0};
    static const int8_t in[2] = {10, -11};
    static const int8_t want[4] = {10, -1, -11, -11};
    int8_t out[4];
    edgec_resize_bilinear_s8(&p, in, out);
    EXPECT_S8(out, want);
}

int main(void) {
    RUN_TEST(width_x2_half_pixel);
    RUN_TEST(height_x2_asymmetric);
    return TESTS_DONE();
}
