/* Conv2D and FullyConnected, int8 NHWC, per-channel requantization (DepthwiseConv2D: dwconv.c).
 *
 * One source, three instruction sets. The inner loops follow the compiler's ACLE feature
 * macros, which `edgec build --cpu` sets through its flags:
 *   __ARM_FEATURE_MVE  Helium (M55/M85): 16-lane int8 dot products (VMLADAVA), 4-lane
 *                      vector requantization;
 *   __ARM_FEATURE_DSP  SIMD32 (M4/M7/M33): SXTB16 + SMLAD, two int8 MACs per instruction;
 *   neither            portable C (M0/M0+/M3 and the host build).
 * All variants form the same int32 sums and requantize them the same way as LiteRT's
 * reference kernels, so their outputs are identical bit for bit.
 *
 * The bias every kernel receives is bias + input_offset * sum(weights of the channel),
 * folded at build time, so the hot loops multiply raw int8 values. Regular convolutions
 * copy each receptive field into a column (im2col) whose padded taps hold the input zero
 * point, which then adds exactly nothing. */
#include "edgec_conv_internal.h"

#if defined(EDGEC_MVE)
#define EDGEC_DOT mve_dot
#else
#define EDGEC_DOT dot_s8
#endif

/* Optimizing for size (-Os), FullyConnected's SIMD32 loops stay only where FullyConnected
 * is a good part of the model (edgec_config.h); elsewhere the portable C loop: a few
 * hundred bytes less, the same sums. */
#if defined(EDGEC_DSP) && (!defined(__OPTIMIZE_SIZE__) || EDGEC_FC_FAST)
#define EDGEC_DSP_GEMM 1
#endif

/* out[j * out_stride + n] = requant(bias[n] + w[n, :] . cols[j * k : (j + 1) * k]) for
 * the n_rows weight rows and n_cols columns (n_cols <= 2 except on the scalar path). */
