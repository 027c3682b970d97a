/* int16 (16x8) kernels (s16.c) on hand-written tensors; bit-exactness against LiteRT's
 * reference kernels is tested in test_mcu_s16.py. */
#include "edgec_s16.h"
#include "edgec_test.h"

static void conv_s16_1x1(void) {
    /* 2 input channels {300, -200}; channel 0: w {100, 50}, bias 1000 -> 21000 x0.5 = 10500;
     * channel 1: w {127, 127} on {32767, 32767} x1 saturates at act_max 32767. */
    static const edgec_conv_params p = {.in_h = 1, .in_w = 1, .in_c = 2, .out_h = 1, .out_w = 1, .out_c = 2,
                                        .act_min = -32768, .act_max = 32767, .batch = 1, .k_h = 1, .k_w = 1,
                                        .stride_h = 1, .stride_w = 1, .dil_h = 1, .dil_w = 1};
    static const int8_t w[4] = {100, 50, 127, 127};
    static const int64_t bias[2] = {1000, 0};
    /* TFLite's (2^30, 0) and (2^30, 1), x0.5 and x1: reduced 2^14, right shifts 15 and 14. */
    static const int32_t mult[2] = {16384, 16384}, shift[2] = {15, 14};
    static const int16_t in1[2] = {300, -200}, in2[2] = {32767, 32767};
    static const int16_t want1[2] = {10500, 12700}, want2[2] = {32767, 32767};
    int16_t out[2];
    edgec_conv_s16(&p, in1, w, bias, mult, shift, out);
    EXPECT_S16(out, want1);
    edgec_conv_s16(&p, in2, w, bias, mult, shift, out);
    EXPECT_S16(out, want2);
}

/* The requantization's int32 path == the int64 definition (TFLite's reduced multiplier, one
 * rounding shift): a 1x1 conv of one channel, weight 1, so the accumulator is the input plus
 * the bias; exponents 0 to -32 (right shifts 15 to 47: both paths and their edges). */
static void conv_s16_requantize_int32_path(void) {
    edgec_conv_params p = {.in_h = 1, .in_w = 1, .in_c = 1, .out_h = 1, .out_w = 1, .out_c = 1,
                           .act_min = -32768, .act_max = 32767, .batch = 1, .k_h = 1, .k_w = 1,
                           .stride_h = 1, .stride_w = 1, .dil_h = 1, .dil_w = 1};
    static const int8_t w[1] = {1};
    uint32_t seed = 12345u;
    int32_t i, bad = 0;
    for (i = 0; i < 200000; ++i) {
        int64_t bias[1], acc, want;
        int32_t mult[1], shift[1], reduced, total;
        int16_t x[1], out[1];
        seed = seed * 1664525u + 1013904223u;
        x[0] = (int16_t)(seed >> 16);
        seed = seed * 1664525u + 1013904223u;
        bias[0] = (int64_t)(int32_t)seed >> (seed & 15); /* mostly under 2^31; some past it below */
        if (i % 7 == 0) bias[0] *= 4096;
        seed = seed * 1664525u + 1013904223u;
        mult[0] = (int32_t)(0x40000000u | (seed >> 2)); /* TFLite's multiplier and exponent */
        shift[0] = -(int32_t)(i % 33);
        acc = x[0] + bias[0];
        reduced = mult[0] < 0x7FFF0000 ? (mult[0] + (1 << 15)) >> 16 : 0x7FFF;
        total = 15 - shift[0];
        mult[0] = reduced, shift[0] = total; /* as ops/s16.py hands them to the kernel */
        want = (acc * reduced + ((int64_t)1 << (total - 1))) >> total;
        want = (int32_t)want < -32768 ? -32768 : (int32_t)want > 32767 ? 32767 : (int32_t)want;
        edgec_conv_s16(&p, x, w, bias, mult, shift, out);
        bad += out[0] != want;
    }
    if (bad) {
        printf("FAIL %s: %d of 200000 differ from the int64 definition\n", edgec_test_name, (int)bad);
        ++edgec_test_failures;
    }
}

static void dwconv_s16_depth_multiplier(void) {
    /* One pixel, channels {100, -100}, depth multiplier 2, weights [tap][out channel]. */
    static const edgec_conv_params p = {.in_h = 1, .in_w = 1, .in_c = 2, .out_h = 1, .out_w = 1, .out_c = 4,
                                        .act_min = -350, .act_max = 32767, .batch = 1, .k_h = 1, .k_w = 1,
                                        .stride_h = 1, .stride_w = 1, .dil_h = 1, .dil_w = 1, .depth_mult = 2};
    static const int8_t w[4] = {1, 2, 3, 4};
    static const int64_t bias[4] = {0, 0, 0, 0};
    static const int32_t mult[4] = {16384, 16384, 16384, 16384}, shift[4] = {14, 14, 14, 14}; /* x1 */
    static const int16_t in[2] = {100, -100};
    static const int16_t want[4] = {100, 200, -300, -350};
    int16_t out[4];
    edgec_dwconv_s16(&p, in, w, bias, mult, shift, out);
    EXPECT_S16(out, want);
}

