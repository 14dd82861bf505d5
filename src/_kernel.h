/* A GEMM kernel for products with a packed right-hand operand.
 *
 * The recurrent products of a GRU multiply a few rows by the same weight
 * matrix at every time step.  OpenBLAS repacks the weights on every call;
 * here they are packed once per sequence into panels of 32 columns (each a
 * contiguous k x 32 block), and each step only runs register tiles over them.
 * Written with GCC vector extensions: with -march=native on an AVX-512 CPU a
 * vector is one zmm register, elsewhere the compiler splits it.
 *
 * Tiles are 8 rows x 32 columns: 16 zmm accumulators for float, 32 for double.
 * Measured on AMD EPYC (Zen 5), one core, B (k, n) = (512, 768), m = 64:
 * float 250 GFLOP/s; double 116 GFLOP/s with 8 rows, 59 with 4 (GCC then
 * reloads every panel vector once per row, and the loads become the limit).
 * Rows left after the 8-row tiles take one tile of their own count.
 */
#ifndef GRU_FAST_KERNEL_H
#define GRU_FAST_KERNEL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define GF_PANEL 32  /* columns per packed panel */
#define GF_A_IN_L2 (1 << 20)  /* bytes of A that stay in L2 (half of it, here) */

#define GF_T float
#define GF_ITYPE int32_t
#define GF_LANES 16
#define GF_MR 8
#define GF_KB 256
#define GF_NAME(x) gf_##x##_float
#include "_kernel_impl.h"
#undef GF_T
#undef GF_ITYPE
#undef GF_LANES
#undef GF_MR
#undef GF_KB
#undef GF_NAME

#define GF_T double
#define GF_ITYPE int64_t
#define GF_LANES 8
#define GF_MR 8
#define GF_KB 128
#define GF_NAME(x) gf_##x##_double
#include "_kernel_impl.h"
#undef GF_T
#undef GF_ITYPE
#undef GF_LANES
#undef GF_MR
#undef GF_KB
#undef GF_NAME

#endif
