/* edgec UART bench firmware: times edgec_model_run on a board and reports over a serial line.
 *
 * Line protocol (ASCII, '\n'-terminated; every line the board sends ends in " *CRC" where CRC is
 * the CRC-32 (IEEE) of the text before it, as 8 hex digits):
 *   host  -> "HELLO"                  board -> "EDGEC READY 1 *CRC"
 *   host  -> "BENCH <iters> <warmup>" board -> "EDGEC RESULT rc=.. iters=.. min=.. p50=.. p90=.. p99=.. max=..
 *                                              sum=.. calib=.. out_crc=.. *CRC"
 * Times are SysTick ticks of the core clock; calib is the ticks of a loop of 400000
 * instructions, so the host can also report instructions. The board answers HELLO again after
 * each result, so one flash serves many runs. No printf, no semihosting, no heap: it runs on a
 * bare board. The UART itself is edgec_uart_* (uart_cmsdk.c for Arm MPS2/MPS3 boards and QEMU;
 * a board port supplies its own three functions).
 */
#include <stdint.h>

#include "cm_timing.h"
#include "edgec_model.h"

extern const void *const edgec_harness_inputs[EDGEC_NUM_INPUTS];
extern void *const edgec_harness_outputs[EDGEC_NUM_OUTPUTS];
extern const uint32_t edgec_harness_output_bytes[EDGEC_NUM_OUTPUTS];

void edgec_uart_init(void);
void edgec_uart_putc(char c);
char edgec_uart_getc(void);

#define MAX_ITERS 1000u

static uint32_t ticks[MAX_ITERS];
static uint32_t line_crc;


static uint32_t crc32_update(uint32_t crc, const uint8_t *p, uint32_t n) {
    uint32_t i, k;
    crc = ~crc;
    for (i = 0; i < n; ++i) {
        crc ^= p[i];
        for (k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void out_str(const char *s) {
    while (*s) {
        line_crc = crc32_update(line_crc, (const uint8_t *)s, 1);
        edgec_uart_putc(*s++);
    }
}

static void out_u32(uint32_t v) {
    char buf[11];
    int i = 10;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    out_str(&buf[i]);
}

static void hex8(uint32_t v, char *buf) {
    int i;
    for (i = 7; i >= 0; --i) {
        buf[i] = "0123456789abcdef"[v & 15u];
        v >>= 4;
    }
    buf[8] = 0;
}

static void end_line(void) {
    char buf[9];
    hex8(line_crc, buf);
    edgec_uart_putc(' ');
    edgec_uart_putc('*');
    for (int i = 0; i < 8; ++i) edgec_uart_putc(buf[i]);
    edgec_uart_putc('\n');
    line_crc = 0;
}

static void kv(const char *key, uint32_t v) {
    out_str(" ");
    out_str(key);
    out_str("=");
    out_u32(v);
}

static uint32_t read_line(char *buf, uint32_t cap) {
    uint32_t n = 0;
    for (;;) {
        char c = edgec_uart_getc();
        if (c == '\n' || c == '\r') {
            if (n) break;
            continue;
        }
        if (n + 1 < cap) buf[n++] = c;
    }
    buf[n] = 0;
    return n;
}

static const char *parse_u32(const char *p, uint32_t *v) {
    while (*p == ' ') ++p;
    *v = 0;
    while (*p >= '0' && *p <= '9') *v = *v * 10u + (uint32_t)(*p++ - '0');
    return p;
}

static int starts_with(const char *s, const char *prefix) {
    while (*prefix)
        if (*s++ != *prefix++) return 0;
    return 1;
}

static void bench(uint32_t iters, uint32_t warmup) {
    uint32_t i, j, n;
    uint64_t sum = 0, c0, c1, t0;
    int rc = 0;
    uint32_t out_crc = 0;
    char hex[9];
    if (iters < 1u) iters = 1u;
    if (iters > MAX_ITERS) iters = MAX_ITERS;
    c0 = ticks_now();
    calib_loop(100000u);
    c1 = ticks_now();
    for (i = 0; i < warmup && rc == 0; ++i) rc = edgec_model_run(edgec_harness_inputs, edgec_harness_outputs);
    for (i = 0; i < iters && rc == 0; ++i) {
        t0 = ticks_now();
        rc = edgec_model_run(edgec_harness_inputs, edgec_harness_outputs);
        ticks[i] = (uint32_t)(ticks_now() - t0);
        sum += ticks[i];
    }
    n = i;
    for (i = 1; i < n; ++i) { /* insertion sort: n <= 1000, once per run */
        uint32_t v = ticks[i];
        for (j = i; j > 0 && ticks[j - 1] > v; --j) ticks[j] = ticks[j - 1];
        ticks[j] = v;
    }
    for (i = 0; i < EDGEC_NUM_OUTPUTS; ++i)
        out_crc = crc32_update(out_crc, (const uint8_t *)edgec_harness_outputs[i], edgec_harness_output_bytes[i]);
    out_str("EDGEC RESULT");
    kv("rc", (uint32_t)rc);
    kv("iters", n);
    if (n) {
        kv("min", ticks[0]);
        kv("p50", ticks[(n - 1u) / 2u]);
        kv("p90", ticks[(n - 1u) * 9u / 10u]);
        kv("p99", ticks[(n - 1u) * 99u / 100u]);
        kv("max", ticks[n - 1u]);
    }
    kv("sum_hi", (uint32_t)(sum >> 32));
    kv("sum_lo", (uint32_t)sum);
    kv("calib", (uint32_t)(c1 - c0));
    hex8(out_crc, hex);
    out_str(" out_crc=");
    out_str(hex);
    end_line();
}

int main(void) {
    char line[64];
    edgec_uart_init();
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0u;
    SYST_CSR = 7u; /* enable, interrupt on wrap, processor clock */
    for (;;) {
        read_line(line, sizeof line);
        if (starts_with(line, "HELLO")) {
            out_str("EDGEC READY 1");
            end_line();
        } else if (starts_with(line, "BENCH")) {
            uint32_t iters, warmup;
            const char *p = parse_u32(line + 5, &iters);
            parse_u32(p, &warmup);
            bench(iters, warmup);
        } else {
            out_str("EDGEC ERROR unknown command");
            end_line();
        }
    }
}