static inline __attribute__((always_inline)) void gemm_s8(
    const int8_t *w, int32_t n_rows, int32_t k, const int8_t *cols, int32_t n_cols, const edgec_rq *rq,
    int8_t *out, int32_t out_stride, const int single_round, const uint32_t *xs) {
    /* A local copy: int8 stores may alias anything, so fields read through the pointer
     * would be reloaded after every output byte. */
    edgec_rq local = *rq;
    const edgec_rq *q = &local;
    int32_t n = 0;
    (void)xs;
    local.single_round = single_round;
    if (!single_round) local.per_channel = 1;
#if defined(EDGEC_MVE)
    int32_t j;
    for (j = 0; j < n_cols; ++j) {
        const int8_t *x = cols + j * k;
        int8_t *o = out + j * out_stride;
        n = 0;
#if defined(__OPTIMIZE_SIZE__) && !EDGEC_FC_FAST
        /* Optimizing for size, a small FullyConnected takes the one-row loop below. */
        if (!single_round)
#endif
        for (; n + 4 <= n_rows; n += 4) {
            const int8_t *w0 = w + n * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k, *xp = x;
            int32_t a0 = q->bias[n], a1 = q->bias[n + 1], a2 = q->bias[n + 2], a3 = q->bias[n + 3], r;
            int32x4_t acc;
            r = k >> 4;
            if (r > 0) {
                /* 64 MACs in 11 instructions: GCC addresses each load with an extra SUB.
                 * VMLADAVA needs even accumulator registers ("Te"). */
                __asm__ volatile(
                    "1:\n\t"
                    "vldrb.8 q0, [%[xp]], #16\n\t"
                    "vldrb.8 q1, [%[w0]], #16\n\t"
                    "vmladava.s8 %[a0], q1, q0\n\t"
                    "vldrb.8 q1, [%[w1]], #16\n\t"
                    "vmladava.s8 %[a1], q1, q0\n\t"
                    "vldrb.8 q1, [%[w2]], #16\n\t"
                    "vmladava.s8 %[a2], q1, q0\n\t"
                    "vldrb.8 q1, [%[w3]], #16\n\t"
                    "vmladava.s8 %[a3], q1, q0\n\t"
                    "subs %[r], %[r], #1\n\t"
                    "bne 1b\n\t"
                    : [a0] "+Te"(a0), [a1] "+Te"(a1), [a2] "+Te"(a2), [a3] "+Te"(a3), [xp] "+r"(xp),
                      [w0] "+r"(w0), [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3), [r] "+r"(r)
                    :
                    : "q0", "q1", "cc", "memory");
            }
            r = k & 15;
            if (r > 0) {
                const mve_pred16_t p = vctp8q((uint32_t)r);
                const int8x16_t xv = vldrbq_z_s8(xp, p);
                a0 = vmladavaq_p_s8(a0, vldrbq_z_s8(w0, p), xv, p);
                a1 = vmladavaq_p_s8(a1, vldrbq_z_s8(w1, p), xv, p);
                a2 = vmladavaq_p_s8(a2, vldrbq_z_s8(w2, p), xv, p);
                a3 = vmladavaq_p_s8(a3, vldrbq_z_s8(w3, p), xv, p);
            }
            if (single_round) {
                o[n] = rq_one(q, a0, n);
                o[n + 1] = rq_one(q, a1, n + 1);
                o[n + 2] = rq_one(q, a2, n + 2);
                o[n + 3] = rq_one(q, a3, n + 3);
                continue;
            }
            acc = vdupq_n_s32(a0);
            acc = vsetq_lane_s32(a1, acc, 1);
            acc = vsetq_lane_s32(a2, acc, 2);
            acc = vsetq_lane_s32(a3, acc, 3);
            rq_store4(q, acc, n, o + n);
        }
        for (; n < n_rows; ++n) o[n] = rq_one(q, mve_dot(w + n * k, x, k, q->bias[n]), n);
    }
#elif defined(EDGEC_DSP_GEMM)
    const int32_t k4 = k & ~3;
    (void)n_cols, (void)out_stride; /* FullyConnected: one column */
    /* FullyConnected passes its column sign-extended into int16 pairs (gemm_fc). */
#if !defined(__ARM_FP)
    const int widen = xs != 0;
#endif
    for (n = 0; n + 4 <= n_rows; n += 4) {
        const int8_t *w0 = w + n * k, *w2 = w0 + 2 * k;
        int32_t a0 = q->bias[n], a1 = q->bias[n + 1], a2 = q->bias[n + 2], a3 = q->bias[n + 3], i = 0;
        /* The assembly loop needs 13 spare registers, which GCC does not find with an FPU
         * enabled (softfp builds, float I/O models): C there, as for conv's fallback. */
#if !defined(__ARM_FP)
        if (widen) {
            const uint32_t *x = xs, *x_end = xs + k4 / 2;
            const int8_t *r0 = w0, *r2 = w2;
            uint32_t xv, xl, xh, wv;
            i = k4;
            /* 16 MACs in 23 instructions (GCC spills this loop): 4 rows, one column of int16
             * pairs; 13 registers. */
            __asm__ volatile(
                "1:\n\t"
                "ldrd %[xl], %[xh], [%[x]], #8\n\t"
                "ldr %[wv], [%[r0], %[k]]\n\t"
                "sxtb16 %[xv], %[wv]\n\t"
                "smlad %[a1], %[xv], %[xl], %[a1]\n\t"
                "sxtb16 %[xv], %[wv], ror #8\n\t"
                "smlad %[a1], %[xv], %[xh], %[a1]\n\t"
                "ldr %[wv], [%[r0]], #4\n\t"
                "sxtb16 %[xv], %[wv]\n\t"
                "smlad %[a0], %[xv], %[xl], %[a0]\n\t"
                "sxtb16 %[xv], %[wv], ror #8\n\t"
                "smlad %[a0], %[xv], %[xh], %[a0]\n\t"
                "ldr %[wv], [%[r2], %[k]]\n\t"
                "sxtb16 %[xv], %[wv]\n\t"
                "smlad %[a3], %[xv], %[xl], %[a3]\n\t"
                "sxtb16 %[xv], %[wv], ror #8\n\t"
                "smlad %[a3], %[xv], %[xh], %[a3]\n\t"
                "ldr %[wv], [%[r2]], #4\n\t"
                "sxtb16 %[xv], %[wv]\n\t"
                "smlad %[a2], %[xv], %[xl], %[a2]\n\t"
                "sxtb16 %[xv], %[wv], ror #8\n\t"
                "smlad %[a2], %[xv], %[xh], %[a2]\n\t"
                "cmp %[x], %[x_end]\n\t"
                "bne 1b\n\t"
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x), [r0] "+r"(r0),
                  [r2] "+r"(r2), [xv] "=&r"(xv), [xl] "=&r"(xl), [xh] "=&r"(xh), [wv] "=&r"(wv)
                : [k] "r"(k), [x_end] "r"(x_end)
                : "cc", "memory");
        } else
#endif
        {
            for (; i < k4; i += 4) {
                const uint32_t x = ld32(cols + i);
                const int32_t xl = sx02(x), xh = sx13(x);
                uint32_t v = ld32(w0 + i);
                a0 = __smlad(sx13(v), xh, __smlad(sx02(v), xl, a0));
                v = ld32(w0 + k + i);
                a1 = __smlad(sx13(v), xh, __smlad(sx02(v), xl, a1));
                v = ld32(w2 + i);
                a2 = __smlad(sx13(v), xh, __smlad(sx02(v), xl, a2));
                v = ld32(w2 + k + i);
                a3 = __smlad(sx13(v), xh, __smlad(sx02(v), xl, a3));
            }
        }
        if (i < k) {
            a0 = dot_s8(w0 + i, cols + i, k - i, a0);
            a1 = dot_s8(w0 + k + i, cols + i, k - i, a1);
            a2 = dot_s8(w2 + i, cols + i, k - i, a2);
            a3 = dot_s8(w2 + k + i, cols + i, k - i, a3);
        }
        out[n] = rq_one(q, a0, n);
        out[n + 1] = rq_one(q, a1, n + 1);
        out[n + 2] = rq_one(q, a2, n + 2);
        out[n + 3] = rq_one(q, a3, n + 3);
    }
    for (; n < n_rows; ++n) out[n] = rq_one(q, dot_s8(w + n * k, cols, k, q->bias[n]), n);
