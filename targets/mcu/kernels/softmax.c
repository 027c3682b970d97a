/* Softmax, int8 in -> int8 out (scale 1/256, zero point -128), with gemmlowp's fixed-point
 * exp and reciprocal as in TFLite's int8 reference kernel: inputs are scaled to Q5.26,
 * exponentials summed in Q12.19, normalised by a Newton-Raphson reciprocal. */
#include "edgec_kernels.h"
#include "edgec_fixedpoint.h"

/* exp(x) for x in [-1/4, 0), Q0.31 in and out (Taylor series around -1/8). */
static int32_t edgec_exp_quarter(int32_t a) {
    const int32_t constant_term = 1895147668;
    const int32_t one_third = 715827883;
    const int32_t x = a + ((int32_t)1 << 28);
    const int32_t x2 = edgec_srdhm(x, x);
    const int32_t x3 = edgec_srdhm(x2, x);
    const int32_t x4 = edgec_srdhm(x2, x2);
    const int32_t x4_over_4 = edgec_rdbpot(x4, 2);
    const int32_t poly = edgec_rdbpot(edgec_srdhm(x4_over_4 + x3, one_third) + x2, 1);
    return constant_term + edgec_srdhm(constant_term, x + poly);
}

/* exp(a) for a <= 0 given in Q5.26; result Q0.31. */
static int32_t edgec_exp_neg_q5(int32_t a) {
    static const int32_t mults[7] = {1672461947, 1302514674, 790015084, 290630308,
                                     39332535, 720401, 242};
    const int32_t quarter = (int32_t)1 << 24;
    const int32_t a_mod = (a & (quarter - 1)) - quarter;
    int32_t result = edgec_exp_quarter(edgec_sat_shl(a_mod, 5));
    const int32_t remainder = a_mod - a;
    int32_t k;
    for (k = 0; k < 7; ++k) {
        if (remainder & ((int32_t)1 << (24 + k))) result = edgec_srdhm(result, mults[k]);
    }
    return a == 0 ? EDGEC_INT32_MAX : result;
}

/* 1 / (1 + x) for x in [0, 1), Q0.31 in and out. */
static int32_t edgec_one_over_one_plus_x(int32_t a) {
    const int64_t sum = (int64_t)a + EDGEC_INT32_MAX;
    const int32_t half_den = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    int32_t x = 1515870810 + edgec_srdhm(half_den, -1010580540);
    int32_t i;
    for (i = 0; i < 3; ++i) {
        const int32_t hdx = edgec_srdhm(half_den, x);
        const int32_t one_minus = ((int32_t)1 << 29) - hdx;
        x = x + edgec_sat_shl(edgec_srdhm(x, one_minus), 2);
    }
    return edgec_sat_shl(x, 1);
}

static int32_t edgec_clz32(uint32_t x) {
    int32_t n = 0;
    if (x == 0) return 32;
    while (!(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
}

EDGEC_COLD void edgec_softmax_s8(const edgec_softmax_params *p, const int8_t *in, int8_t *out) {
    int32_t i, c;
    for (i = 0; i < p->outer; ++i) {
        const int8_t *x = in + i * p->depth;
        int8_t *y = out + i * p->depth;
        int32_t max_v = -128, sum = 0, headroom, bits_over_unit, scale, exponent;
        for (c = 0; c < p->depth; ++c) if (x[c] > max_v) max_v = x[c];
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_v;
            if (diff >= p->diff_min) {
                const int32_t scaled = edgec_srdhm(diff * ((int32_t)1 << p->input_left_shift), p->input_mult);
                sum += edgec_rdbpot(edgec_exp_neg_q5(scaled), 12);
            }
        }
        headroom = edgec_clz32((uint32_t)sum);
        bits_over_unit = 12 - headroom;
        scale = edgec_one_over_one_plus_x((int32_t)(((uint32_t)sum << headroom) - ((uint32_t)1 << 31)));
        exponent = bits_over_unit + 31 - 8;
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_v;
            if (diff >= p->diff_min) {
                const int32_t scaled = edgec_srdhm(diff * ((int32_t)1 << p->input_left_shift), p->input_mult);
                const int32_t e = edgec_exp_neg_q5(scaled);
                const int32_t v = edgec_rdbpot(edgec_srdhm(scale, e), exponent) - 128;
                y[c] = (int8_t)edgec_clamp(v, -128, 127);
            } else {
                y[c] = -128;
            }
        }
    }
}
