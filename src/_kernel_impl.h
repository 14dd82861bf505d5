/* The packed GEMM kernel for one dtype; included twice by _kernel.h.
 *
 * Before inclusion: GF_T (float or double), GF_LANES (GF_T values per
 * vector), GF_MR (rows per register tile), GF_KB (k values per block) and
 * GF_NAME(x) (appends the dtype to a name).
 */

typedef GF_T GF_NAME(vec) __attribute__((vector_size(GF_VEC_BYTES)));
/* The same vector type at the alignment of one element, for loads and stores
 * at addresses that are not multiples of 64 bytes. */
typedef GF_T GF_NAME(uvec) __attribute__((vector_size(GF_VEC_BYTES), aligned(sizeof(GF_T))));
/* Shuffle indices for GF_NAME(vec): integers of the same width. */
typedef GF_ITYPE GF_NAME(ivec) __attribute__((vector_size(GF_VEC_BYTES)));

#define GF_NV (GF_PANEL / GF_LANES)  /* vectors per panel row */
/* Keep a loaded vector in a register: without this GCC folds the load into
 * every FMA that uses it, and tiles of 4 rows or fewer then issue more loads
 * than FMAs and run at half speed.  (For more rows GCC keeps the panel row in
 * registers anyway, and in double the 32 accumulators leave no room.) */
#ifndef GF_IN_REGISTER
#if defined(__GNUC__) && defined(__AVX512F__)
#define GF_IN_REGISTER(x) __asm__("" : "+v"(x))
#else
#define GF_IN_REGISTER(x) ((void)0)
#endif
#endif
#if GF_MR > 8
#error "panel_rows handles a remainder of at most 7 rows"
#endif


/* C[:R, :32 P] (+)= A[:R, :k] @ [P_0 .. P_{P-1}] for P consecutive panels
 * (each k x 32, rows 32 values apart, panel_stride values from one to the
 * next; the last has only ncols_last columns of C to write) and R <= GF_MR
 * rows of A, A[i, p] at a[i * lda + p * a_step].  R and P are constants at
 * every call, so after inlining the accumulators live in registers: each
 * step of k loads P panel rows (P * GF_NV vectors) and broadcasts R values
 * of A into R * P * GF_NV FMAs.  An FMA takes 4 cycles and two issue per
 * cycle, so at least 8 independent chains keep the units busy; tiles with
 * fewer accumulators than GF_CHAINS split k over U sets, summed at the end.
 * The loads are the limit with few rows (about one vector load per cycle
 * here), so 4 to 7 rows take several panels at once: one broadcast of A
 * then feeds P times as many FMAs (measured: bench/README.md, "Measurements
 * behind the code"). */
#define GF_SETS(R, P) ((R) * (P) * GF_NV >= GF_CHAINS ? 1 : GF_CHAINS / ((R) * (P) * GF_NV))
#define GF_MAX_WIDE 4  /* most panels in one tile */
/* Panels per tile for R rows (R < GF_MR): for 4 rows or more, as many as
 * keep the accumulators and the loaded panel rows within the vector
 * registers, two spare (P * GF_NV * (R + 1) <= GF_VEC_REGS - 2), at most
 * GF_MAX_WIDE.  1 to 3 rows go one panel at a time: with several, they lost
 * when the panels came from L2 and gained little otherwise (bench/README.md). */
