/* Residual block and conv pair row by row (resblock.c): equal to the plain Conv and Add
 * kernels run one after the other on whole tensors, with the output written over the
 * input (odd sizes, padding, stride 2, both Add operand orders). */
#include <string.h>

#include "conv.c"
#include "elementwise.c"
#include "edgec_resblock.h"
#include "edgec_test.h"

#define H 5
#define W 3
#define C 4

static int8_t w3[C * 3 * 3 * C], w1[C * C];
static int32_t bias[C], mult[C], shift[C];
static int8_t scratch[1024];

static void fill(int8_t *v, int n, int seed) {
    int i;
    for (i = 0; i < n; ++i) v[i] = (int8_t)((i * 37 + seed * 11) % 255 - 127);
}

static edgec_conv_params conv3(int in_h, int out_h, int stride, int pad) {
    edgec_conv_params p;
    memset(&p, 0, sizeof p);
    p.batch = 1, p.in_h = (int16_t)in_h, p.in_w = W, p.in_c = C, p.out_h = (int16_t)out_h, p.out_w = W, p.out_c = C;
    p.k_h = 3, p.k_w = 3, p.stride_h = (int16_t)stride, p.stride_w = 1, p.dil_h = 1, p.dil_w = 1;
    p.pad_h = (int16_t)pad, p.pad_w = 1, p.depth_mult = 1, p.in_offset = 3, p.out_offset = -2;
    p.act_min = -128, p.act_max = 127;
    return p;
}

static edgec_binary_params add_params(int size) {
    edgec_binary_params a;
    memset(&a, 0, sizeof a);
    a.size = size, a.left_shift = 20, a.in1_offset = 1, a.in2_offset = -3, a.out_offset = 5;
    a.act_min = 0, a.act_max = 127;
    a.in1_mult = 1 << 30, a.in1_shift = -1, a.in2_mult = 1 << 30, a.in2_shift = -2;
    a.out_mult = 1518500250, a.out_shift = -18;
    return a;
}

static void setup(void) {
    int c;
    fill(w3, (int)sizeof w3, 1);
    fill(w1, (int)sizeof w1, 2);
    for (c = 0; c < C; ++c) bias[c] = 100 * c - 150, mult[c] = 1300000000 + 1000 * c, shift[c] = -9;
}

static void identity_block_in_place(int skip_first) {
    const edgec_conv_params p1 = conv3(H, H, 1, 1), p2 = conv3(H, H, 1, 1);
    const edgec_binary_params add = add_params(H * W * C);
    const edgec_conv_w c1 = {edgec_conv_s8, &p1, w3, bias, mult, shift, scratch, (int32_t)sizeof scratch};
    const edgec_conv_w c2 = {edgec_conv_s8, &p2, w3, bias, mult, shift, scratch, (int32_t)sizeof scratch};
    int8_t x[H * W * C], y1[H * W * C], y2[H * W * C], want[H * W * C], ring[4 * W * C];
    fill(x, H * W * C, 3 + skip_first);
    edgec_conv_s8(&p1, x, w3, bias, mult, shift, y1, scratch, (int32_t)sizeof scratch);
    edgec_conv_s8(&p2, y1, w3, bias, mult, shift, y2, scratch, (int32_t)sizeof scratch);
    edgec_add_s8(&add, skip_first ? x : y2, skip_first ? y2 : x, want);
    edgec_resblock_s8(&c1, &c2, 0, &add, skip_first, x, x, ring);
    EXPECT_S8(x, want);
}

static void identity_skip_second(void) { identity_block_in_place(0); }
static void identity_skip_first(void) { identity_block_in_place(1); }

static void projection_block_stride2_in_place(void) {
    /* 5 rows -> 3 (stride 2, pad 1 above): c1 3x3/2, c2 3x3/1, shortcut 1x1/2. */
    const edgec_conv_params p1 = conv3(H, 3, 2, 1), p2 = conv3(3, 3, 1, 1);
    edgec_conv_params ps = conv3(H, 3, 2, 0);
    const edgec_binary_params add = add_params(3 * W * C);
    edgec_conv_w c1 = {edgec_conv_s8, &p1, w3, bias, mult, shift, scratch, (int32_t)sizeof scratch}, c2 = c1, sc = c1;
    int8_t x[H * W * C], y1[3 * W * C], y2[3 * W * C], s[3 * W * C], want[3 * W * C], ring[5 * W * C];
    ps.k_h = 1, ps.k_w = 1, ps.pad_w = 0, ps.stride_w = 1;
    c2.p = &p2, sc.p = &ps, sc.w = w1;
    fill(x, H * W * C, 7);
    edgec_conv_s8(&p1, x, w3, bias, mult, shift, y1, scratch, (int32_t)sizeof scratch);
    edgec_conv_s8(&p2, y1, w3, bias, mult, shift, y2, scratch, (int32_t)sizeof scratch);
    edgec_conv_s8(&ps, x, w1, bias, mult, shift, s, scratch, (int32_t)sizeof scratch);
    edgec_add_s8(&add, s, y2, want);
    edgec_resblock_s8(&c1, &c2, &sc, &add, 1, x, x, ring);
    EXPECT_S8(x, want);
}

static void conv_pair_without_add(void) {
    const edgec_conv_params p1 = conv3(H, H, 1, 1), p2 = conv3(H, 3, 2, 1);
    const edgec_conv_w c1 = {edgec_conv_s8, &p1, w3, bias, mult, shift, scratch, (int32_t)sizeof scratch};
    const edgec_conv_w c2 = {edgec_conv_s8, &p2, w3, bias, mult, shift, scratch, (int32_t)sizeof scratch};
    int8_t x[H * W * C], y1[H * W * C], want[3 * W * C], out[3 * W * C], ring[3 * W * C];
    fill(x, H * W * C, 9);
    edgec_conv_s8(&p1, x, w3, bias, mult, shift, y1, scratch, (int32_t)sizeof scratch);
    edgec_conv_s8(&p2, y1, w3, bias, mult, shift, want, scratch, (int32_t)sizeof scratch);
    edgec_convpair_s8(&c1, &c2, x, out, ring);
    EXPECT_S8(out, want);
}

int main(void) {
    setup();
    RUN_TEST(identity_skip_second);
    RUN_TEST(identity_skip_first);
    RUN_TEST(projection_block_stride2_in_place);
    RUN_TEST(conv_pair_without_add);
    return TESTS_DONE();
}
