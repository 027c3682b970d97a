/* DepthwiseConv2D, int8 NHWC, per-channel requantization: portable C, SIMD32 (M4/M7/M33)
 * and Helium (M55) loops as conv.c selects them (edgec_conv_internal.h), bit-exact with
 * LiteRT's reference kernel on every CPU. */
#include "edgec_conv_internal.h"

/* Depthwise. The bias is folded (bias + in_offset * sum of the channel's taps), so
 * acc = bias + sum over all taps of w * x where a padded tap reads the input zero point,
 * which cancels its share of the fold exactly. Tap t of an output pixel reads its in_c
 * channels at base + offs[t]: for pixels inside the image one table per layer, for the
 * border a table per pixel whose padded taps point at `pad` (in_c bytes of the zero
 * point); the channel loops then run over every tap without a bounds check. The weights
 * come in channel chunks, each chunk's taps contiguous (edgec_kernels.h). */
#define EDGEC_DW_MAX_TAPS 64
#if defined(EDGEC_MVE)
#define EDGEC_DW_CHUNK 8
#elif defined(EDGEC_DSP)
#define EDGEC_DW_CHUNK 4
#else
#define EDGEC_DW_CHUNK 1
#endif
#define EDGEC_TAP(p, off) ((const int8_t *)((uintptr_t)(p) + (uintptr_t)(off)))
/* Whether some channel takes dw_rest: always in portable C (its only loop); with the vector
 * loops, for a part chunk or another CPU's layout only. */
#define EDGEC_DW_REST (EDGEC_ISA == 0 || !EDGEC_OWN_LAYOUT || EDGEC_DW_TAIL)

#if defined(EDGEC_MVE)
/* Requantize one chunk of 8 channels: e holds the even channels, o the odd (the chunk's
 * bias/mult/shift are stored in that order), and store them in channel order. */
static inline void dw_store8(const edgec_rq *q, int32x4_t e, int32x4_t o, int32_t c, int8_t *out) {
    const int32x4_t vmin = vdupq_n_s32(q->act_min), vmax = vdupq_n_s32(q->act_max);
    int16x8_t r = vdupq_n_s16(0);
    e = rq_mve(e, vld1q_s32(q->mult + c), vld1q_s32(q->shift + c));
    o = rq_mve(o, vld1q_s32(q->mult + c + 4), vld1q_s32(q->shift + c + 4));
    e = vminq_s32(vmaxq_s32(vaddq_n_s32(e, q->out_offset), vmin), vmax);
    o = vminq_s32(vmaxq_s32(vaddq_n_s32(o, q->out_offset), vmin), vmax);
    r = vmovnbq_s32(r, e);
    r = vmovntq_s32(r, o);
    vstrbq_s16(out, r);
}

/* One chunk of 8 channels at base (tap offsets offs, its weights w0), channel c first. */
static inline __attribute__((always_inline)) void dw_chunk8(const int8_t *bc, const intptr_t *offs, int32_t n_taps,
                                                            const int8_t *w0, const edgec_rq *q, int32_t c,
                                                            int8_t *out) {
    int32x4_t e0 = vld1q_s32(q->bias + c), o0 = vld1q_s32(q->bias + c + 4);
    int32_t t;
    for (t = 0; t < n_taps; ++t, w0 += 8) {
        const int16x8_t xv = vldrbq_s16(EDGEC_TAP(bc, offs[t])), wv = vldrbq_s16(w0);
        e0 = vaddq_s32(e0, vmullbq_int_s16(xv, wv));
        o0 = vaddq_s32(o0, vmulltq_int_s16(xv, wv));
    }
    dw_store8(q, e0, o0, c, out);
}
#endif

/* Channels c.. of dw_pixel one at a time: the tail past the last whole chunk, or every
 * channel for a layout of another CPU. Out of line: one copy for every variant. */