#else
    int32_t j;
    for (j = 0; j < n_cols; ++j) {
        for (n = 0; n < n_rows; ++n) {
            out[j * out_stride + n] = rq_one(q, dot_s8(w + n * k, cols + j * k, k, q->bias[n]), n);
        }
    }
#endif
}

#if defined(EDGEC_DSP_COLS16)
/* SIMD32 regular convolutions (CMSIS-NN's idea: sign-extend the columns once, not once per
 * output channel). Two columns become int16 pairs interleaved per 4 k: (x0,x2) (x1,x3) of
 * column 0, then of column 1; a weight word gives the matching pairs with SXTB16. */
static void expand2(const int8_t *c0, const int8_t *c1, int32_t k, int32_t *dst) {
    int32_t i;
    for (i = 0; i < k; i += 4, dst += 4) {
        const uint32_t a = ld32(c0 + i), b = ld32(c1 + i);
        dst[0] = sx02(a);
        dst[1] = sx13(a);
        dst[2] = sx02(b);
        dst[3] = sx13(b);
    }
}

/* The general requantization of a 2 x 2 block (rows n, n1; n1 == n for a lone last row):
 * out of line, as layers with a left shift are rare. */
static __attribute__((noinline)) void store_block(const edgec_rq *q, int32_t a00, int32_t a01, int32_t a10,
                                                  int32_t a11, int32_t n, int32_t n1, int32_t n_cols, int8_t *out,
                                                  int32_t out_stride) {
    const int32_t acc[4] = {a00, a10, a01, a11};
    int32_t i;
    for (i = 0; i < 2 * n_cols; ++i) {
        const int32_t row = i & 1 ? n1 : n;
        if (!(i & 1) || n1 != n) out[(i >> 1) * out_stride + row] = rq_conv(q, acc[i], row);
    }
}

