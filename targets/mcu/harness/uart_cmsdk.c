/* edgec_uart_* for the Arm CMSDK APB UART (MPS2/MPS3 FPGA boards and their QEMU models).
 * EDGEC_UART_BASE is set at build time from the board; EDGEC_UART_BAUDDIV = core clock / baud. */
#include <stdint.h>

#ifndef EDGEC_UART_BASE
#define EDGEC_UART_BASE 0x40004000u
#endif
#ifndef EDGEC_UART_BAUDDIV
#define EDGEC_UART_BAUDDIV 217u /* 25 MHz / 115200 */
#endif

#define UART_DATA (*(volatile uint32_t *)(EDGEC_UART_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(EDGEC_UART_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(EDGEC_UART_BASE + 0x08u))
#define UART_BAUDDIV (*(volatile uint32_t *)(EDGEC_UART_BASE + 0x10u))

void edgec_uart_init(void);
void edgec_uart_putc(char c);
char edgec_uart_getc(void);

void edgec_uart_init(void) {
    UART_BAUDDIV = EDGEC_UART_BAUDDIV;
    UART_CTRL = 3u; /* TX and RX enabled, no interrupts */
}

void edgec_uart_putc(char c) {
    while (UART_STATE & 1u) {
        /* TX buffer full */
    }
    UART_DATA = (uint32_t)(uint8_t)c;
}

char edgec_uart_getc(void) {
    while (!(UART_STATE & 2u)) {
        /* RX buffer empty */
    }
    return (char)(UART_DATA & 0xFFu);
}