static __attribute__((noinline, unused)) void dw_rest(const int8_t *base, const intptr_t *offs, int32_t n_taps,
                                                      const int8_t *w, int32_t out_c, int32_t g,
                                                      const edgec_rq *q, int8_t *out, int32_t c) {
    const int32_t whole = out_c - out_c % g;
    int32_t t;
    for (; c < out_c; ++c) {
        /* Channel c's weights (stride g in its chunk) and its place in bias/mult/shift. */
        const int32_t j = c < whole ? c % g : 0, stride = c < whole ? g : 1;
        const int32_t at = g == 8 && c < whole ? c - j + (j >> 1) + ((j & 1) << 2) : c;
        const int8_t *wp = w + (c - j) * n_taps + j, *bc = base + c;
        int32_t acc = q->bias[at];
        for (t = 0; t < n_taps; ++t) acc += (int32_t)wp[t * stride] * (int32_t)*EDGEC_TAP(bc, offs[t]);
        out[c] = rq_conv(q, acc, at);
    }
}

static inline __attribute__((always_inline)) void dw_pixel_impl(const int8_t *base, const intptr_t *offs,
                                                                 const int32_t n_taps, const int8_t *w,
                                                                 int32_t out_c, int32_t g, const edgec_rq *q,
                                                                 int8_t *out, const int fast) {
    /* Channels below `whole` sit in chunks of g; the vector loops need g to be this CPU's
     * chunk (a bundle for another CPU, e.g. built on the host for checking, takes the
     * portable loop at the end). */
    int32_t c = 0;
    (void)fast, (void)g;
#if EDGEC_DW_REST
    if (g != EDGEC_DW_CHUNK) goto rest;
#endif
#if defined(EDGEC_MVE)
    /* int16 lanes: VMULLB/VMULLT give the even and the odd channels' int32 products. Two
     * chunks at a time share the tap address (at -Os too: 10 % of KWS for 100 bytes). */
    for (; c + 16 <= out_c; c += 16) {
        int32x4_t e0 = vld1q_s32(q->bias + c), o0 = vld1q_s32(q->bias + c + 4);
        int32x4_t e1 = vld1q_s32(q->bias + c + 8), o1 = vld1q_s32(q->bias + c + 12);
        const int8_t *w0 = w + c * n_taps, *w1 = w0 + 8 * n_taps, *bc = base + c;
        {
            /* 32 MACs in 16 instructions. Assembly: GCC spills an accumulator here. */
            const intptr_t *op = offs, *end = offs + n_taps;
            const int8_t *x;
            __asm__ volatile(
                "1:\n\t"
                "ldr %[x], [%[op]], #4\n\t"
                "add %[x], %[bc]\n\t"
                "vldrb.s16 q4, [%[x]]\n\t"
                "vldrb.s16 q5, [%[w0]], #8\n\t"
                "vmullb.s16 q6, q4, q5\n\t"
                "vadd.i32 %q[e0], %q[e0], q6\n\t"
                "vmullt.s16 q6, q4, q5\n\t"
                "vadd.i32 %q[o0], %q[o0], q6\n\t"
                "vldrb.s16 q4, [%[x], #8]\n\t"
                "vldrb.s16 q5, [%[w1]], #8\n\t"
                "vmullb.s16 q6, q4, q5\n\t"
                "vadd.i32 %q[e1], %q[e1], q6\n\t"
                "vmullt.s16 q6, q4, q5\n\t"
                "vadd.i32 %q[o1], %q[o1], q6\n\t"
                "cmp %[op], %[end]\n\t"
                "bne 1b\n\t"
                /* The widening loads take low registers ("l"). */
                : [e0] "+w"(e0), [o0] "+w"(o0), [e1] "+w"(e1), [o1] "+w"(o1), [op] "+r"(op), [w0] "+l"(w0),
                  [w1] "+l"(w1), [x] "=&l"(x)
                : [bc] "r"(bc), [end] "r"(end)
                : "q4", "q5", "q6", "cc", "memory");
        }
        dw_store8(q, e0, o0, c, out + c);
        dw_store8(q, e1, o1, c + 8, out + c + 8);
    }
    if (c + 8 <= out_c) {
        dw_chunk8(base + c, offs, n_taps, w + c * n_taps, q, c, out + c);
        c += 8;
    }
#elif defined(EDGEC_DSP)
    /* Locals: the byte stores may alias the fields. */
    const int32_t *bias = q->bias, *mult = q->mult, *shift = q->shift;
    const int32_t off2p1 = 2 * q->out_offset + 1, lo = q->act_min, hi = q->act_max;
    for (; c + 4 <= out_c; c += 4) {
        int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
        const int8_t *wp = w + c * n_taps, *bc = base + c;
        {
            /* 4 MACs in 13 instructions. Assembly: GCC's schedule of this loop spills. */
            const intptr_t *op = offs, *end = offs + n_taps;
            uint32_t x, wv, t0, t1;
            __asm__ volatile(
                "1:\n\t"
                "ldr %[x], [%[op]], #4\n\t"
                "ldr %[x], [%[bc], %[x]]\n\t"
                "ldr %[wv], [%[wp]], #4\n\t"
                "sxtb16 %[t0], %[wv]\n\t"
                "sxtb16 %[t1], %[x]\n\t"
                "smlabb %[a0], %[t0], %[t1], %[a0]\n\t"
                "smlatt %[a2], %[t0], %[t1], %[a2]\n\t"
                "sxtb16 %[t0], %[wv], ror #8\n\t"
                "sxtb16 %[t1], %[x], ror #8\n\t"
                "smlabb %[a1], %[t0], %[t1], %[a1]\n\t"
                "smlatt %[a3], %[t0], %[t1], %[a3]\n\t"
                "cmp %[op], %[end]\n\t"
                "bne 1b\n\t"
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [op] "+r"(op), [wp] "+r"(wp),
                  [x] "=&r"(x), [wv] "=&r"(wv), [t0] "=&r"(t0), [t1] "=&r"(t1)
                : [bc] "r"(bc), [end] "r"(end)
                : "cc", "memory");
        }
        if (fast) {
            out[c] = (int8_t)rq_dsp(a0, mult[c], shift[c], off2p1, lo, hi, fast);
            out[c + 1] = (int8_t)rq_dsp(a1, mult[c + 1], shift[c + 1], off2p1, lo, hi, fast);
            out[c + 2] = (int8_t)rq_dsp(a2, mult[c + 2], shift[c + 2], off2p1, lo, hi, fast);
            out[c + 3] = (int8_t)rq_dsp(a3, mult[c + 3], shift[c + 3], off2p1, lo, hi, fast);
            continue;
        }
        out[c] = rq_conv(q, a0, c);
        out[c + 1] = rq_conv(q, a1, c + 1);
        out[c + 2] = rq_conv(q, a2, c + 2);
        out[c + 3] = rq_conv(q, a3, c + 3);
    }
#endif
#if EDGEC_DW_REST
rest:
    if (c < out_c) dw_rest(base, offs, n_taps, w, out_c, g, q, out, c);
#endif
}