static inline __attribute__((always_inline)) void gemm_conv_dsp_impl(
    const int8_t *w, int32_t n_rows, int32_t k, const int32_t *cols, int32_t n_cols, const edgec_rq *rq, int8_t *out,
    int32_t out_stride, const int fast) {
    edgec_rq local = *rq;
    const edgec_rq *q = &local;
    int32_t n;
    local.single_round = 0;
    local.per_channel = 1;
    for (n = 0; n < n_rows; n += 2) {
        /* An odd last row pairs with itself; its twin is not stored. */
        const int32_t n1 = n + 1 < n_rows ? n + 1 : n;
        const int8_t *w0 = w + n * k, *w1 = w + n1 * k, *end = w0 + k;
        const int32_t *x = cols;
        int32_t a00 = q->bias[n], a01 = a00, a10 = q->bias[n1], a11 = a10;
        uint32_t wa, wb, t1, t2, xv;
        /* 16 MACs in 20 instructions. Written in assembly because GCC spills this loop's
         * 13 live registers (4 sums, 3 pointers, the end, 5 temporaries). k > 0, k % 4 == 0. */
        __asm__ volatile(
            "1:\n\t"
            "ldr %[wa], [%[w0]], #4\n\t"
            "ldr %[wb], [%[w1]], #4\n\t"
            "ldr %[xv], [%[x], #8]\n\t"
            "sxtb16 %[t1], %[wa]\n\t"
            "sxtb16 %[t2], %[wb]\n\t"
            "smlad %[a01], %[t1], %[xv], %[a01]\n\t"
            "smlad %[a11], %[t2], %[xv], %[a11]\n\t"
            "ldr %[xv], [%[x]], #16\n\t"
            "smlad %[a00], %[t1], %[xv], %[a00]\n\t"
            "smlad %[a10], %[t2], %[xv], %[a10]\n\t"
            "sxtb16 %[t1], %[wa], ror #8\n\t"
            "sxtb16 %[t2], %[wb], ror #8\n\t"
            "ldr %[xv], [%[x], #-12]\n\t"
            "smlad %[a00], %[t1], %[xv], %[a00]\n\t"
            "smlad %[a10], %[t2], %[xv], %[a10]\n\t"
            "ldr %[xv], [%[x], #-4]\n\t"
            "smlad %[a01], %[t1], %[xv], %[a01]\n\t"
            "smlad %[a11], %[t2], %[xv], %[a11]\n\t"
            "cmp %[w0], %[end]\n\t"
            "bne 1b\n\t"
            : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [w0] "+r"(w0), [w1] "+r"(w1),
              [x] "+r"(x), [wa] "=&r"(wa), [wb] "=&r"(wb), [t1] "=&r"(t1), [t2] "=&r"(t2), [xv] "=&r"(xv)
            : [end] "r"(end)
            : "cc", "memory");
        if (fast) {
            const int32_t m0 = q->mult[n], s0 = q->shift[n], m1 = q->mult[n1], s1 = q->shift[n1];
            const int32_t off2p1 = 2 * q->out_offset + 1, lo = q->act_min, hi = q->act_max;
            out[n] = (int8_t)rq_dsp(a00, m0, s0, off2p1, lo, hi, fast);
            if (n_cols == 2) out[out_stride + n] = (int8_t)rq_dsp(a01, m0, s0, off2p1, lo, hi, fast);
            if (n1 != n) {
                out[n1] = (int8_t)rq_dsp(a10, m1, s1, off2p1, lo, hi, fast);
                if (n_cols == 2) out[out_stride + n1] = (int8_t)rq_dsp(a11, m1, s1, off2p1, lo, hi, fast);
            }
            continue;
        }
        store_block(q, a00, a01, a10, a11, n, n1, n_cols, out, out_stride);
    }
}

static void gemm_conv_dsp(const int8_t *w, int32_t n_rows, int32_t k, const int32_t *cols, int32_t n_cols,
                          const edgec_rq *q, int8_t *out, int32_t out_stride) {
    /* Only the variants the model uses (EDGEC_DSP_HAS_VARIANT); optimizing for size, the
     * ReLU6-style clamps (rq_fast 1) take the general variant. */
    if (0) {
#if EDGEC_DSP_FAST2
    } else if (q->fast == 2) {
        gemm_conv_dsp_impl(w, n_rows, k, cols, n_cols, q, out, out_stride, 2);
#endif
#if EDGEC_DSP_FAST1
    } else if (q->fast) {
        gemm_conv_dsp_impl(w, n_rows, k, cols, n_cols, q, out, out_stride, 1);
#endif
#if EDGEC_DSP_GENERAL
    } else {
        gemm_conv_dsp_impl(w, n_rows, k, cols, n_cols, q, out, out_stride, 0);
#endif
    }
}
#endif

#if defined(EDGEC_MVE) && defined(__OPTIMIZE__)
/* Helium regular convolutions, 4 output channels x 2 columns (CMSIS-NN's blocking idea):
 * each 16-byte weight load feeds two VMLADAVA. The two columns are first interleaved in
 * 16-byte blocks (zero-padded to a whole block), so one pointer walks both; 8 accumulators
 * in the 8 even registers VMLADAVA requires, 6 pointers/counters in the odd ones. Needs
 * an optimizing build (at -O0 r7 is the frame pointer); -Os takes it too (VWW's convs
 * 1.3x faster than gemm_s8's one-column loop, for some 200 bytes). */
#define EDGEC_MVE_PAIRS 1

