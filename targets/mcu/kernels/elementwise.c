/* Element-wise int8 kernels: Add, Mul (with 4-D broadcasting), requantize/ReLU, LUT, copy. */
#include "edgec_kernels.h"
#include "edgec_fixedpoint.h"

static int32_t edgec_add_one(const edgec_binary_params *p, int32_t a, int32_t b) {
    const int32_t x1 = (a + p->in1_offset) * ((int32_t)1 << p->left_shift);
    const int32_t x2 = (b + p->in2_offset) * ((int32_t)1 << p->left_shift);
    const int32_t s1 = edgec_mbqm(x1, p->in1_mult, p->in1_shift);
    const int32_t s2 = edgec_mbqm(x2, p->in2_mult, p->in2_shift);
    const int32_t r = edgec_mbqm(s1 + s2, p->out_mult, p->out_shift) + p->out_offset;
    return edgec_clamp(r, p->act_min, p->act_max);
}

static int32_t edgec_mul_one(const edgec_binary_params *p, int32_t a, int32_t b) {
    const int32_t prod = (a + p->in1_offset) * (b + p->in2_offset);
    const int32_t r = edgec_mbqm(prod, p->out_mult, p->out_shift) + p->out_offset;
    return edgec_clamp(r, p->act_min, p->act_max);
}

typedef int32_t (*edgec_binary_fn)(const edgec_binary_params *, int32_t, int32_t);

static void edgec_binary(const edgec_binary_params *p, const int8_t *a, const int8_t *b,
                         int8_t *out, edgec_binary_fn fn) {
    int32_t i, i0, i1, i2, i3;
    if (!p->broadcast) {
        for (i = 0; i < p->size; ++i) out[i] = (int8_t)fn(p, a[i], b[i]);
        return;
    }
    for (i0 = 0; i0 < p->dims[0]; ++i0)
        for (i1 = 0; i1 < p->dims[1]; ++i1)
            for (i2 = 0; i2 < p->dims[2]; ++i2)
                for (i3 = 0; i3 < p->dims[3]; ++i3) {
                    const int32_t ia = i0 * p->str1[0] + i1 * p->str1[1] + i2 * p->str1[2] + i3 * p->str1[3];
                    const int32_t ib = i0 * p->str2[0] + i1 * p->str2[1] + i2 * p->str2[2] + i3 * p->str2[3];
                    *out++ = (int8_t)fn(p, a[ia], b[ib]);
                }
}

/* Add without broadcasting (residual connections): parameters in locals (int8 stores may
 * alias *p), no call per element, 4 lanes at a time on Helium (also at -Os:
 * residual Adds are a third of IC ResNet-8's -Os time without it). Same arithmetic as
 * edgec_add_one. */
static void edgec_add_flat(const edgec_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) {
    const int32_t size = p->size, left = p->left_shift, off1 = p->in1_offset, off2 = p->in2_offset;
    const int32_t m1 = p->in1_mult, s1 = p->in1_shift, m2 = p->in2_mult, s2 = p->in2_shift;
    const int32_t mo = p->out_mult, so = p->out_shift, out_off = p->out_offset, lo = p->act_min, hi = p->act_max;
    int32_t i = 0;
#if defined(__ARM_FEATURE_MVE)
    /* Every parameter a scalar operand (VSHL/VQRDMULH/VMLA/VRSHL by a core register): no
     * vector register holds a constant. edgec_mbqm_mve with the input's left shift folded in. */
    const int32_t l1 = left + (s1 > 0 ? s1 : 0), r1 = s1 < 0 ? s1 : 0, f1 = s1 < 0;
    const int32_t l2 = left + (s2 > 0 ? s2 : 0), r2 = s2 < 0 ? s2 : 0, f2 = s2 < 0;
    const int32_t lo_ = so > 0 ? so : 0, ro = so < 0 ? so : 0, fo = so < 0;
    const int32x4_t vlo = vdupq_n_s32(lo), vhi = vdupq_n_s32(hi);
    for (; i + 4 <= size; i += 4) {
        int32x4_t x1 = vqrdmulhq_n_s32(vshlq_r_s32(vaddq_n_s32(vldrbq_s32(a + i), off1), l1), m1);
        int32x4_t x2 = vqrdmulhq_n_s32(vshlq_r_s32(vaddq_n_s32(vldrbq_s32(b + i), off2), l2), m2);
        int32x4_t r;
        /* RoundingDivideByPOT: negative values lose one first where a right shift follows. */
        x1 = vrshlq_n_s32(vmlaq_n_s32(x1, vshrq_n_s32(x1, 31), f1), r1);
        x2 = vrshlq_n_s32(vmlaq_n_s32(x2, vshrq_n_s32(x2, 31), f2), r2);
        r = vqrdmulhq_n_s32(vshlq_r_s32(vaddq_s32(x1, x2), lo_), mo);
        r = vaddq_n_s32(vrshlq_n_s32(vmlaq_n_s32(r, vshrq_n_s32(r, 31), fo), ro), out_off);
        vstrbq_s32(out + i, vminq_s32(vmaxq_s32(r, vlo), vhi));
    }
#endif
    for (; i < size; ++i) {
        const int32_t x1 = (a[i] + off1) * ((int32_t)1 << left), x2 = (b[i] + off2) * ((int32_t)1 << left);
        const int32_t r = edgec_mbqm(edgec_mbqm(x1, m1, s1) + edgec_mbqm(x2, m2, s2), mo, so) + out_off;
        out[i] = (int8_t)edgec_clamp(r, lo, hi);
    }
}

void edgec_add_s8(const edgec_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) {
    if (!p->broadcast) {
        edgec_add_flat(p, a, b, out);
        return;
    }
    edgec_binary(p, a, b, out, edgec_add_one);
}

void edgec_mul_s8(const edgec_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) {
    edgec_binary(p, a, b, out, edgec_mul_one);
}

void edgec_requant_s8(const edgec_requant_params *p, const int8_t *in, int8_t *out) {
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t v = edgec_mbqm_requant((int32_t)in[i] - p->in_zp, p->mult, p->shift) + p->out_zp;
        out[i] = (int8_t)edgec_clamp(v, p->act_min, p->act_max);
    }
}

void edgec_lut_s8(int32_t size, const int8_t *table, const int8_t *in, int8_t *out) {
    int32_t i;
    for (i = 0; i < size; ++i) out[i] = table[(int32_t)in[i] + 128];
}

void edgec_copy_s8(int32_t size, const int8_t *in, int8_t *out) {
    int32_t i;
    if (in == out) return;
    for (i = 0; i < size; ++i) out[i] = in[i];
}