/* SIMD32 builds get one copy per requantization variant the model uses (edgec_config.h);
 * optimizing for size, one copy serves every layer (EDGEC_DSP_DW_FAST2). */
static void dw_pixel(const int8_t *base, const intptr_t *offs, int32_t n_taps, const int8_t *w, int32_t out_c,
                     int32_t g, const edgec_rq *q, int8_t *out) {
#if defined(EDGEC_DSP)
    /* With the bundle's own config the variants cover every layer: the last one takes the
     * rest without a test. */
#if EDGEC_DSP_DW_FAST2
    if (q->fast == 2 || (EDGEC_OWN_LAYOUT && !EDGEC_DSP_FAST1 && !EDGEC_DSP_GENERAL)) {
        dw_pixel_impl(base, offs, n_taps, w, out_c, g, q, out, 2);
        return;
    }
#endif
#if EDGEC_DSP_FAST1
    if (q->fast || (EDGEC_OWN_LAYOUT && !EDGEC_DSP_GENERAL)) {
        dw_pixel_impl(base, offs, n_taps, w, out_c, g, q, out, 1);
        return;
    }
#endif
#if !EDGEC_DSP_GENERAL && EDGEC_DSP_DW_FAST2 && !EDGEC_OWN_LAYOUT
    /* No layer of the model needs the general variant: the channel loop serves any. */
    dw_rest(base, offs, n_taps, w, out_c, g, q, out, 0);
    return;
#endif
#endif
    dw_pixel_impl(base, offs, n_taps, w, out_c, g, q, out, 0);
}

#if EDGEC_DW_GENERIC
/* Depth multiplier > 1 or very large windows: skip the padded taps and subtract their
 * share of the folded bias. */