static void interleave2(const int8_t *c0, const int8_t *c1, int32_t k, int8_t *dst) {
    int32_t i;
    for (i = 0; i < k; i += 16, dst += 32) {
        const mve_pred16_t p = vctp8q((uint32_t)(k - i));
        vstrbq_s8(dst, vldrbq_z_s8(c0 + i, p));
        vstrbq_s8(dst + 16, vldrbq_z_s8(c1 + i, p));
    }
}

static inline void store4(const edgec_rq *q, int32_t a0, int32_t a1, int32_t a2, int32_t a3, int32_t n, int8_t *o) {
    int32x4_t acc = vdupq_n_s32(a0);
    acc = vsetq_lane_s32(a1, acc, 1);
    acc = vsetq_lane_s32(a2, acc, 2);
    acc = vsetq_lane_s32(a3, acc, 3);
    rq_store4(q, acc, n, o + n);
}

/* out[j * out_stride + n] for the n_rows weight rows (k bytes, k % 4 == 0) and the pair
 * of columns at `pair` (interleave2); n_cols 1 stores column 0 only. */
static void gemm_conv_mve2(const int8_t *w, int32_t n_rows, int32_t k, const int8_t *pair, int32_t n_cols,
                           const edgec_rq *rq, int8_t *out, int32_t out_stride) {
    const int32_t blocks = k >> 4, tail = k & 15;
    edgec_rq local = *rq; /* conv: two roundings, per channel (rq_store4's vector path only) */
    const edgec_rq *q = &local;
    int32_t n;
    local.single_round = 0, local.per_channel = 1;
    for (n = 0; n + 4 <= n_rows; n += 4) {
        register int32_t a00 __asm__("r0") = q->bias[n];
        register int32_t a01 __asm__("r2") = a00;
        register int32_t a10 __asm__("r4") = q->bias[n + 1];
        register int32_t a11 __asm__("r6") = a10;
        register int32_t a20 __asm__("r8") = q->bias[n + 2];
        register int32_t a21 __asm__("r10") = a20;
        register int32_t a30 __asm__("r12") = q->bias[n + 3];
        register int32_t a31 __asm__("lr") = a30;
        register const int8_t *x __asm__("r1") = pair;
        register const int8_t *w0 __asm__("r3") = w + n * k;
        register const int8_t *w1 __asm__("r5") = w0 + k;
        register const int8_t *w2 __asm__("r7") = w1 + k;
        register const int8_t *w3 __asm__("r9") = w2 + k;
        register int32_t r __asm__("r11") = blocks;
        if (r > 0) {
            /* 128 MACs in 16 instructions. */
            __asm__ volatile(
                "1:\n\t"
                "vldrb.8 q0, [%[x]], #16\n\t"
                "vldrb.8 q1, [%[x]], #16\n\t"
                "vldrb.8 q2, [%[w0]], #16\n\t"
                "vmladava.s8 %[a00], q2, q0\n\t"
                "vmladava.s8 %[a01], q2, q1\n\t"
                "vldrb.8 q2, [%[w1]], #16\n\t"
                "vmladava.s8 %[a10], q2, q0\n\t"
                "vmladava.s8 %[a11], q2, q1\n\t"
                "vldrb.8 q2, [%[w2]], #16\n\t"
                "vmladava.s8 %[a20], q2, q0\n\t"
                "vmladava.s8 %[a21], q2, q1\n\t"
                "vldrb.8 q2, [%[w3]], #16\n\t"
                "vmladava.s8 %[a30], q2, q0\n\t"
                "vmladava.s8 %[a31], q2, q1\n\t"
                "subs %[r], %[r], #1\n\t"
                "bne 1b\n\t"
                : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [a20] "+r"(a20),
                  [a21] "+r"(a21), [a30] "+r"(a30), [a31] "+r"(a31), [x] "+r"(x), [w0] "+r"(w0), [w1] "+r"(w1),
                  [w2] "+r"(w2), [w3] "+r"(w3), [r] "+r"(r)
                :
                : "q0", "q1", "q2", "cc", "memory");
        }
        {
            int32_t b00 = a00, b01 = a01, b10 = a10, b11 = a11, b20 = a20, b21 = a21, b30 = a30, b31 = a31;
            if (tail) {
                /* The columns' last block is zero-padded; the weights' is read predicated. */
                const mve_pred16_t p = vctp8q((uint32_t)tail);
                const int8x16_t x0 = vldrbq_s8(x), x1 = vldrbq_s8(x + 16);
                int8x16_t wv = vldrbq_z_s8(w0, p);
                b00 = vmladavaq_s8(b00, wv, x0), b01 = vmladavaq_s8(b01, wv, x1);
                wv = vldrbq_z_s8(w1, p);
                b10 = vmladavaq_s8(b10, wv, x0), b11 = vmladavaq_s8(b11, wv, x1);
                wv = vldrbq_z_s8(w2, p);
                b20 = vmladavaq_s8(b20, wv, x0), b21 = vmladavaq_s8(b21, wv, x1);
                wv = vldrbq_z_s8(w3, p);
                b30 = vmladavaq_s8(b30, wv, x0), b31 = vmladavaq_s8(b31, wv, x1);
            }
            store4(q, b00, b10, b20, b30, n, out);
            if (n_cols == 2) store4(q, b01, b11, b21, b31, n, out + out_stride);
        }
    }
#if !EDGEC_OWN_LAYOUT || EDGEC_CONV_TAIL
    for (; n < n_rows; ++n) {
        /* The remaining rows, one column at a time over the interleaved blocks. */
        const int8_t *wr = w + n * k;
        int32_t j, i;
        for (j = 0; j < n_cols; ++j) {
            int32_t acc = q->bias[n];
            for (i = 0; i < k; i += 16) {
                const mve_pred16_t p = vctp8q((uint32_t)(k - i));
                acc = vmladavaq_s8(acc, vldrbq_z_s8(wr + i, p), vldrbq_s8(pair + 2 * i + 16 * j));
            }
            out[j * out_stride + n] = rq_one(q, acc, n);
        }
    }
#endif
}
#endif

