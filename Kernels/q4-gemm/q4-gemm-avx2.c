/* int4 for AVX2: the exact-dequantize kernel compiled for AVX2+FMA. */
#include "q4-dequant.h"
#if CONDENSE_X86
CONDENSE_Q4_DEQUANT_KERNEL(condense_q4_dequant__avx2, CONDENSE_TARGET_AVX2)
#endif