static EDGEC_COLD __attribute__((noinline)) void dw_generic(const edgec_conv_params *p, const int8_t *in_b, int32_t oy, int32_t ox, const int8_t *w,
                       const edgec_rq *q, int8_t *out) {
    const int32_t in_c = p->in_c, out_c = p->out_c, dm = p->depth_mult, k_w = p->k_w;
    const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
    int32_t c, ky, kx;
    for (c = 0; c < out_c; ++c) {
        int32_t acc = q->bias[c];
        for (ky = 0; ky < p->k_h; ++ky) {
            const int32_t iy = iy0 + p->dil_h * ky;
            for (kx = 0; kx < k_w; ++kx) {
                const int32_t ix = ix0 + p->dil_w * kx, wv = w[(ky * k_w + kx) * out_c + c];
                if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                    acc -= p->in_offset * wv;
                } else {
                    acc += wv * in_b[(iy * p->in_w + ix) * in_c + c / dm];
                }
            }
        }
        out[c] = rq_conv(q, acc, c);
    }
}

#endif

void edgec_dwconv_s8(const edgec_conv_params *p, const int8_t *in, const int8_t *w, const int32_t *bias,
                     const int32_t *mult, const int32_t *shift, int8_t *out, int8_t *pad) {
    /* Parameters in locals: the int8 output stores may alias *p. */
    const int32_t in_c = p->in_c, in_h = p->in_h, in_w = p->in_w, out_c = p->out_c;
    const int32_t k_h = p->k_h, k_w = p->k_w, dil_h = p->dil_h, dil_w = p->dil_w;
    const int32_t out_h = p->out_h, out_w = p->out_w, stride_h = p->stride_h, stride_w = p->stride_w;
    const int32_t pad_h = p->pad_h, pad_w = p->pad_w, batch = p->batch, n_taps = k_h * k_w;
    const int fast = p->depth_mult == 1 && n_taps <= EDGEC_DW_MAX_TAPS;
    const int32_t g = p->dw_chunk > 0 ? p->dw_chunk : 1;
    intptr_t inside[EDGEC_DW_MAX_TAPS], border[EDGEC_DW_MAX_TAPS];
    edgec_rq q;
    int32_t b, oy, ox, ky, kx;
    q.bias = bias, q.mult = mult, q.shift = shift, q.per_channel = 1, q.single_round = 0;
    q.out_offset = p->out_offset, q.act_min = p->act_min, q.act_max = p->act_max, q.fast = p->rq_fast;
    if (fast) {
        memset(pad, (int8_t)(-p->in_offset), (size_t)in_c);
        for (ky = 0; ky < k_h; ++ky)
            for (kx = 0; kx < k_w; ++kx) inside[ky * k_w + kx] = (intptr_t)(ky * dil_h * in_w + kx * dil_w) * in_c;
    }
    for (b = 0; b < batch; ++b) {
        const int8_t *in_b = in + b * in_h * in_w * in_c;
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * stride_h - pad_h;
            const int row_inside = iy0 >= 0 && iy0 + (k_h - 1) * dil_h < in_h;
            for (ox = 0; ox < out_w; ++ox, out += out_c) {
                const int32_t ix0 = ox * stride_w - pad_w;
                int32_t t = 0;
#if EDGEC_DW_GENERIC
                if (!fast) {
                    dw_generic(p, in_b, oy, ox, w, &q, out);
                    continue;
                }
#endif
                if (row_inside && ix0 >= 0 && ix0 + (k_w - 1) * dil_w < in_w) {
                    dw_pixel(in_b + (iy0 * in_w + ix0) * in_c, inside, n_taps, w, out_c, g, &q, out);
                    continue;
                }
                for (ky = 0; ky < k_h; ++ky) {
                    const int32_t iy = iy0 + dil_h * ky;
                    for (kx = 0; kx < k_w; ++kx, ++t) {
                        const int32_t ix = ix0 + dil_w * kx;
                        border[t] = (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w)
                                        ? (intptr_t)((uintptr_t)pad - (uintptr_t)in_b)
                                        : (intptr_t)(iy * in_w + ix) * in_c;
                    }
                }
                dw_pixel(in_b, border, n_taps, w, out_c, g, &q, out);
            }
        }
    }
}