/* Whether gemm_conv_dsp or gemm_conv_mve2 takes every regular conv of the model: the
 * bundle's own layout and scratch sizes, and a build that has those loops. */
#if EDGEC_OWN_LAYOUT && (defined(EDGEC_DSP_COLS16) || defined(EDGEC_MVE_PAIRS))
#define EDGEC_CONV_VECTOR_ONLY 1
#else
#define EDGEC_CONV_VECTOR_ONLY 0
#endif

#if (defined(EDGEC_DSP) || defined(EDGEC_MVE_PAIRS)) && !EDGEC_CONV_VECTOR_ONLY

/* conv's fallback on CPUs whose hot loop is gemm_conv_dsp or gemm_conv_mve2 (taken only
 * when the scratch was sized for another CPU, or in an -O0 SIMD32 build with an FPU):
 * plain C, out of line. */
static __attribute__((noinline)) void gemm_plain(const int8_t *w, int32_t n_rows, int32_t k, const int8_t *cols,
                                                 int32_t n_cols, const edgec_rq *q, int8_t *out, int32_t out_stride) {
    int32_t j, n;
    for (j = 0; j < n_cols; ++j)
        for (n = 0; n < n_rows; ++n)
            out[j * out_stride + n] = rq_conv(q, EDGEC_DOT(w + n * k, cols + j * k, k, q->bias[n]), n);
}
#endif

/* The two instances: conv (two roundings, per channel) and FullyConnected (one rounding). */
#if !EDGEC_CONV_VECTOR_ONLY
static void gemm_conv(const int8_t *w, int32_t n_rows, int32_t k, const int8_t *cols, int32_t n_cols,
                      const edgec_rq *q, int8_t *out, int32_t out_stride) {
#if defined(EDGEC_DSP) || defined(EDGEC_MVE_PAIRS)
    gemm_plain(w, n_rows, k, cols, n_cols, q, out, out_stride);
#else
    gemm_s8(w, n_rows, k, cols, n_cols, q, out, out_stride, 0, 0);
#endif
}
#endif

static void gemm_fc(const int8_t *w, int32_t n_rows, int32_t k, const int8_t *cols, const edgec_rq *q, int8_t *out) {
#if !EDGEC_FC_FAST && (defined(EDGEC_DSP) || defined(EDGEC_MVE))
    /* FullyConnected is a small part of this model: the short loop. */
    edgec_rq local = *q;
    int32_t n;
    local.single_round = 1;
    for (n = 0; n < n_rows; ++n) out[n] = rq_one(&local, EDGEC_DOT(w + n * k, cols, k, q->bias[n]), n);
#elif defined(EDGEC_DSP_GEMM) && !defined(__ARM_FP)
    /* SIMD32: the column sign-extended once into int16 pairs, on the stack (up to 4 KiB;
     * longer rows take the C loop). Here, not in gemm_s8: a VLA there would cost the conv
     * instance its frame-pointer register. */
    const int32_t k4 = k & ~3;
    const int widen = k4 > 0 && k4 <= 2048;
    uint32_t xs[widen ? k4 / 2 : 1];
    if (widen) {
        int32_t i;
        for (i = 0; i < k4; i += 4) {
            const uint32_t v = ld32(cols + i);
            xs[i / 2] = (uint32_t)sx02(v);
            xs[i / 2 + 1] = (uint32_t)sx13(v);
        }
    }
    gemm_s8(w, n_rows, k, cols, 1, q, out, 0, 1, widen ? xs : 0);
#else
    gemm_s8(w, n_rows, k, cols, 1, q, out, 0, 1, 0);
#endif
}

