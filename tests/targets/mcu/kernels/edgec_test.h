/* A minimal test harness for the kernel tests (TFLM kernels/<op>_test.cc style): each test
 * calls one kernel on hand-written int8 tensors and compares with golden outputs. */
#ifndef EDGEC_TEST_H
#define EDGEC_TEST_H

#include <stdint.h>
#include <stdio.h>

static int edgec_test_failures = 0;
static const char *edgec_test_name = "";

/* One comparison per element type; the first mismatch is reported and counted. */
#define EDGEC_DEFINE_EXPECT(suffix, type, fmt, cast)                                                       \
    static inline void edgec_expect_##suffix(const type *got, const type *want, int n, const char *what,  \
                                             int line) {                                                 \
        int i;                                                                                           \
        for (i = 0; i < n; ++i) {                                                                        \
            if (got[i] != want[i]) {                                                                     \
                printf("FAIL %s (line %d): %s[%d] = " fmt ", want " fmt "\n", edgec_test_name, line, what, \
                       i, (cast)got[i], (cast)want[i]);                                                  \
                ++edgec_test_failures;                                                                   \
                return;                                                                                  \
            }                                                                                            \
        }                                                                                                \
    }
EDGEC_DEFINE_EXPECT(s8, int8_t, "%d", int)
EDGEC_DEFINE_EXPECT(s16, int16_t, "%d", int)
EDGEC_DEFINE_EXPECT(f32, float, "%g", double)

#define EXPECT_S8(got, want) edgec_expect_s8((got), (want), (int)(sizeof(want) / sizeof((want)[0])), #got, __LINE__)
#define EXPECT_S16(got, want) edgec_expect_s16((got), (want), (int)(sizeof(want) / sizeof((want)[0])), #got, __LINE__)
#define EXPECT_F32(got, want) edgec_expect_f32((got), (want), (int)(sizeof(want) / sizeof((want)[0])), #got, __LINE__)
#define RUN_TEST(fn)                          \
    do {                                      \
        edgec_test_name = #fn;                \
        fn();                                 \
        printf("ran %s\n", #fn);              \
    } while (0)
#define TESTS_DONE() (edgec_test_failures ? (printf("%d failure(s)\n", edgec_test_failures), 1) : 0)

/* Multiplier/shift pairs for exact factors: m * 2^(shift - 31). */
#define EDGEC_HALF 1073741824 /* 2^30: 0.5 with shift 0, 1.0 with shift 1, 2.0 with shift 2 */

#endif
