/* Float I/O helpers (only for models whose own inputs/outputs are float32): TFLite's
 * Quantize (round half away from zero of x / scale) and Dequantize. */
#include "edgec_kernels.h"
#include "edgec_fixedpoint.h"

/* Quantize and Dequantize for int8 and int16 (a 16x8 .tflite's float I/O), one body each. */
#define EDGEC_QUANTIZE_F32(NAME, T, LO, HI)                                                    \
    void NAME(int32_t size, float scale, int32_t zp, const float *in, T *out) {              \
        int32_t i;                                                                            \
        for (i = 0; i < size; ++i) {                                                          \
            const float v = in[i] / scale;                                                    \
            int32_t r;                                                                        \
            float frac;                                                                       \
            if (v > 1.0e9f) r = HI - zp;                                                      \
            else if (v < -1.0e9f) r = LO - zp;                                                \
            else {                                                                            \
                r = (int32_t)v;                                                               \
                frac = v - (float)r;                                                          \
                if (frac >= 0.5f) ++r;                                                        \
                else if (frac <= -0.5f) --r;                                                  \
            }                                                                                 \
            out[i] = (T)edgec_clamp(r + zp, LO, HI);                                          \
        }                                                                                     \
    }

#define EDGEC_DEQUANTIZE_F32(NAME, T)                                                          \
    void NAME(int32_t size, float scale, int32_t zp, const T *in, float *out) {              \
        int32_t i;                                                                            \
        for (i = 0; i < size; ++i) out[i] = (float)((int32_t)in[i] - zp) * scale;            \
    }

EDGEC_QUANTIZE_F32(edgec_quantize_f32_s8, int8_t, -128, 127)
EDGEC_QUANTIZE_F32(edgec_quantize_f32_s16, int16_t, -32768, 32767)
EDGEC_DEQUANTIZE_F32(edgec_dequantize_s8_f32, int8_t)
EDGEC_DEQUANTIZE_F32(edgec_dequantize_s16_f32, int16_t)
