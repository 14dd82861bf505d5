/* A GEMM kernel for products with a packed right-hand operand.
 *
 * The recurrent products of a GRU multiply a few rows by the same weight
 * matrix at every time step.  OpenBLAS repacks the weights on every call;
 * here they are packed once per sequence into panels of GF_PANEL columns (each
 * a contiguous k x GF_PANEL block: 32 at the avx512 level, 16 below), and each step only runs register
 * tiles over them.
 * Written with GCC vector extensions (GCC and clang): the core is compiled
 * once per CPU level (setup.py), and at the avx512 level a vector is one zmm
 * register, at avx2 one ymm, at the baseline (SSE2, or aarch64's NEON) one
 * 16-byte register.
 *
 * With AVX-512, tiles are 8 rows x 32 columns for float (16 zmm accumulators)
 * and 6 x 32 for double (24: with 8 rows the 32 accumulators spill).  The
 * measurements behind these sizes are in bench/README.md ("Measurements
 * behind the code").
 * Rows left after the 8-row tiles take one tile of their own count.
 */
#ifndef GRU_FAST_KERNEL_H
#define GRU_FAST_KERNEL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Vector width, panel width (columns per packed panel) and rows per tile for
 * the CPU level being compiled.  AVX-512: 64-byte vectors, panels of 32,
 * tiles of 8 rows (6 in double).  Otherwise (the AVX2 level, or the
 * baseline) 16 registers only: 32- or 16-byte vectors, panels of 16, and
 * tiles of at most 12 accumulators.  The panel width reaches Python as
 * _core.PANEL_WIDTH of the level loaded at import. */
#if defined(__AVX512F__)
#define GF_VEC_BYTES 64
#define GF_VEC_REGS 32
#define GF_PANEL 32
#define GF_CHAINS 16
/* at most 24 of the 32 registers hold accumulators, and at most 8 rows */
#define GF_TILE_ROWS(nv) (24 / (nv) < 8 ? 24 / (nv) : 8)
#elif defined(__AVX__)
#define GF_VEC_BYTES 32
#define GF_VEC_REGS 16
#define GF_PANEL 16
#define GF_CHAINS 12
#define GF_TILE_ROWS(nv) (12 / (nv))
#else
#define GF_VEC_BYTES 16
#define GF_VEC_REGS 16
#define GF_PANEL 16
#define GF_CHAINS 12
#define GF_TILE_ROWS(nv) (12 / (nv) > 0 ? 12 / (nv) : 1)
#endif
/* Bytes of A that the large products keep in L2: half of one core's L2, as
 * the machine reports it (gru_fast/_caches.py sets it at import through
 * gf_set_level2_bytes; the default is for a 2 MiB L2).  A Zen 3 core has
 * 512 KiB, a Zen 4 core 1 MiB, so no constant fits; on the Zen 3 the
 * change from a fixed 1 MiB measured within noise (bench/README.md). */
#define GF_A_IN_L2_DEFAULT (1 << 20)
static size_t gf_a_in_l2 = GF_A_IN_L2_DEFAULT;

static void gf_set_level2_bytes(size_t level2_bytes)
{
    size_t half = level2_bytes / 2;
    gf_a_in_l2 = half < (64 << 10) ? (64 << 10) : half;
}

static size_t gf_level2_budget(void)
{
    return gf_a_in_l2;
}

#define GF_T float
#define GF_ITYPE int32_t
#define GF_LANES (GF_VEC_BYTES / 4)
#define GF_MR GF_TILE_ROWS(GF_PANEL / GF_LANES)
#define GF_KB 256
#define GF_NAME(x) gf_##x##_float
#include "_kernel_impl.h"
#undef GF_T
#undef GF_ITYPE
#undef GF_LANES
#undef GF_MR
#undef GF_KB
#undef GF_NAME

/* Rows of the float register tile (8 at the avx512 level): a product's rows
 * split at multiples of it give the bits of the unsplit product. */
#define GF_FLOAT_TILE_ROWS GF_TILE_ROWS(GF_PANEL / (GF_VEC_BYTES / 4))

/* Rows of the double register tile: each panel vector loaded from B feeds
 * that many FMAs (6 at the avx512 level, 3 at avx2, 1 at the baseline). */
#define GF_DOUBLE_TILE_ROWS GF_TILE_ROWS(GF_PANEL / (GF_VEC_BYTES / 8))

#define GF_T double
#define GF_ITYPE int64_t
#define GF_LANES (GF_VEC_BYTES / 8)
#define GF_MR GF_TILE_ROWS(GF_PANEL / GF_LANES)
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