#define GF_WIDE_RAW(R) ((R) < 4 ? 1 : (GF_VEC_REGS - 2) / (GF_NV * ((R) + 1)))
#define GF_WIDE(R) (GF_WIDE_RAW(R) < 1 ? 1 : GF_WIDE_RAW(R) > GF_MAX_WIDE ? GF_MAX_WIDE : GF_WIDE_RAW(R))
static inline __attribute__((always_inline)) void
GF_NAME(tile)(const int R, const int P, int k, const GF_T* a, ptrdiff_t lda,
              const ptrdiff_t a_step, const GF_T* panel, ptrdiff_t panel_stride,
              int ncols_last, int accumulate, GF_T* c, ptrdiff_t ldc)
{
    /* Sets from R alone (those of the widest tile few_rows takes for R rows):
     * a column's sum then runs in the same order whichever tile holds it, so
     * a product split into runs of whole panels (the core's pieces, or one
     * run of all of them) gives the same bits. */
    const int U = GF_SETS(R, GF_WIDE(R));
    const int W = P * GF_NV;  /* vectors per row of the tile */
    GF_NAME(vec) acc[GF_SETS(1, 1)][GF_MR][GF_MAX_WIDE * GF_NV];
    GF_NAME(vec) b[GF_MAX_WIDE * GF_NV];
    int i, v, p, u, j, w, ncols;
    for (u = 0; u < U; u++)
        for (i = 0; i < R; i++)
            for (w = 0; w < W; w++)
                acc[u][i][w] = (GF_NAME(vec)){0};
    for (p = 0; p + U <= k; p += U) {
        for (u = 0; u < U; u++) {
            for (w = 0; w < W; w++) {
                b[w] = *(const GF_NAME(uvec)*)(panel + (w / GF_NV) * panel_stride
                                               + (ptrdiff_t)(p + u) * GF_PANEL
                                               + (w % GF_NV) * GF_LANES);
                if (R <= 4)
                    GF_IN_REGISTER(b[w]);
            }
            for (i = 0; i < R; i++) {
                GF_T a_ip = a[i * lda + (p + u) * a_step];
                for (w = 0; w < W; w++)
                    acc[u][i][w] += a_ip * b[w];
            }
        }
    }
    for (; p < k; p++) {
        for (w = 0; w < W; w++)
            b[w] = *(const GF_NAME(uvec)*)(panel + (w / GF_NV) * panel_stride
                                           + (ptrdiff_t)p * GF_PANEL + (w % GF_NV) * GF_LANES);
        for (i = 0; i < R; i++) {
            GF_T a_ip = a[i * lda + p * a_step];
            for (w = 0; w < W; w++)
                acc[0][i][w] += a_ip * b[w];
        }
    }
    for (u = 1; u < U; u++)
        for (i = 0; i < R; i++)
            for (w = 0; w < W; w++)
                acc[0][i][w] += acc[u][i][w];
    for (i = 0; i < R; i++) {
        for (w = 0; w < W; w += GF_NV) {
            GF_T* c_row = c + i * ldc + (w / GF_NV) * GF_PANEL;
            ncols = w + GF_NV < W ? GF_PANEL : ncols_last;
            if (ncols == GF_PANEL) {
                for (v = 0; v < GF_NV; v++) {
                    GF_NAME(uvec)* out = (GF_NAME(uvec)*)(c_row + v * GF_LANES);
                    *out = accumulate ? *out + acc[0][i][w + v] : acc[0][i][w + v];
                }
            } else {
                GF_T row[GF_PANEL];
                memcpy(row, &acc[0][i][w], sizeof(row));
                for (j = 0; j < ncols; j++)
                    c_row[j] = accumulate ? c_row[j] + row[j] : row[j];
            }
        }
    }
}


/* C (R, n) (+)= A (R, k) @ Bp for R < GF_MR rows, panel_stride apart: one
 * tile of GF_WIDE(R) panels at a time over all of k, the panels left over
 * one by one. */
static inline __attribute__((always_inline)) void
GF_NAME(few_rows)(const int R, int n, int k, const GF_T* a, ptrdiff_t lda,
                  const ptrdiff_t a_step, const GF_T* panels, ptrdiff_t panel_stride,
                  int accumulate, GF_T* c, ptrdiff_t ldc)
{
    const int P = GF_WIDE(R);
    int n_panels = (n + GF_PANEL - 1) / GF_PANEL;
    int q = 0;
#define GF_LAST_COLS(q, P) (n - ((q) + (P) - 1) * GF_PANEL < GF_PANEL ? n - ((q) + (P) - 1) * GF_PANEL : GF_PANEL)
    if (P > 1)
        for (; q + P <= n_panels; q += P)
            GF_NAME(tile)(R, P, k, a, lda, a_step, panels + q * panel_stride, panel_stride,
                          GF_LAST_COLS(q, P), accumulate, c + q * GF_PANEL, ldc);
    if (P > 2 && q + 2 <= n_panels) {  /* two of the panels left, together */
        GF_NAME(tile)(R, 2, k, a, lda, a_step, panels + q * panel_stride, panel_stride,
                      GF_LAST_COLS(q, 2), accumulate, c + q * GF_PANEL, ldc);
        q += 2;
    }
#undef GF_LAST_COLS
    for (; q < n_panels; q++)
        GF_NAME(tile)(R, 1, k, a, lda, a_step, panels + q * panel_stride, panel_stride,
                      n - q * GF_PANEL < GF_PANEL ? n - q * GF_PANEL : GF_PANEL,
                      accumulate, c + q * GF_PANEL, ldc);
}

