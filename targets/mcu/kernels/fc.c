/* FullyConnected (Gemm/MatMul), int8. The bias passed in already holds
 * bias + in_offset * sum(weights of the row), folded at build time (exact in int32). */
#include "edgec_kernels.h"
#include "edgec_fixedpoint.h"

void edgec_fc_s8(const edgec_fc_params *p, const int8_t *in, const int8_t *w,
                 const int32_t *bias, const int32_t *mult, const int32_t *shift, int8_t *out) {
    int32_t b, n, k;
    const int32_t K = p->in_k, N = p->out_n;
    for (b = 0; b < p->batch; ++b) {
        const int8_t *x = in + b * K;
        for (n = 0; n < N; ++n) {
            const int8_t *wr = w + n * K;
            const int32_t c = p->per_channel ? n : 0;
            int32_t acc = bias ? bias[n] : 0;
            for (k = 0; k < K; ++k) acc += (int32_t)wr[k] * (int32_t)x[k];
            acc = edgec_mbqm_single(acc, mult[c], shift[c]) + p->out_offset;
            out[b * N + n] = (int8_t)edgec_clamp(acc, p->act_min, p->act_max);
        }
    }
}
