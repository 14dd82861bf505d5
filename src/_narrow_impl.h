/* The narrow products for one dtype; included twice by _narrow.h.
 *
 * Before inclusion: GF_T (float or double) and GF_NAME(x) (appends the dtype
 * to a name).
 */

/* Gate columns [g0, g0 + width) of input i's column of dW_ih (below): the rows
 * summed in order.  Inlined with width GF_NARROW_CHUNK, the accumulators stay
 * in registers; the last, partial chunk passes its own width. */
static inline void GF_NAME(weight_gradient_chunk)(
        ptrdiff_t N, ptrdiff_t g0, int width, ptrdiff_t i,
        const GF_T *restrict d, ptrdiff_t ld_d, const GF_T *restrict x, ptrdiff_t ld_x,
        GF_T *restrict out, ptrdiff_t ld_out)
{
    GF_T acc[GF_NARROW_CHUNK] = {0};
    for (ptrdiff_t n = 0; n < N; n++) {
        const GF_T *restrict row = d + n * ld_d + g0;
        GF_T xv = x[n * ld_x + i];
        for (int c = 0; c < width; c++)
            acc[c] += row[c] * xv;
    }
    for (int c = 0; c < width; c++)
        out[(g0 + c) * ld_out + i] = acc[c];
}

/* out[g, i] (G, n_in; rows ld_out apart) = Σ_n d[n, g] x[n, i] over n in [0, N):
 * dW_ih's columns of a few inputs, d = d_gi (N, G = 3H), a chunk of gate
 * columns at a time. */
static void GF_NAME(narrow_weight_gradient)(
        ptrdiff_t N, ptrdiff_t G, ptrdiff_t n_in,
        const GF_T *restrict d, ptrdiff_t ld_d, const GF_T *restrict x, ptrdiff_t ld_x,
        GF_T *restrict out, ptrdiff_t ld_out)
{
    for (ptrdiff_t i = 0; i < n_in; i++) {
        ptrdiff_t g0 = 0;
        for (; g0 + GF_NARROW_CHUNK <= G; g0 += GF_NARROW_CHUNK)
            GF_NAME(weight_gradient_chunk)(N, g0, GF_NARROW_CHUNK, i, d, ld_d, x, ld_x,
                                           out, ld_out);
        if (g0 < G)
            GF_NAME(weight_gradient_chunk)(N, g0, (int)(G - g0), i, d, ld_d, x, ld_x,
                                           out, ld_out);
    }
}

/* out[n, i] (N, n_in; rows ld_out apart) = Σ_g d[n, g] w[i, g] over g in [0, G):
 * dx's columns of a few inputs, w = those columns of W_ih, transposed to rows
 * (n_in, G).  Each sum: GF_NARROW_CHUNK partial sums over the chunks, the
 * rest of the columns onto them, then the partial sums added in order. */
static void GF_NAME(narrow_input_gradient)(
        ptrdiff_t N, ptrdiff_t G, ptrdiff_t n_in,
        const GF_T *restrict d, ptrdiff_t ld_d, const GF_T *restrict w,
        GF_T *restrict out, ptrdiff_t ld_out)
{
    for (ptrdiff_t n = 0; n < N; n++) {
        const GF_T *restrict row = d + n * ld_d;
        for (ptrdiff_t i = 0; i < n_in; i++) {
            const GF_T *restrict w_row = w + i * G;
            GF_T acc[GF_NARROW_CHUNK] = {0}, sum = 0;
            ptrdiff_t g0 = 0;
            for (; g0 + GF_NARROW_CHUNK <= G; g0 += GF_NARROW_CHUNK)
                for (int c = 0; c < GF_NARROW_CHUNK; c++)
                    acc[c] += row[g0 + c] * w_row[g0 + c];
            for (int c = 0; g0 + c < G; c++)
                acc[c] += row[g0 + c] * w_row[g0 + c];
            for (int c = 0; c < GF_NARROW_CHUNK; c++)
                sum += acc[c];
            out[n * ld_out + i] = sum;
        }
    }
}

/* w[i, g] = W[g, i]: n_in columns of W (G rows, ld_w apart) as rows of w (n_in, G). */
static void GF_NAME(columns_to_rows)(ptrdiff_t G, ptrdiff_t n_in, const GF_T *restrict W,
                                     ptrdiff_t ld_w, GF_T *restrict w)
{
    for (ptrdiff_t i = 0; i < n_in; i++)
        for (ptrdiff_t g = 0; g < G; g++)
            w[i * G + g] = W[g * ld_w + i];
}