#undef GF_SETS


/* few_rows for any m from 1 to GF_MR - 1, through a switch so that each
 * call has a constant row count. */
static inline __attribute__((always_inline)) void
GF_NAME(few_rows_any)(int m, int n, int k, const GF_T* a, ptrdiff_t lda,
                      const ptrdiff_t a_step, const GF_T* panels, ptrdiff_t panel_stride,
                      int accumulate, GF_T* c, ptrdiff_t ldc)
{
#define GF_FEW(R) GF_NAME(few_rows)(R, n, k, a, lda, a_step, panels, panel_stride, accumulate, c, ldc)
    switch (m) {
#if GF_MR > 7
    case 7: GF_FEW(7); break;
#endif
#if GF_MR > 6
    case 6: GF_FEW(6); break;
#endif
#if GF_MR > 5
    case 5: GF_FEW(5); break;
#endif
#if GF_MR > 4
    case 4: GF_FEW(4); break;
#endif
#if GF_MR > 3
    case 3: GF_FEW(3); break;
#endif
#if GF_MR > 2
    case 2: GF_FEW(2); break;
#endif
#if GF_MR > 1
    case 1: GF_FEW(1); break;
#endif
    default: break;
    }
#undef GF_FEW
}


/* All row tiles of one panel: C[:m, :ncols] (+)= A[:m, :k] @ P.  Full tiles
 * of GF_MR rows, then one tile of the remaining rows: every pass over the
 * panel costs about the same (its loads are the limit with few rows), so
 * the remainder takes one pass, not one per power of two.  With `tiles`
 * (A's full tiles packed by pack_row_tiles, offset to this block's first
 * row and k), the full tiles read their k x GF_MR blocks, tiles_k * GF_MR
 * values apart; the remainder always reads A. */
static inline __attribute__((always_inline)) void
GF_NAME(panel_rows)(int m, int k, const GF_T* a, ptrdiff_t lda, const ptrdiff_t a_step,
                    const GF_T* tiles, ptrdiff_t tiles_k,
                    const GF_T* panel, int ncols, int accumulate, GF_T* c, ptrdiff_t ldc)
{
    int i;
    if (tiles != NULL) {
        for (i = 0; i + GF_MR <= m; i += GF_MR)
            GF_NAME(tile)(GF_MR, 1, k, tiles + (ptrdiff_t)i * tiles_k, 1, GF_MR, panel, 0,
                          ncols, accumulate, c + i * ldc, ldc);
    } else {
        for (i = 0; i + GF_MR <= m; i += GF_MR)
            GF_NAME(tile)(GF_MR, 1, k, a + i * lda, lda, a_step, panel, 0, ncols, accumulate,
                          c + i * ldc, ldc);
    }
    a += i * lda;
    c += i * ldc;
    if (m > i)  /* fewer than GF_MR rows left: one tile over this one panel */
        GF_NAME(few_rows_any)(m - i, ncols, k, a, lda, a_step, panel, 0, accumulate, c, ldc);
}


/* Pack the full row tiles of one block of A (m rows, k values from a):
 * rows [t, t + GF_MR) become the k x GF_MR block at tiles + t * k,
 * tiles[t * k + p * GF_MR + i] = A[t + i, p] (A[i, p] at a[i * lda + p *
 * a_step]).  The rows past the last full tile are not copied: the product
 * reads them from A. */
