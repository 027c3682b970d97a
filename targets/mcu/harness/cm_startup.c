/* Minimal Cortex-M startup for the edgec QEMU harness: vector table, .data/.bss init,
 * a SysTick handler counting wraps (for timing), then main() and a semihosting exit. */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void);

volatile uint32_t edgec_systick_wraps;

__attribute__((section(".isr_vector"), used))
void (*const edgec_vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, SysTick_Handler,
};

void Reset_Handler(void) {
    uint32_t *src = &_sidata, *dst = &_sdata;
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    /* FPU / Helium instructions fault until CP10 and CP11 get full access (CPACR). */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    exit(main());
}

void SysTick_Handler(void) { edgec_systick_wraps++; }

void Default_Handler(void) {
    exit(99);
}