static void hardswish_s16_scale_2_pow_minus_12(void) {
    /* s_in = s_out = 2^-12: 4.0 -> 4.0; -4.0 -> 0; 1.0 -> 2/3 (2730.7); -1.0 -> -1/3 (-1365.3). */
    static const edgec_hswish16_params p = {.size = 5, .x_lo = -12288, .x_hi = 12288, .gate_q = 43690,
                                            .gate_rl = 21845, .round_l = 16384, .out_mult = EDGEC_HALF,
                                            .out_shift = -14};
    int16_t buf[5] = {16384, -16384, 4096, -4096, 0};
    static const int16_t want[5] = {16384, 0, 2731, -1365, 0};
    edgec_hardswish_s16(&p, buf, buf);
    EXPECT_S16(buf, want);
}

/* The int32 kernel == the definition in int64 arithmetic (gate_mult, S: the unsplit gate)
 * on every int16 input. */
static int16_t hardswish_int64(int32_t x, int64_t gate_mult, int32_t s, int32_t out_mult, int32_t out_shift) {
    int64_t gate = ((x * gate_mult + ((int64_t)1 << (s - 1))) >> s) + ((int64_t)1 << 29), prod, y;
    gate = gate < 0 ? 0 : gate > ((int64_t)1 << 30) ? ((int64_t)1 << 30) : gate;
    prod = (x * gate + (1 << 14)) >> 15;
    y = (prod * out_mult + ((int64_t)1 << (30 - out_shift))) >> (31 - out_shift);
    return (int16_t)(y < -32768 ? -32768 : y > 32767 ? 32767 : y);
}

static void hardswish_s16_every_input(void) {
    /* ops/s16.py's fields for (s_in, s_out) = (1e-5, 1e-5): S = 20 > 15, no clamp reached;
     * (0.03, 1e-6): out_shift 0 (a shift under 32 bits), the clamp at +-101. */
    static const edgec_hswish16_params ps[2] = {
        {.size = 65536, .x_lo = -32769, .x_hi = 32768, .gate_q = 1789, .gate_rh = 18, .gate_rl = 7509,
         .round_h = 16, .round_l = 0, .gate_shift = 5, .out_mult = EDGEC_HALF, .out_shift = -14},
        {.size = 65535, .x_lo = -101, .x_hi = 101, .gate_q = 5368709, .round_l = 16384, .out_mult = 1966079961,
         .out_shift = 0}};
    static const int64_t gate_mult[2] = {1876499797, 1374389504};
    static const int32_t s[2] = {20, 8};
    static int16_t in[65536], out[65536];
    int32_t k, i, bad = 0;
    for (i = 0; i < 65536; ++i) in[i] = (int16_t)(i - 32768);
    for (k = 0; k < 2; ++k) {
        edgec_hardswish_s16(&ps[k], in, out); /* k = 1: an odd size (the pairs' tail) */
        for (i = 0; i < ps[k].size; ++i)
            bad += out[i] != hardswish_int64(in[i], gate_mult[k], s[k], ps[k].out_mult, ps[k].out_shift);
    }
    if (bad) {
        printf("FAIL %s: %d values differ from the int64 definition\n", edgec_test_name, (int)bad);
        ++edgec_test_failures;
    }
}

static void add_s16_general_scale(void) {
    /* Scales 1e-3, 1e-3 -> 2e-3: 1000 + 1000 -> 1000; int16 clamp at the top. */
    static const edgec_add16_params p = {.size = 2, .in1_mult = EDGEC_HALF, .in2_mult = EDGEC_HALF,
                                         .out_mult = EDGEC_HALF, .in1_shift = 0, .in2_shift = 0, .out_shift = -14,
                                         .left_shift = 15, .act_min = -32768, .act_max = 1500};
    static const int16_t a[2] = {1000, 32767}, b[2] = {1000, 32767};
    static const int16_t want[2] = {1000, 1500};
    int16_t out[2];
    edgec_add_s16(&p, a, b, out);
    EXPECT_S16(out, want);
}

static void requant_s8_s16_round_trip(void) {
    /* int8 zero point 5 -> int16 x256 and back; 127 - 5 = 122 -> 31232; -133 x256 saturates. */
    static const edgec_requant_params up = {.size = 3, .mult = EDGEC_HALF, .shift = 9, .in_zp = 5, .out_zp = 0,
                                            .act_min = -32768, .act_max = 32767};
    static const edgec_requant_params down = {.size = 3, .mult = EDGEC_HALF, .shift = -7, .in_zp = 0, .out_zp = 5,
                                              .act_min = -128, .act_max = 127};
    static const int8_t in[3] = {15, -128, 127};
    static const int16_t want16[3] = {2560, -32768, 31232};
    static const int8_t want8[3] = {15, -123, 127};
    int16_t mid[3];
    int8_t back[3];
    edgec_requant_s8_s16(&up, in, mid);
    EXPECT_S16(mid, want16);
    edgec_requant_s16_s8(&down, mid, back);
    EXPECT_S8(back, want8);
}

int main(void) {
    RUN_TEST(conv_s16_1x1);
    RUN_TEST(conv_s16_requantize_int32_path);
    RUN_TEST(dwconv_s16_depth_multiplier);
    RUN_TEST(hardswish_s16_scale_2_pow_minus_12);
    RUN_TEST(hardswish_s16_every_input);
    RUN_TEST(add_s16_general_scale);
    RUN_TEST(requant_s8_s16_round_trip);
    return TESTS_DONE();
}