static void GF_NAME(pack_block_tiles)(int m, int k, const GF_T* a, ptrdiff_t lda,
                                      ptrdiff_t a_step, GF_T* tiles)
{
    int t, i, p;
    for (t = 0; t + GF_MR <= m; t += GF_MR) {
        GF_T* block = tiles + (ptrdiff_t)t * k;
        const GF_T* rows = a + (ptrdiff_t)t * lda;
        for (p = 0; p < k; p++)
            for (i = 0; i < GF_MR; i++)
                block[(ptrdiff_t)p * GF_MR + i] = rows[i * lda + (ptrdiff_t)p * a_step];
    }
}


/* How packed_gemm blocks A (m, k): returns the rows per block (mb) and sets
 * *panels_inside.  When all of A fits in the L2 budget (gf_a_in_l2, half the
 * core's L2), the product goes panel by panel, each in blocks of k: a panel
 * is then read front to back, one sequential stream for the prefetcher (the
 * panels of a large W are far apart).  A larger A (the weight gradients,
 * k = all rows; a long chunk of the projection) goes in blocks of rows and
 * of k, each block of A (mb x GF_KB) within the budget, so that it stays in
 * L2 for every panel; mb is a multiple of GF_MR, so the row tiles, and with
 * them every column's order of summation, are those of the unblocked
 * product. */
static inline int GF_NAME(row_block)(int m, int k, int* panels_inside)
{
    size_t budget = gf_level2_budget();
    size_t rows, n_blocks;
    *panels_inside = (size_t)m * k * sizeof(GF_T) <= budget;
    if (*panels_inside)
        return m;
    /* Every block of rows reads all of B once more (from L3 or memory: the
     * projection's W_ih is 3 MiB at H = 512, 12 MiB at H = 1024), so the
     * blocks are balanced: 256 rows with room for 252 were one block of 252
     * and one of 4, which paid a whole pass over B for 4 rows.  The block
     * count allows the budget to be exceeded by a quarter (it is half the
     * L2, so a block still fits), then the rows are shared evenly, rounded
     * up to whole tiles. */
    rows = budget / ((size_t)(k < GF_KB ? k : GF_KB) * sizeof(GF_T));
    rows = rows < GF_MR ? GF_MR : rows;
    n_blocks = ((size_t)m + rows + rows / 4 - 1) / (rows + rows / 4);
    n_blocks = n_blocks < 1 ? 1 : n_blocks;
    rows = ((size_t)m + n_blocks - 1) / n_blocks;
    rows = (rows + GF_MR - 1) / GF_MR * GF_MR;
    return rows > (size_t)m ? m : (int)rows;
}


/* Values of the buffer packed_gemm_packing needs for A (m, k): all of A's
 * full tiles when A fits the L2 budget, else one block of them. */
static size_t GF_NAME(packing_values)(int m, int k)
{
    int panels_inside;
    int mb = GF_NAME(row_block)(m, k, &panels_inside);
    return (size_t)mb * (panels_inside || k < GF_KB ? k : GF_KB);
}


/* Pack all of A's full row tiles for packed_gemm_tiled, block by block of
 * packed_gemm's blocking of A (m, k) (row_block, and GF_KB values of k):
 * block (i0, p0) holds pack_block_tiles of rows [i0, i0 + mb) and k values
 * [p0, p0 + kb) at tiles + i0 * k + p0 * (its full rows), each block
 * contiguous.  A tile then reads one stream of consecutive values instead of
 * GF_MR rows far apart (those streams left the many-row products at ~80% of
 * OpenBLAS's rate; bench/README.md).  tiles holds m * k values. */
static void GF_NAME(pack_row_tiles)(int m, int k, const GF_T* a, ptrdiff_t lda,
                                    ptrdiff_t a_step, GF_T* tiles)
{
    int panels_inside, i0, p0, rows_here, kb;
    int mb = GF_NAME(row_block)(m, k, &panels_inside);
    for (i0 = 0; i0 < m; i0 += mb) {
        rows_here = m - i0 < mb ? m - i0 : mb;
        for (p0 = 0; p0 < k; p0 += GF_KB) {
            kb = k - p0 < GF_KB ? k - p0 : GF_KB;
            GF_NAME(pack_block_tiles)(rows_here, kb, a + (ptrdiff_t)i0 * lda + p0 * a_step, lda,
                                      a_step, tiles + (ptrdiff_t)i0 * k
                                      + (ptrdiff_t)p0 * (rows_here / GF_MR * GF_MR));
        }
    }
}


