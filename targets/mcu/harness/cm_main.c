/* edgec Cortex-M harness main (QEMU, semihosting): runs the model once on the inputs in
 * harness_io.c, prints every output as hex and the SysTick ticks the run took. */
#include <stdint.h>
#include <stdio.h>

#include "edgec_model.h"

extern void initialise_monitor_handles(void);
extern const void *const edgec_harness_inputs[EDGEC_NUM_INPUTS];
extern void *const edgec_harness_outputs[EDGEC_NUM_OUTPUTS];
extern const uint32_t edgec_harness_output_bytes[EDGEC_NUM_OUTPUTS];
extern volatile uint32_t edgec_systick_wraps;

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

static uint64_t ticks_now(void) {
    uint32_t w1, w2, cvr;
    do {
        w1 = edgec_systick_wraps;
        cvr = SYST_CVR;
        w2 = edgec_systick_wraps;
    } while (w1 != w2);
    return (uint64_t)w1 * 0x1000000u + (0xFFFFFFu - cvr);
}

/* 4 * n instructions (2 of them in the loop body, plus the loop's subs/bne). */
#if defined(__ARM_ARCH_6M__)
#define EDGEC_SYNTAX_RESTORE ".syntax divided\n"
#else
#define EDGEC_SYNTAX_RESTORE ""
#endif
static void calib_loop(uint32_t n) {
    __asm__ volatile(
        ".syntax unified\n"
        "1:\n\t"
        "nop\n\t"
        "nop\n\t"
        "subs %0, %0, #1\n\t"
        "bne 1b\n"
        EDGEC_SYNTAX_RESTORE
        : "+l"(n) : : "cc");
}

#ifdef EDGEC_PROFILE
static uint64_t edgec_marks[EDGEC_NUM_LAYERS + 1];
void edgec_profile_mark(int32_t layer);
void edgec_profile_mark(int32_t layer) { edgec_marks[layer] = ticks_now(); }
#endif

/* Stack painting: fill the free stack below the caller with a pattern before the run and
 * count the words the run overwrote. Stays clear of the heap newlib may use just above
 * .bss (EDGEC_HEAP_MARGIN). */
extern uint32_t _ebss;
#define EDGEC_PAINT 0xA5C3E10Fu
#define EDGEC_HEAP_MARGIN 2048u
static uint32_t *paint_lo, *paint_hi;

__attribute__((noinline)) static void paint_stack(void) {
    uint32_t here, *p;
    paint_hi = (uint32_t *)(((uint32_t)&here - 64u) & ~3u);
    paint_lo = (uint32_t *)((uint32_t)&_ebss + EDGEC_HEAP_MARGIN);
    if ((uint32_t)paint_hi - (uint32_t)paint_lo > 32768u) paint_lo = paint_hi - 8192;
    for (p = paint_lo; p < paint_hi; ++p) *p = EDGEC_PAINT;
}

static uint32_t stack_used(uint32_t *base) {
    uint32_t *p = paint_lo;
    while (p < paint_hi && *p == EDGEC_PAINT) ++p;
    return (uint32_t)base - (uint32_t)p;
}

int main(void) {
    uint64_t t0, t1, c0, c1;
    uint32_t i, j, stack, base_probe;
    int rc;
    initialise_monitor_handles();
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0u;
    SYST_CSR = 7u; /* enable, interrupt on wrap, processor clock */
    while (SYST_CVR == 0u) {
        /* wait for the first reload so CVR counts down from 0xFFFFFF */
    }
    c0 = ticks_now();
    calib_loop(100000u);
    c1 = ticks_now();
    paint_stack();
    t0 = ticks_now();
    rc = edgec_model_run(edgec_harness_inputs, edgec_harness_outputs);
    t1 = ticks_now();
    stack = stack_used(&base_probe);
    for (i = 0; i < EDGEC_NUM_OUTPUTS; ++i) {
        const uint8_t *p = (const uint8_t *)edgec_harness_outputs[i];
        printf("EDGEC_OUT %lu ", (unsigned long)i);
        for (j = 0; j < edgec_harness_output_bytes[i]; ++j) printf("%02x", p[j]);
        printf("\n");
    }
    printf("EDGEC_TICKS %lu\n", (unsigned long)(t1 - t0));
    printf("EDGEC_STACK %lu\n", (unsigned long)stack);
#ifdef EDGEC_PROFILE
    for (i = 0; i < EDGEC_NUM_LAYERS; ++i)
        printf("EDGEC_PROF %lu %lu\n", (unsigned long)i, (unsigned long)(edgec_marks[i + 1] - edgec_marks[i]));
#endif
    printf("EDGEC_CALIB %lu %lu\n", (unsigned long)(c1 - c0), 400000ul);
    printf("EDGEC_RC %d\n", rc);
    return rc;
}
