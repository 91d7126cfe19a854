/* int8 micro-kernel 6×16 for AVX-VNNI (VEX vpdpbusd on 256-bit vectors): CPUs with AVX-VNNI but
 * no AVX-512 (Alder Lake and later clients). u8 activations × s8 weights, 4 products per int32
 * lane and instruction, no int16 intermediate (so no saturation, unlike vpmaddubsw). Weights are
 * packed as byte quads per channel, like the AVX-512 kernel; 16 VEX registers hold 12
 * accumulators, 2 weight vectors and a broadcast. */
#include "internal.h"

#if CONDENSE_X86
#include <immintrin.h>
#include "vecmath-avx2.h"
#include "q8-epilogue-256.h"

/* One source (q8-vnni256.h), two encodings: VEX (AVX-VNNI, the kernel dispatched at that
 * level) and EVEX (AVX-512 VNNI + VL on ymm), the same instructions' twin. A CPU with AVX-512 but
 * without AVX-VNNI (Zen 4, and this project's test machine: CPUID 7.1 EAX[4] clear, the VEX form
 * raises #UD) runs the twin, so the kernel's packing, tails and epilogue are tested there. */
#define CONDENSE_TARGET_VNNI256 __attribute__((target("avx2,fma,f16c,avxvnni")))
#define DPBUSD256 _mm256_dpbusd_avx_epi32
#define Q8_VNNI256_NAME condense_q8_ukernel_6x16__avxvnni
#define Q8_VNNI256_BODY q8_vnni256
#include "q8-vnni256.h"
#undef CONDENSE_TARGET_VNNI256
#undef DPBUSD256
#undef Q8_VNNI256_NAME
#undef Q8_VNNI256_BODY

#define CONDENSE_TARGET_VNNI256 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")))
#define DPBUSD256 _mm256_dpbusd_epi32
#define Q8_VNNI256_NAME condense_q8_ukernel_6x16__avx512vnni_ymm
#define Q8_VNNI256_BODY q8_vnni256_evex
#include "q8-vnni256.h"
#endif