/* C (m, n) (+)= A (m, k) @ Bp.  A's full row tiles are read from A itself
 * (tiles and buffer NULL), from `tiles` (all of A packed by pack_row_tiles),
 * or packed here into `buffer` (packing_values) block by block of A, each
 * block once for all the panels. */
static inline __attribute__((always_inline)) void
GF_NAME(packed_gemm_any)(int m, int n, int k, const GF_T* a, ptrdiff_t lda, ptrdiff_t a_step,
                         const GF_T* tiles, GF_T* buffer, const GF_T* panels,
                         ptrdiff_t panel_stride, int accumulate, GF_T* c, ptrdiff_t ldc)
{
    int p0, q, kb, ncols, acc, i0, panels_inside;
    int mb = GF_NAME(row_block)(m, k, &panels_inside);
    int n_panels = (n + GF_PANEL - 1) / GF_PANEL;
    const GF_T* panel;
    const GF_T* block_tiles;  /* this block's tiles and the k between their rows */
    ptrdiff_t tiles_k;
    if (m < GF_MR && panels_inside) {  /* one row tile, over all of k at once */
        if (a_step != 1) {
            GF_NAME(few_rows_any)(m, n, k, a, lda, a_step, panels, panel_stride, accumulate, c, ldc);
        } else {
            GF_NAME(few_rows_any)(m, n, k, a, lda, 1, panels, panel_stride, accumulate, c, ldc);
        }
        return;
    }
    if (buffer != NULL && panels_inside) {  /* all of A at once, for every panel */
        GF_NAME(pack_row_tiles)(m, k, a, lda, a_step, buffer);
        tiles = buffer;
        buffer = NULL;
    }
    for (i0 = 0; i0 < m; i0 += mb) {
        int rows_here = m - i0 < mb ? m - i0 : mb;
        const GF_T* a_rows = a + (ptrdiff_t)i0 * lda;
        GF_T* c_rows = c + (ptrdiff_t)i0 * ldc;
        int q0, q_end, q_step = panels_inside ? 1 : n_panels;
        for (q0 = 0; q0 < n_panels; q0 += q_step) {
            q_end = q0 + q_step < n_panels ? q0 + q_step : n_panels;
            for (p0 = 0; p0 < k; p0 += GF_KB) {
                kb = k - p0 < GF_KB ? k - p0 : GF_KB;
                acc = accumulate || p0 > 0;
                block_tiles = NULL;
                tiles_k = 0;
                if (tiles != NULL) {  /* block (i0, p0) of pack_row_tiles */
                    block_tiles = tiles + (ptrdiff_t)i0 * k
                                  + (ptrdiff_t)p0 * (rows_here / GF_MR * GF_MR);
                    tiles_k = kb;
                } else if (buffer != NULL) {  /* (q0 takes one value: every panel) */
                    GF_NAME(pack_block_tiles)(rows_here, kb, a_rows + p0 * a_step, lda, a_step,
                                              buffer);
                    block_tiles = buffer;
                    tiles_k = kb;
                }
                for (q = q0; q < q_end; q++) {
                    ncols = n - q * GF_PANEL < GF_PANEL ? n - q * GF_PANEL : GF_PANEL;
                    panel = panels + q * panel_stride + (ptrdiff_t)p0 * GF_PANEL;
                    if (block_tiles != NULL)
                        GF_NAME(panel_rows)(rows_here, kb, a_rows + p0 * a_step, lda, a_step,
                                            block_tiles, tiles_k, panel, ncols, acc,
                                            c_rows + q * GF_PANEL, ldc);
                    else if (a_step == 1)  /* the common case, with unit steps known to the compiler */
                        GF_NAME(panel_rows)(rows_here, kb, a_rows + p0, lda, 1, NULL, 0, panel,
                                            ncols, acc, c_rows + q * GF_PANEL, ldc);
                    else
                        GF_NAME(panel_rows)(rows_here, kb, a_rows + p0 * a_step, lda, a_step,
                                            NULL, 0, panel, ncols, acc, c_rows + q * GF_PANEL, ldc);
                }
            }
        }
    }
}


