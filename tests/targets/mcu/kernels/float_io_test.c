/* Float I/O (float_io.c): TFLite's Quantize rounds half away from zero and saturates. */
#include "edgec_kernels.h"
#include "edgec_test.h"

static void quantize_rounds_and_saturates(void) {
    /* scale 0.5, zero point 1: x / 0.5 = 1, -1, 2.52, 0.5, -0.5, 2000, -2000. */
    static const float in[7] = {0.5f, -0.5f, 1.26f, 0.25f, -0.25f, 1000.0f, -1000.0f};
    static const int8_t want[7] = {2, 0, 4, 2, 0, 127, -128};
    int8_t out[7];
    edgec_quantize_f32_s8(7, 0.5f, 1, in, out);
    EXPECT_S8(out, want);
}

static void dequantize(void) {
    static const int8_t in[3] = {-128, 1, 127};
    static const float want[3] = {-64.5f, 0.0f, 63.0f};
    float out[3];
    edgec_dequantize_s8_f32(3, 0.5f, 1, in, out);
    EXPECT_F32(out, want);
}

int main(void) {
    RUN_TEST(quantize_rounds_and_saturates);
    RUN_TEST(dequantize);
    return TESTS_DONE();
}
