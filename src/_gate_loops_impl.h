/* The gate loops for one dtype; included twice by _gate_loops.h.
 *
 * Before inclusion: GF_T (float or double) and GF_NAME(x) (appends the dtype
 * to a name).  Row arguments point at the row's start (unit 0); units
 * [lo, hi) are computed.  H is the hidden size: a gate block is H apart.
 */

/* Forward, reset_after=True, one row of units [lo, hi):
 *   r = σ(g_r + rec_r + b_r),  z = σ(g_z + rec_z + b_z)
 *   hn = rec_n + b_hn,  n = tanh(g_n + b_n + r ∘ hn),  h' = n + z ∘ (h − n)
 * into gt = [r, z, n, hn] (the cache row), hprev = h, h_new = h' and, unless
 * NULL, y = h'.  The sigmoids in a loop of their own: one loop with the
 * sigmoids and then the tanh that needs them was a chain too long for the CPU
 * to overlap (B = 1, H = 64: 480 -> 445 ns per step). */
static inline void GF_NAME(forward_gates_reset_after)(
        ptrdiff_t H, ptrdiff_t lo, ptrdiff_t hi,
        const GF_T *restrict g, const GF_T *restrict rec, const GF_T *restrict bias_gates,
        const GF_T *restrict bias_hn, const GF_T *restrict h, GF_T *restrict gt,
        GF_T *restrict hprev, GF_T *restrict h_new, GF_T *restrict y)
{
    for (ptrdiff_t j = lo; j < hi; j++) {
        gt[j] = GF_NAME(sigmoid)(g[j] + rec[j] + bias_gates[j]);
        gt[H + j] = GF_NAME(sigmoid)(g[H + j] + rec[H + j] + bias_gates[H + j]);
    }
#define GF_CANDIDATE_AND_STATE                                                         \
        GF_T hp = h[j], r = gt[j], z = gt[H + j];                                      \
        GF_T hn = rec[2 * H + j] + bias_hn[j];                                         \
        GF_T cand = GF_NAME(tanh)(g[2 * H + j] + bias_gates[2 * H + j] + r * hn);      \
        GF_T out = cand + z * (hp - cand);                                             \
        gt[2 * H + j] = cand;                                                          \
        gt[3 * H + j] = hn;                                                            \
        hprev[j] = hp;                                                                 \
        h_new[j] = out;
    if (y != NULL) {
        for (ptrdiff_t j = lo; j < hi; j++) {
            GF_CANDIDATE_AND_STATE
            y[j] = out;
        }
    } else {
        for (ptrdiff_t j = lo; j < hi; j++) {
            GF_CANDIDATE_AND_STATE
        }
    }
#undef GF_CANDIDATE_AND_STATE
}

/* Forward, classic variant (reset_after=False), first phase, one row:
 *   r = σ(g_r + rec_r + b_r),  z = σ(g_z + rec_z + b_z),  q = r ∘ h
 * into gt = [r, z, ., q] and hprev = h (the candidate needs q of every unit:
 * forward_candidate_classic, in the next phase). */
static inline void GF_NAME(forward_gates_classic)(
        ptrdiff_t H, ptrdiff_t lo, ptrdiff_t hi,
        const GF_T *restrict g, const GF_T *restrict rec, const GF_T *restrict bias_gates,
        const GF_T *restrict h, GF_T *restrict gt, GF_T *restrict hprev)
{
    for (ptrdiff_t j = lo; j < hi; j++) {
        GF_T hp = h[j];
        GF_T r = GF_NAME(sigmoid)(g[j] + rec[j] + bias_gates[j]);
        GF_T z = GF_NAME(sigmoid)(g[H + j] + rec[H + j] + bias_gates[H + j]);
        gt[j] = r;
        gt[H + j] = z;
        gt[3 * H + j] = r * hp;
        hprev[j] = hp;
    }
}

/* Forward, classic variant, second phase, one row (rec_n = q W_hn^T):
 *   n = tanh(g_n + b_n + rec_n),  h' = n + z ∘ (h − n)
 * into gt's n block, h_new = h' and, unless NULL, y = h'. */
