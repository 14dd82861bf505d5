/* Products with a narrow side: backward's dx and dW_ih for a few input columns.
 *
 * The packed kernel pads its B operand to whole panels (16 or 32 columns), so
 * for an input piece of one column (univariate series, the most common input
 * of all) it did 16x the multiply-adds needed: dW_ih over N rows at T = 20,
 * B = 32, H = 128 took about 100 us, on one thread, in backward's last phase,
 * where the other thread waited for it (and the pace, seeing a worker that
 * long late, sent the next steps serial).  These loops do only the
 * multiply-adds needed, vectorized over the 3H gate columns, summing over the
 * rows (or the gate columns) in a fixed order, so a result does not depend
 * on the thread that runs it.
 */
#ifndef GRU_FAST_NARROW_H
#define GRU_FAST_NARROW_H

#include <stddef.h>

/* Gate columns summed at once: a few vectors of accumulators. */
#define GF_NARROW_CHUNK 32

#define GF_T float
#define GF_NAME(x) gf_##x##_float
#include "_narrow_impl.h"
#undef GF_T
#undef GF_NAME

#define GF_T double
#define GF_NAME(x) gf_##x##_double
#include "_narrow_impl.h"
#undef GF_T
#undef GF_NAME

#endif
