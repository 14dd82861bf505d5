/*
 * Activation functions of the gate loops, written so that GCC vectorizes them.
 *
 * A loop that calls libm's expf/tanhf per element stays scalar.  These
 * functions use only arithmetic, selects, and bit reinterpretation, which
 * GCC turns into SIMD instructions, so a whole gate loop over H becomes
 * vector code.  They are plain C (not Cython) because the float versions
 * must stay in single precision: Cython writes literals as doubles, which
 * promotes float arithmetic and stops the loops from vectorizing.
 *
 *   exp(a):  a = n ln2 + r with |r| <= ln2/2 (Cody-Waite two-part ln2);
 *            exp(r) by its Taylor polynomial (degree 7 float, 13 double);
 *            2^n assembled in the exponent bits.  n is read from the low
 *            mantissa bits of a*log2(e) + 1.5*2^p ("shifter" rounding), so
 *            no float-to-int conversion is needed.  a is clamped so that 2^n
 *            stays normal; NaN passes the clamps unchanged and propagates.
 *            Above exp's overflow threshold (ln of the largest float) the
 *            result is +inf, as libm's is: that is what makes sigmoid reach
 *            exactly 0 (below).
 *   sigmoid(a) = 1 / (1 + exp(-a)): exactly 1 at +inf and exactly 0 at -inf
 *            and below -88.72 (float) / -709.78 (double), where the true
 *            value is subnormal (the NumPy reference gives a subnormal down
 *            to -103.97 / -745.13, then 0).  So saturated gates are exactly 0
 *            or 1 and the state update z * h_prev + (1 - z) * n meets an
 *            infinite state with the same 0 * inf = NaN as the reference:
 *            non-finite inputs give non-finite outputs, never plausible ones.
 *   tanh(a): |a| < 0.625: Cephes' polynomial (float) / rational (double)
 *            approximation; otherwise (1 - e) / (1 + e), e = exp(-2|a|);
 *            the sign copied from a.
 *
 * Accuracy against NumPy over the whole float range is tested in
 * tests/test_activations.py (a few ulp).
 */
#ifndef GRU_FAST_ACTIVATIONS_H
#define GRU_FAST_ACTIVATIONS_H

#include <math.h>
#include <stdint.h>

typedef union { float value; uint32_t bits; } gf_float_bits;
typedef union { double value; uint64_t bits; } gf_double_bits;

static inline float gf_exp_float(float a)
{
    gf_float_bits shifted, scale;
    float n, r, p;
    int overflows = a >= 88.72283935546875f;                  /* > ln(FLT_MAX) */
    a = a > 88.0f ? 88.0f : a;
    a = a < -87.0f ? -87.0f : a;
    shifted.value = a * 1.44269504088896341f + 12582912.0f;   /* 1.5 * 2^23 */
    n = shifted.value - 12582912.0f;                          /* round(a / ln2) */
    r = a - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;                               /* r = a - n ln2 */
    p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    scale.bits = (shifted.bits + 127u) << 23;                 /* 2^n */
    return overflows ? INFINITY : p * scale.value;
}

static inline double gf_exp_double(double a)
{
    gf_double_bits shifted, scale;
    double n, r, p;
    int overflows = a > 709.782712893384;                     /* > ln(DBL_MAX) */
    a = a > 709.0 ? 709.0 : a;
    a = a < -708.0 ? -708.0 : a;
    shifted.value = a * 1.4426950408889634074 + 6755399441055744.0;  /* 1.5 * 2^52 */
    n = shifted.value - 6755399441055744.0;
    r = a - n * 6.93145751953125e-1;
    r = r - n * 1.42860682030941723212e-6;
    p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    scale.bits = (shifted.bits + 1023u) << 52;
    return overflows ? (double) INFINITY : p * scale.value;
}

static inline float gf_sigmoid_float(float a)
{
    return 1.0f / (1.0f + gf_exp_float(-a));
}

static inline double gf_sigmoid_double(double a)
{
    return 1.0 / (1.0 + gf_exp_double(-a));
}

static inline float gf_tanh_float(float a)
{
    float magnitude = fabsf(a);
    float z = magnitude * magnitude;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z
                    + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * magnitude + magnitude;
    float e = gf_exp_float(-2.0f * magnitude);
    float large = (1.0f - e) / (1.0f + e);
    return copysignf(magnitude < 0.625f ? small : large, a);
}

static inline double gf_tanh_double(double a)
{
    double magnitude = fabs(a);
    double z = magnitude * magnitude;
    double small = magnitude + magnitude * z
        * ((-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z
           - 1.61468768441708447952e3)
        / (((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z
           + 4.84406305325125486048e3);
    double e = gf_exp_double(-2.0 * magnitude);
    double large = (1.0 - e) / (1.0 + e);
    return copysign(magnitude < 0.625 ? small : large, a);
}

#endif
