/* The gate loops of one row of a piece, in C for `restrict`.
 *
 * Written in the typed loops of _core.pyx, every row's loops over the piece's
 * units began with GCC's runtime checks that the eight or so arrays they touch
 * do not overlap (and with the activations' constants set up again): with
 * 16-unit pieces, two vectors of work per loop, that preamble cost about what
 * the work did, and it was paid once per row per piece, so the more pieces a
 * step was cut into, the more it cost (forward at B = 32, H = 128 on two
 * threads: the gate loops took 2.4x the CPU time they take on one).  Here the
 * arrays are declared not to overlap, which they never do: each is a
 * different buffer, or (gt) one row whose blocks are indexed through one
 * pointer.  The arithmetic is that of the loops it replaces, unit by unit, in
 * the same order, so the bits do not change.
 */
#ifndef GRU_FAST_GATE_LOOPS_H
#define GRU_FAST_GATE_LOOPS_H

#include <stddef.h>
#include "_activations.h"

#define GF_T float
#define GF_NAME(x) gf_##x##_float
#include "_gate_loops_impl.h"
#undef GF_T
#undef GF_NAME

#define GF_T double
#define GF_NAME(x) gf_##x##_double
#include "_gate_loops_impl.h"
#undef GF_T
#undef GF_NAME

#endif