#if defined(EDGEC_DSP) || defined(EDGEC_MVE_PAIRS)
#define EDGEC_CONV_COLS 2
#else
#define EDGEC_CONV_COLS 1
#endif

/* Copies and fills of im2col runs, often a few bytes in first layers: one predicated
 * 16-byte move on Helium instead of a library call. */
static inline void fill_bytes(int8_t *dst, int32_t v, int32_t n) {
#if defined(EDGEC_MVE)
    if (n <= 16) {
        vstrbq_p_s8(dst, vdupq_n_s8((int8_t)v), vctp8q((uint32_t)n));
        return;
    }
#endif
    memset(dst, (int8_t)v, (size_t)n);
}

static inline void copy_bytes(int8_t *dst, const int8_t *src, int32_t n) {
#if defined(EDGEC_MVE)
    if (n <= 16) {
        const mve_pred16_t p = vctp8q((uint32_t)n);
        vstrbq_p_s8(dst, vldrbq_z_s8(src, p), p);
        return;
    }
#endif
    memcpy(dst, src, (size_t)n);
}

/* One kernel row of a dilated im2col (row: the input row, ix0: its first tap's column). */
static EDGEC_COLD __attribute__((noinline, unused)) void im2col_dilated(const edgec_conv_params *p,
                                                                         const int8_t *row, int32_t ix0,
                                                                         int8_t *col) {
    const int32_t in_c = p->in_c;
    int32_t kx;
    for (kx = 0; kx < p->k_w; ++kx) {
        const int32_t ix = ix0 + p->dil_w * kx;
        if (ix < 0 || ix >= p->in_w) {
            memset(col + kx * in_c, -p->in_offset, (size_t)in_c);
        } else {
            memcpy(col + kx * in_c, row + ix * in_c, (size_t)in_c);
        }
    }
}

/* The receptive field of output pixel (oy, ox) as one int8 column of k_h*k_w*in_c. */
static void im2col(const edgec_conv_params *p, const int8_t *in_b, int32_t oy, int32_t ox, int8_t *col) {
    const int32_t in_c = p->in_c, in_h = p->in_h, in_w = p->in_w, k_h = p->k_h, k_w = p->k_w;
    const int32_t dil_h = p->dil_h, dil_w = p->dil_w, pad_value = -p->in_offset, row = k_w * in_c;
    const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
    /* With dilation 1 a kernel row is padding, one contiguous run of the image, padding. */
    const int32_t kx_lo = ix0 < 0 ? -ix0 : 0, kx_hi = in_w - ix0 < k_w ? in_w - ix0 : k_w;
    int32_t ky;
    for (ky = 0; ky < k_h; ++ky, col += row) {
        const int32_t iy = iy0 + dil_h * ky;
        if (iy < 0 || iy >= in_h) {
            fill_bytes(col, pad_value, row);
        } else if (dil_w == 1 || !EDGEC_CONV_DILATED) {
            if (kx_lo > 0) fill_bytes(col, pad_value, kx_lo * in_c);
            copy_bytes(col + kx_lo * in_c, in_b + (iy * in_w + ix0 + kx_lo) * in_c, (kx_hi - kx_lo) * in_c);
            if (kx_hi < k_w) fill_bytes(col + kx_hi * in_c, pad_value, (k_w - kx_hi) * in_c);
        } else {
            im2col_dilated(p, in_b + iy * in_w * in_c, ix0, col);
        }
    }
}

