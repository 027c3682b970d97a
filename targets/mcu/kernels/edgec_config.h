/* The kernel variants a model needs. edgec writes this file for each model, leaving out the
 * variants no layer takes, so an -O2 build carries no dead code; this default (used when
 * the kernels are compiled on their own) keeps every variant. A layer whose variant is left
 * out takes a general loop with the same bits (EDGEC_DW_GENERIC excepted). */
#ifndef EDGEC_CONFIG_H
#define EDGEC_CONFIG_H

/* Some conv/depthwise layer has rq_fast 1 (a clamp narrower than [-128, 127]). */
#ifndef EDGEC_RQ_FAST1
#define EDGEC_RQ_FAST1 1
#endif
/* Some conv/depthwise layer has rq_fast 0 (a left shift: the general requantization). */
#ifndef EDGEC_RQ_GENERAL
#define EDGEC_RQ_GENERAL 1
#endif
/* FullyConnected holds enough of the model's MACs to pay for its SIMD loops. */
#ifndef EDGEC_FC_FAST
#define EDGEC_FC_FAST 1
#endif
/* Some depthwise layer has a depth multiplier > 1 or more than 64 taps (the generic loop;
 * the only setting that layers depend on: 0 leaves such layers without a loop). */
#ifndef EDGEC_DW_GENERIC
#define EDGEC_DW_GENERIC 1
#endif
/* Conv/depthwise, Requantize and Concat requantization round once (a model imported from
 * Q/DQ ONNX). */
#ifndef EDGEC_CONV_SINGLE_ROUNDING
#define EDGEC_CONV_SINGLE_ROUNDING 0
#endif

/* The int16 (16x8) kernels of s16.c: edgec writes 1 only for models with int16 tensors (an
 * int8-only model's bundle leaves s16.c out); 0 compiles the file to nothing. */
#ifndef EDGEC_WITH_S16
#define EDGEC_WITH_S16 1
#endif

/* The rest (EDGEC_BUNDLE_ISA, EDGEC_DW_TAIL, EDGEC_CONV_TAIL, EDGEC_CONV_DILATED) default in
 * edgec_conv_internal.h to the build that keeps every loop. */
#endif