static inline void GF_NAME(forward_candidate_classic)(
        ptrdiff_t H, ptrdiff_t lo, ptrdiff_t hi,
        const GF_T *restrict g, const GF_T *restrict rec, const GF_T *restrict bias_gates,
        const GF_T *restrict h, GF_T *restrict gt, GF_T *restrict h_new, GF_T *restrict y)
{
#define GF_CANDIDATE                                                                   \
        GF_T hp = h[j], z = gt[H + j];                                                 \
        GF_T cand = GF_NAME(tanh)(g[2 * H + j] + bias_gates[2 * H + j] + rec[2 * H + j]); \
        GF_T out = cand + z * (hp - cand);                                             \
        gt[2 * H + j] = cand;                                                          \
        h_new[j] = out;
    if (y != NULL) {
        for (ptrdiff_t j = lo; j < hi; j++) {
            GF_CANDIDATE
            y[j] = out;
        }
    } else {
        for (ptrdiff_t j = lo; j < hi; j++) {
            GF_CANDIDATE
        }
    }
#undef GF_CANDIDATE
}

/* Backward, reset_after=True, one row, from d = dL/dh' (in dh, dy already
 * added) and the cache row gt = [r, z, n, hn]:
 *   dn = d ∘ (1 − z) ∘ (1 − n²),  dz = d ∘ (h − n) ∘ z (1 − z),  dr = dn ∘ hn ∘ r (1 − r)
 *   d_gi = [dr, dz, dn],  d_gh = [dr, dz, dn ∘ r],  dh = d ∘ z (the direct path;
 *   the product d_gh W_hh is added in the next phase). */
static inline void GF_NAME(backward_gates_reset_after)(
        ptrdiff_t H, ptrdiff_t lo, ptrdiff_t hi,
        const GF_T *restrict gt, const GF_T *restrict hprev, GF_T *restrict dh,
        GF_T *restrict d_gi, GF_T *restrict d_gh)
{
    const GF_T one = 1;
    for (ptrdiff_t j = lo; j < hi; j++) {
        GF_T r = gt[j], z = gt[H + j], cand = gt[2 * H + j], hn = gt[3 * H + j];
        GF_T d_h = dh[j];
        GF_T d_an = d_h * (one - z) * (one - cand * cand);  /* dL/d(pre-tanh of n) */
        GF_T d_az = d_h * (hprev[j] - cand) * z * (one - z);
        GF_T d_ar = d_an * hn * r * (one - r);              /* n = tanh(... + r ∘ hn) */
        d_gi[j] = d_ar;
        d_gi[H + j] = d_az;
        d_gi[2 * H + j] = d_an;
        d_gh[j] = d_ar;
        d_gh[H + j] = d_az;
        d_gh[2 * H + j] = d_an * r;
        dh[j] = d_h * z;
    }
}

/* Backward, classic variant, first phase, one row (cache row gt = [r, z, n, q]):
 *   dz = d ∘ (h − n) ∘ z (1 − z),  dn = d ∘ (1 − z) ∘ (1 − n²),  dh = d ∘ z
 * (dr needs dq = dn W_hn of every unit: backward_reset_classic, next phase). */
static inline void GF_NAME(backward_gates_classic)(
        ptrdiff_t H, ptrdiff_t lo, ptrdiff_t hi,
        const GF_T *restrict gt, const GF_T *restrict hprev, GF_T *restrict dh,
        GF_T *restrict d_gi)
{
    const GF_T one = 1;
    for (ptrdiff_t j = lo; j < hi; j++) {
        GF_T z = gt[H + j], cand = gt[2 * H + j];
        GF_T d_h = dh[j];
        GF_T d_az = d_h * (hprev[j] - cand) * z * (one - z);
        GF_T d_an = d_h * (one - z) * (one - cand * cand);
        d_gi[H + j] = d_az;
        d_gi[2 * H + j] = d_an;
        dh[j] = d_h * z;
    }
}

/* Backward, classic variant, second phase, one row, from dq = dn W_hn:
 *   dr = dq ∘ h ∘ r (1 − r),  dh += dq ∘ r  (q = r ∘ h). */
static inline void GF_NAME(backward_reset_classic)(
        ptrdiff_t lo, ptrdiff_t hi,
        const GF_T *restrict gt, const GF_T *restrict hprev, const GF_T *restrict dq,
        GF_T *restrict dh, GF_T *restrict d_gi)
{
    const GF_T one = 1;
    for (ptrdiff_t j = lo; j < hi; j++) {
        GF_T r = gt[j];
        GF_T d_ar = dq[j] * hprev[j] * r * (one - r);
        d_gi[j] = d_ar;
        dh[j] += dq[j] * r;
    }
}