void edgec_conv_s8(const edgec_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                   const int32_t *mult, const int32_t *shift, int8_t *out, int8_t *scratch, int32_t scratch_bytes) {
    const int32_t k = p->k_h * p->k_w * p->in_c, n_pix = p->out_h * p->out_w, out_c = p->out_c;
    /* 1x1, stride 1, no padding: every pixel already is its own column. */
    const int pointwise = p->k_h == 1 && p->k_w == 1 && p->stride_h == 1 && p->stride_w == 1 &&
                          p->pad_h == 0 && p->pad_w == 0 && p->in_h == p->out_h && p->in_w == p->out_w;
    /* im2col columns (and the weight rows, padded with zeros at build time) are a whole
     * number of words long, so the 4-byte SIMD loops need no tail. */
    const int32_t k_pad = (k + 3) & ~3;
    const int direct = pointwise && k == k_pad;
#if defined(EDGEC_DSP)
    /* The int16 columns need 4 * k_pad more bytes; a library built for another CPU may not
     * have sized the scratch for them and then takes the int8 path. */
#if defined(EDGEC_DSP_COLS16)
    const int widen = EDGEC_CONV_VECTOR_ONLY ||
                      (scratch_bytes >= (direct ? 0 : 2 * k_pad) + 4 * k_pad && EDGEC_DSP_HAS_VARIANT(p->rq_fast));
#else
    const int widen = 0;
#endif
#endif
#if defined(EDGEC_MVE_PAIRS)
    /* The interleaved column pair takes 2 * k16 more bytes (emitter-sized, as for SIMD32). */
    const int32_t k16 = (k_pad + 15) & ~15;
    const int pairs = EDGEC_CONV_VECTOR_ONLY || scratch_bytes >= (direct ? 0 : 2 * k_pad) + 2 * k16;
#endif
    edgec_rq q;
    int32_t b, pix;
    (void)scratch_bytes;
    q.bias = bias, q.mult = mult, q.shift = shift, q.per_channel = 1, q.single_round = 0;
    q.out_offset = p->out_offset, q.act_min = p->act_min, q.act_max = p->act_max, q.fast = p->rq_fast;
    for (b = 0; b < p->batch; ++b) {
        const int8_t *in_b = in + b * p->in_h * p->in_w * p->in_c;
        for (pix = 0; pix < n_pix; pix += EDGEC_CONV_COLS) {
            const int32_t n_cols = n_pix - pix < EDGEC_CONV_COLS ? n_pix - pix : EDGEC_CONV_COLS;
            const int8_t *cols = in_b + pix * k;
#if defined(EDGEC_DSP)
            int8_t *staging = widen ? scratch + 4 * k_pad : scratch;
#elif defined(EDGEC_MVE_PAIRS)
            int8_t *staging = pairs ? scratch + 2 * k16 : scratch;
#else
            int8_t *staging = scratch;
#endif
            if (!direct) {
                int32_t j;
                for (j = 0; j < n_cols; ++j) {
                    int8_t *col = staging + j * k_pad;
                    im2col(p, in_b, (pix + j) / p->out_w, (pix + j) % p->out_w, col);
                    if (k_pad > k) fill_bytes(col + k, 0, k_pad - k);
                }
                cols = staging;
            }
#if defined(EDGEC_MVE_PAIRS)
            if (pairs) {
                /* A lone last column is interleaved with itself; only column 0 is stored. */
                interleave2(cols, n_cols == 2 ? cols + k_pad : cols, k_pad, scratch);
                gemm_conv_mve2(w, out_c, k_pad, scratch, n_cols, &q, out + pix * out_c, out_c);
                continue;
            }
#endif
#if defined(EDGEC_DSP_COLS16)
            if (widen) {
                /* A lone last column is expanded twice; its twin's outputs are not stored. */
                expand2(cols, n_cols == 2 ? cols + k_pad : cols, k_pad, (int32_t *)(void *)scratch);
                gemm_conv_dsp(w, out_c, k_pad, (const int32_t *)(const void *)scratch, n_cols, &q,
                              out + pix * out_c, out_c);
                continue;
            }
#endif
#if !EDGEC_CONV_VECTOR_ONLY
            gemm_conv(w, out_c, k_pad, cols, n_cols, &q, out + pix * out_c, out_c);
#endif
        }
        out += n_pix * out_c;
    }
}

void edgec_fc_s8(const edgec_fc_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                 const int32_t *mult, const int32_t *shift, int8_t *out) {
    edgec_rq q;
    int32_t b;
    q.bias = bias, q.mult = mult, q.shift = shift, q.per_channel = p->per_channel, q.single_round = 1;
    q.out_offset = p->out_offset, q.act_min = p->act_min, q.act_max = p->act_max, q.fast = 0;
    for (b = 0; b < p->batch; ++b) gemm_fc(w, p->out_n, p->in_k, in + b * p->in_k, &q, out + b * p->out_n);
}
