/* Portable int4 kernel: exact dequantize to f32. */
#include "q4-dequant.h"
CONDENSE_Q4_DEQUANT_KERNEL(condense_q4_dequant__scalar, )
