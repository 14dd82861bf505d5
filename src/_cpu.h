/* What this CPU can run, and how the core was built (see setup.py).
 *
 * setup.py compiles the core once per CPU level; gru_fast/_core.py imports
 * the best level this CPU reports here.  The checks match the compiler
 * flags of each level in setup.py.  __builtin_cpu_supports (GCC and clang)
 * reads CPUID and also checks that the operating system saves the wider
 * registers (XGETBV), as NumPy's dispatch does.  This file is compiled for
 * the baseline only, so that asking never runs an instruction the CPU lacks.
 */
#ifndef GRU_FAST_CPU_H
#define GRU_FAST_CPU_H

#ifdef _OPENMP
#include <omp.h>
#define GF_OPENMP_VERSION _OPENMP
#else
#define GF_OPENMP_VERSION 0
#endif

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define GF_X86 1

/* AVX2 and FMA: setup.py's "-mavx2 -mfma" */
static int gf_cpu_runs_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* AVX-512 F, CD, BW, DQ, VL (with AVX2 and FMA): setup.py's avx512 flags */
static int gf_cpu_runs_avx512(void)
{
    __builtin_cpu_init();
    return gf_cpu_runs_avx2() && __builtin_cpu_supports("avx512f")
        && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}

#else
#define GF_X86 0
static int gf_cpu_runs_avx2(void) { return 0; }
static int gf_cpu_runs_avx512(void) { return 0; }
#endif

#endif
