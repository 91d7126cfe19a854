/*
 * The few OpenMP entry points the kernels call. The Swift toolchain's clang ships no omp.h
 * (and adding clang-14's include folder would shadow the toolchain's intrinsic headers), so we
 * declare what we use. Without OpenMP the shims answer as a single thread.
 */
#ifndef CONDENSE_OMP_SHIM_H
#define CONDENSE_OMP_SHIM_H

#ifdef _OPENMP
int omp_get_max_threads(void);
int omp_get_num_threads(void);
int omp_get_thread_num(void);
int omp_get_num_procs(void);
#else
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_num_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_procs(void) { return 1; }
#endif

#endif