/* C (m, n) (+)= A (m, k) @ Bp, where Bp is B (k, n) packed into panels of
 * GF_PANEL columns: column block q of B is the k x GF_PANEL array at panels + q *
 * panel_stride (rows GF_PANEL values apart, zero-padded past n).  C is row-major
 * with row stride ldc; A[i, p] is at a[i * lda + p * a_step] (a_step = 1 for
 * a row-major A, lda = 1 for the transpose of a row-major matrix).  k is split
 * into blocks of GF_KB so that the slice of a panel that every row tile reads
 * stays in L1 (row_block has how A is blocked).  Every row of A is read where
 * it is. */
static void GF_NAME(packed_gemm)(int m, int n, int k, const GF_T* a, ptrdiff_t lda,
                                 ptrdiff_t a_step, const GF_T* panels, ptrdiff_t panel_stride,
                                 int accumulate, GF_T* c, ptrdiff_t ldc)
{
    GF_NAME(packed_gemm_any)(m, n, k, a, lda, a_step, NULL, NULL, panels, panel_stride,
                             accumulate, c, ldc);
}


/* The same product with A's full row tiles read from `tiles` (pack_row_tiles
 * of this A); the rows past them from A.  The same tiles sum the same
 * values in the same order, so the result has packed_gemm's bits. */
static void GF_NAME(packed_gemm_tiled)(int m, int n, int k, const GF_T* a, ptrdiff_t lda,
                                       ptrdiff_t a_step, const GF_T* tiles, const GF_T* panels,
                                       ptrdiff_t panel_stride, int accumulate, GF_T* c,
                                       ptrdiff_t ldc)
{
    GF_NAME(packed_gemm_any)(m, n, k, a, lda, a_step, tiles, NULL, panels, panel_stride,
                             accumulate, c, ldc);
}


/* The same product with A's full row tiles packed into `buffer` (at least
 * packing_values(m, k) values), a block of A at a time: for an A read
 * across its rows (a_step > 1, the weight gradients' d_gates^T), whose
 * tiles otherwise load a new cache line at every k, far from the last.
 * Pays when n is wide enough to reuse each block (bench/README.md). */
static void GF_NAME(packed_gemm_packing)(int m, int n, int k, const GF_T* a, ptrdiff_t lda,
                                         ptrdiff_t a_step, GF_T* buffer, const GF_T* panels,
                                         ptrdiff_t panel_stride, int accumulate, GF_T* c,
                                         ptrdiff_t ldc)
{
    GF_NAME(packed_gemm_any)(m, n, k, a, lda, a_step, NULL, buffer, panels, panel_stride,
                             accumulate, c, ldc);
}


/* One butterfly stage of transpose_block: for every row r with (r & b) == 0,
 * swap the b-wide off-diagonal sub-blocks of rows r and r + b.  b is a
 * constant at every call, so after inlining the row loop unrolls, the rows
 * stay in registers and each swap is two two-source shuffles (vpermt2ps /
 * vpermt2pd on AVX-512) with constant index vectors. */
static inline __attribute__((always_inline)) void
GF_NAME(transpose_stage)(GF_NAME(vec)* rows, const int b)
{
    GF_NAME(vec) x, y;
    int r, lane;
#if defined(__GNUC__) && !defined(__clang__) && !defined(GF_NO_BUILTIN_SHUFFLE)
    GF_NAME(ivec) keep, swap;
    for (lane = 0; lane < GF_LANES; lane++) {
        keep[lane] = (lane & b) == 0 ? lane : GF_LANES + lane - b;
        swap[lane] = (lane & b) == 0 ? lane + b : GF_LANES + lane;
    }
#endif
#pragma GCC unroll 16
    for (r = 0; r < GF_LANES; r++) {
        if (r & b)
            continue;
        x = rows[r];
        y = rows[r + b];
#if defined(__GNUC__) && !defined(__clang__) && !defined(GF_NO_BUILTIN_SHUFFLE)
        rows[r] = __builtin_shuffle(x, y, keep);
        rows[r + b] = __builtin_shuffle(x, y, swap);
#else
        /* the same selection lane by lane (clang has no __builtin_shuffle) */
        for (lane = 0; lane < GF_LANES; lane++) {
            rows[r][lane] = (lane & b) == 0 ? x[lane] : y[lane - b];
            rows[r + b][lane] = (lane & b) == 0 ? x[lane + b] : y[lane];
        }
#endif
    }
}

