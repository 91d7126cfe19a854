/* int4 for AVX2: the panel unpack compiled for AVX2 (feeds f32_gemm_6x16__avx2). */
#include "q4-dequant.h"
#if CONDENSE_X86
CONDENSE_Q4_UNPACK(condense_q4_unpack__avx2, CONDENSE_TARGET_AVX2)
#endif
