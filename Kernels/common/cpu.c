/* CPU feature detection, the ISA ladder (climbed once), and the thread count. */
#include "internal.h"
#include "omp_shim.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#if CONDENSE_X86
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
/* The kernel's bit numbers (asm/hwcap.h), spelled out for C libraries that lack the header. */
#define CONDENSE_HWCAP_FPHP (1ul << 9)
#define CONDENSE_HWCAP_ASIMDHP (1ul << 10)
#define CONDENSE_HWCAP_ASIMDDP (1ul << 20)
#define CONDENSE_HWCAP2_I8MM (1ul << 13)
#define CONDENSE_HWCAP2_BF16 (1ul << 14)
#endif
#if CONDENSE_X86

/* XGETBV without a target attribute: the instruction exists wherever OSXSAVE is set. */
static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}
#endif

static struct {
    pthread_once_t once;
    uint32_t features;
    condense_isa detected;
    condense_isa active;
    condense_dispatch_status status;
    char env_value[64];
    char threads_env[64];
    int threads_invalid;
    int has_env;
    char brand[49];
    int threads;
} g = {.once = PTHREAD_ONCE_INIT};

static uint32_t detect_features(void) {
    uint32_t f = 0;
#if CONDENSE_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1;
    if ((c >> 20) & 1) f |= CONDENSE_CPU_SSE42;
    uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    /* The OS must save XMM|YMM state (bits 1,2) for AVX, and opmask|ZMM (5,6,7) for AVX-512. */
    int os_avx = (xcr0 & 0x6) == 0x6;
    int os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;
    if (os_avx && ((c >> 28) & 1)) f |= CONDENSE_CPU_AVX;
    if (os_avx && ((c >> 12) & 1)) f |= CONDENSE_CPU_FMA;
    if (os_avx && ((c >> 29) & 1)) f |= CONDENSE_CPU_F16C;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (os_avx && ((b >> 5) & 1)) f |= CONDENSE_CPU_AVX2;
        if (os_avx512) {
            if ((b >> 16) & 1) f |= CONDENSE_CPU_AVX512F;
            if ((b >> 17) & 1) f |= CONDENSE_CPU_AVX512DQ;
            if ((b >> 30) & 1) f |= CONDENSE_CPU_AVX512BW;
            if ((b >> 31) & 1) f |= CONDENSE_CPU_AVX512VL;
            if ((c >> 11) & 1) f |= CONDENSE_CPU_AVX512VNNI;
            if ((c >> 6) & 1) f |= CONDENSE_CPU_AVX512VBMI2;
        }
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        if (os_avx && ((a1 >> 4) & 1)) f |= CONDENSE_CPU_AVXVNNI;
        if (os_avx512 && ((a1 >> 5) & 1)) f |= CONDENSE_CPU_AVX512BF16;
    }
#elif defined(__aarch64__) && defined(__APPLE__)
    f |= CONDENSE_CPU_NEON; /* Advanced SIMD is mandatory in AArch64 */
    static const struct { const char *name, *old; uint32_t bit; } opt[] = {
        {"hw.optional.arm.FEAT_DotProd", "hw.optional.armv8_2_dotprod", CONDENSE_CPU_DOTPROD},
        {"hw.optional.arm.FEAT_I8MM", NULL, CONDENSE_CPU_I8MM},
        {"hw.optional.arm.FEAT_BF16", NULL, CONDENSE_CPU_ARM_BF16},
        {"hw.optional.arm.FEAT_FP16", "hw.optional.neon_fp16", CONDENSE_CPU_FP16},
    };
    for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++) {
        int v = 0;
        size_t len = sizeof v;
        if ((sysctlbyname(opt[i].name, &v, &len, NULL, 0) == 0 ||
             (opt[i].old && (len = sizeof v, sysctlbyname(opt[i].old, &v, &len, NULL, 0) == 0))) && v)
            f |= opt[i].bit;
    }
