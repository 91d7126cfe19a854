/* Portable int4 panel unpack: exact dequantize to f32 for the scalar f32 micro-kernel. */
#include "q4-dequant.h"
CONDENSE_Q4_UNPACK(condense_q4_unpack__scalar, )