/* rows[p] becomes column p of the GF_LANES x GF_LANES block held in rows:
 * log2(GF_LANES) butterfly stages, sub-blocks of GF_LANES / 2 down to 1. */
static inline __attribute__((always_inline)) void
GF_NAME(transpose_block)(GF_NAME(vec)* rows)
{
#if GF_LANES >= 16
    GF_NAME(transpose_stage)(rows, 8);
#endif
#if GF_LANES >= 8
    GF_NAME(transpose_stage)(rows, 4);
#endif
#if GF_LANES >= 4
    GF_NAME(transpose_stage)(rows, 2);
#endif
    GF_NAME(transpose_stage)(rows, 1);
}


/* Pack B = W.T, W (n, k) row-major with row stride ldw: panels[q][p][j] =
 * W[32q + j, p], zero for 32q + j >= n; panels are k * 32 values apart.
 * Whole GF_LANES x GF_LANES blocks are transposed in registers; the edges
 * (n or k not a multiple of GF_LANES) element by element. */
static void GF_NAME(pack_transposed)(const GF_T* w, ptrdiff_t ldw, int n, int k, GF_T* panels)
{
    GF_NAME(vec) block[GF_LANES];
    int q, j, j0, p, p0, cols;
    for (q = 0; q * GF_PANEL < n; q++) {
        GF_T* panel = panels + (ptrdiff_t)q * k * GF_PANEL;
        const GF_T* w_rows = w + (ptrdiff_t)q * GF_PANEL * ldw;
        cols = n - q * GF_PANEL < GF_PANEL ? n - q * GF_PANEL : GF_PANEL;
        for (p0 = 0; p0 + GF_LANES <= k; p0 += GF_LANES) {
            for (j0 = 0; j0 + GF_LANES <= cols; j0 += GF_LANES) {
                /* one moving pointer each way: 16 precomputed row addresses
                 * would not fit the registers left beside the block */
                const GF_T* source = w_rows + (ptrdiff_t)j0 * ldw + p0;
                GF_T* target = panel + (ptrdiff_t)p0 * GF_PANEL + j0;
                for (j = 0; j < GF_LANES; j++, source += ldw)
                    block[j] = *(const GF_NAME(uvec)*)source;
                GF_NAME(transpose_block)(block);
                for (p = 0; p < GF_LANES; p++, target += GF_PANEL)
                    *(GF_NAME(uvec)*)target = block[p];
            }
            for (j = j0; j < GF_PANEL; j++)
                for (p = p0; p < p0 + GF_LANES; p++)
                    panel[(ptrdiff_t)p * GF_PANEL + j] = j < cols ? w_rows[(ptrdiff_t)j * ldw + p] : 0;
        }
        for (j = 0; j < GF_PANEL; j++)
            for (p = p0; p < k; p++)
                panel[(ptrdiff_t)p * GF_PANEL + j] = j < cols ? w_rows[(ptrdiff_t)j * ldw + p] : 0;
    }
}


/* Pack B = W, W (k, n) row-major with row stride ldw: panels[q][p][j] =
 * W[p, 32q + j], zero for 32q + j >= n; panels are k * 32 values apart. */
static void GF_NAME(pack)(const GF_T* w, ptrdiff_t ldw, int n, int k, GF_T* panels)
{
    int q, j, p;
    for (q = 0; q * GF_PANEL < n; q++) {
        GF_T* panel = panels + (ptrdiff_t)q * k * GF_PANEL;
        for (p = 0; p < k; p++) {
            const GF_T* w_row = w + (ptrdiff_t)p * ldw + q * GF_PANEL;
            for (j = 0; j < GF_PANEL; j++)
                panel[(ptrdiff_t)p * GF_PANEL + j] = q * GF_PANEL + j < n ? w_row[j] : 0;
        }
    }
}

#undef GF_NV
#undef GF_WIDE
#undef GF_WIDE_RAW
#undef GF_MAX_WIDE
#undef GF_IN_REGISTER