#elif defined(__aarch64__) && defined(__linux__)
    f |= CONDENSE_CPU_NEON;
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    if (hw & CONDENSE_HWCAP_ASIMDDP) f |= CONDENSE_CPU_DOTPROD;
    if ((hw & CONDENSE_HWCAP_FPHP) && (hw & CONDENSE_HWCAP_ASIMDHP)) f |= CONDENSE_CPU_FP16;
    if (hw2 & CONDENSE_HWCAP2_I8MM) f |= CONDENSE_CPU_I8MM;
    if (hw2 & CONDENSE_HWCAP2_BF16) f |= CONDENSE_CPU_ARM_BF16;
#elif defined(__aarch64__)
    f |= CONDENSE_CPU_NEON; /* other systems: the baseline only */
#endif
    return f;
}

static void detect_brand(char out[49]) {
    memset(out, 0, 49);
#if CONDENSE_X86
    unsigned regs[12];
    if (__get_cpuid_max(0x80000000, NULL) < 0x80000004) return;
    for (unsigned i = 0; i < 3; i++)
        __get_cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
    memcpy(out, regs, 48);
    /* Trim the padding some vendors put around the name. */
    char *s = out;
    while (*s == ' ') s++;
    memmove(out, s, strlen(s) + 1);
    for (int i = (int)strlen(out) - 1; i >= 0 && out[i] == ' '; i--) out[i] = 0;
#elif defined(__APPLE__)
    size_t len = 48;
    if (sysctlbyname("machdep.cpu.brand_string", out, &len, NULL, 0) != 0) out[0] = 0;
    out[48] = 0;
#endif
}

static condense_isa isa_from_features(uint32_t f) {
#if defined(__aarch64__)
    if (!(f & CONDENSE_CPU_NEON)) return CONDENSE_ISA_SCALAR;
    if (!(f & CONDENSE_CPU_DOTPROD)) return CONDENSE_ISA_NEON;
    return (f & CONDENSE_CPU_I8MM) ? CONDENSE_ISA_I8MM : CONDENSE_ISA_DOTPROD;
#else
    const uint32_t v3 = CONDENSE_CPU_AVX2 | CONDENSE_CPU_FMA | CONDENSE_CPU_AVX;
    const uint32_t v4 = CONDENSE_CPU_AVX512F | CONDENSE_CPU_AVX512BW | CONDENSE_CPU_AVX512DQ |
                        CONDENSE_CPU_AVX512VL;
    if ((f & v3) != v3) return CONDENSE_ISA_SCALAR;
    /* A rung of the ladder, not a superset claim: an AVX-512 CPU without AVX-VNNI (Skylake-X)
     * still accepts CONDENSE_ISA=avxvnni, and the kernels of that level check their feature bit. */
    if ((f & v4) == v4) return CONDENSE_ISA_AVX512;
    return (f & CONDENSE_CPU_AVXVNNI) ? CONDENSE_ISA_AVXVNNI : CONDENSE_ISA_AVX2;
#endif
}

condense_dispatch_status condense_isa_resolve(const char *value, condense_isa detected,
                                              condense_isa *out) {
    *out = detected;
    if (!value || !*value) return CONDENSE_DISPATCH_OK;
    for (int i = 0; i < CONDENSE_ISA_COUNT; i++) {
        if (strcmp(value, condense_isa_name((condense_isa)i)) == 0) {
            if (!condense_isa_runs_on((condense_isa)i, detected)) return CONDENSE_DISPATCH_UNAVAILABLE;
            *out = (condense_isa)i;
            return CONDENSE_DISPATCH_OK;
        }
    }
    return CONDENSE_DISPATCH_INVALID_VALUE;
}

