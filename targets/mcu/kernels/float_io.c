/* Float I/O helpers (only for models whose own inputs/outputs are float32): TFLite's
 * Quantize (round half away from zero of x / scale) and Dequantize. */
#include "edgec_kernels.h"
#include "edgec_fixedpoint.h"

void edgec_quantize_f32_s8(int32_t size, float scale, int32_t zp, const float *in, int8_t *out) {
    int32_t i;
    for (i = 0; i < size; ++i) {
        const float v = in[i] / scale;
        int32_t r;
        float frac;
        if (v > 1.0e9f) r = 127 - zp;
        else if (v < -1.0e9f) r = -128 - zp;
        else {
            r = (int32_t)v;
            frac = v - (float)r;
            if (frac >= 0.5f) ++r;
            else if (frac <= -0.5f) --r;
        }
        out[i] = (int8_t)edgec_clamp(r + zp, -128, 127);
    }
}

void edgec_dequantize_s8_f32(int32_t size, float scale, int32_t zp, const int8_t *in, float *out) {
    int32_t i;
    for (i = 0; i < size; ++i) out[i] = (float)((int32_t)in[i] - zp) * scale;
}
