/* SysTick timing shared by the edgec Cortex-M harness mains (cm_main.c, uart_main.c). */
#ifndef EDGEC_CM_TIMING_H
#define EDGEC_CM_TIMING_H
#include <stdint.h>

extern volatile uint32_t edgec_systick_wraps;

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

/* Ticks since SysTick started: 24-bit counter plus the wraps the handler counted. */
static inline uint64_t ticks_now(void) {
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
static inline void calib_loop(uint32_t n) {
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

#endif
