/* edgec Cortex-M harness main (QEMU, semihosting): runs the model once on the inputs in
 * harness_io.c, prints every output as hex and the SysTick ticks the run took. */
#include <stdint.h>
#include <stdio.h>

#include "cm_timing.h"
#include "edgec_model.h"

extern void initialise_monitor_handles(void);
extern const void *const edgec_harness_inputs[EDGEC_NUM_INPUTS];
extern void *const edgec_harness_outputs[EDGEC_NUM_OUTPUTS];
extern const uint32_t edgec_harness_output_bytes[EDGEC_NUM_OUTPUTS];


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