static void init_once(void) {
    g.features = detect_features();
    g.detected = isa_from_features(g.features);
    g.active = g.detected;
    g.status = CONDENSE_DISPATCH_OK;
    detect_brand(g.brand);
    const char *env = getenv("CONDENSE_ISA");
    if (env && *env) {
        g.has_env = 1;
        snprintf(g.env_value, sizeof g.env_value, "%s", env);
        g.status = condense_isa_resolve(env, g.detected, &g.active);
    }
#ifdef _OPENMP
    g.threads = omp_get_max_threads();   /* honours OMP_NUM_THREADS */
#else
    g.threads = condense_num_procs();    /* the thread team needs no OpenMP */
    if (g.threads > CONDENSE_MAX_THREADS) g.threads = CONDENSE_MAX_THREADS;
#endif
    const char *nt = getenv("CONDENSE_NUM_THREADS");
    if (nt && *nt) {
        char *end = NULL;
        errno = 0;
        long v = strtol(nt, &end, 10);
        snprintf(g.threads_env, sizeof g.threads_env, "%s", nt);
        /* Rejected like a bad CONDENSE_ISA: kept at the default here, reported by the host. */
        if (errno == 0 && end && *end == 0 && v >= 1 && v <= CONDENSE_MAX_THREADS) g.threads = (int)v;
        else g.threads_invalid = 1;
    }
    if (g.threads < 1) g.threads = 1;
    const char *log = getenv("CONDENSE_LOG_DISPATCH");
    if (log && *log && strcmp(log, "0") != 0) {
        fprintf(stderr, "condense: cpu \"%s\", detected %s, using %s%s, %d thread(s)%s\n", g.brand,
                condense_isa_name(g.detected), condense_isa_name(g.active),
                g.has_env ? " (CONDENSE_ISA)" : "", g.threads,
                g.status == CONDENSE_DISPATCH_OK ? "" : " [CONDENSE_ISA rejected]");
    }
}

static void ensure_init(void) { pthread_once(&g.once, init_once); }

uint32_t condense_cpu_features(void) { ensure_init(); return g.features; }
condense_isa condense_isa_detected(void) { ensure_init(); return g.detected; }
condense_isa condense_isa_active(void) { ensure_init(); return g.active; }
condense_dispatch_status condense_dispatch_status_get(void) { ensure_init(); return g.status; }
const char *condense_isa_env_value(void) { ensure_init(); return g.has_env ? g.env_value : NULL; }
const char *condense_cpu_brand(void) { ensure_init(); return g.brand; }
const char *condense_threads_env_rejected(void) { ensure_init(); return g.threads_invalid ? g.threads_env : NULL; }

const char *condense_isa_name(condense_isa isa) {
    switch (isa) {
    case CONDENSE_ISA_SCALAR: return "scalar";
    case CONDENSE_ISA_AVX2: return "avx2";
    case CONDENSE_ISA_AVXVNNI: return "avxvnni";
    case CONDENSE_ISA_AVX512: return "avx512";
    case CONDENSE_ISA_NEON: return "neon";
    case CONDENSE_ISA_DOTPROD: return "dotprod";
    case CONDENSE_ISA_I8MM: return "i8mm";
    default: return "unknown";
    }
}

int condense_openmp_enabled(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int condense_get_num_threads(void) { ensure_init(); return __atomic_load_n(&g.threads, __ATOMIC_RELAXED); }

int condense_set_num_threads(int n) {
    ensure_init();
    if (n < 1) n = 1;
    return __atomic_exchange_n(&g.threads, n, __ATOMIC_RELAXED);
}

int condense_num_procs(void) {
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    const long np = sysconf(_SC_NPROCESSORS_ONLN);
    return np > 0 ? (int)np : 1;
#endif
}

#ifdef _OPENMP
/* LLVM/Intel OpenMP extensions; weak so a runtime without them (libgomp) still links. */
extern int kmp_get_blocktime(void) __attribute__((weak));
extern void kmp_set_blocktime(int msec) __attribute__((weak));
#endif

void condense_threads_quiesce(void) {
    condense_team_quiesce();
#ifdef _OPENMP
    /* libomp's workers spin for KMP_BLOCKTIME (200 ms) after each region, taking cores from any
     * other thread pool in the process (oneDNN's libgomp, OpenBLAS). One empty region with a
     * block time of 0 sends them to sleep now; the old block time applies to the next region. */
    if (!kmp_get_blocktime || !kmp_set_blocktime) return;
    const int bt = kmp_get_blocktime();
    kmp_set_blocktime(0);
#pragma omp parallel num_threads(condense_get_num_threads())
    { __asm__ volatile("" ::: "memory"); }
    kmp_set_blocktime(bt);
#endif
}

#ifdef _OPENMP
/* clang >= 19 emits calls to this for dynamic/guided schedules; Debian 12's libomp 14 lacks it.
 * The kernels use static schedules only; this weak empty definition keeps a stray one linking. */
__attribute__((weak)) void __kmpc_dispatch_deinit(void *loc, int gtid) { (void)loc; (void)gtid; }
#endif
