// Instructions nvcc's own code generation does not write but inline PTX in CUDA C does (and hand-written libraries
// use): slct, testp, copysign, the 16-bit abs and neg, mad.hi.sat.s32. Each thread takes element i of the inputs.

// slct: every data width with an s32 and an f32 selector, .ftz on the f32 one. out32 gets 6 words per element, out16 2
// and out64 4.
extern "C" __global__ void slct_forms(const int *a, const int *b, const long long *a64, const long long *b64,
                                      const int *ci, const float *cf, int *out32, short *out16, long long *out64, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }

    int d;
    float f;
    short h;
    long long l;
    double x;
    asm("slct.b32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a[i]), "r"(b[i]), "r"(ci[i]));
    out32[i * 6 + 0] = d;
    asm("slct.u32.f32 %0, %1, %2, %3;" : "=r"(d) : "r"(a[i]), "r"(b[i]), "f"(cf[i]));
    out32[i * 6 + 1] = d;
    asm("slct.ftz.s32.f32 %0, %1, %2, %3;" : "=r"(d) : "r"(a[i]), "r"(b[i]), "f"(cf[i]));
    out32[i * 6 + 2] = d;
    asm("slct.f32.s32 %0, %1, %2, %3;" : "=f"(f) : "f"(__int_as_float(a[i])), "f"(__int_as_float(b[i])), "r"(ci[i]));
    out32[i * 6 + 3] = __float_as_int(f);
    asm("slct.ftz.f32.f32 %0, %1, %2, %3;" : "=f"(f) : "f"(__int_as_float(a[i])), "f"(__int_as_float(b[i])), "f"(cf[i]));
    out32[i * 6 + 4] = __float_as_int(f);
    asm("slct.s32.s32 %0, %1, 7, %2;" : "=r"(d) : "r"(a[i]), "r"(ci[i]));
    out32[i * 6 + 5] = d;
    asm("slct.s16.s32 %0, %1, %2, %3;" : "=h"(h) : "h"((short)a[i]), "h"((short)b[i]), "r"(ci[i]));
    out16[i * 2 + 0] = h;
    asm("slct.ftz.b16.f32 %0, %1, %2, %3;" : "=h"(h) : "h"((short)a[i]), "h"((short)b[i]), "f"(cf[i]));
    out16[i * 2 + 1] = h;
    asm("slct.b64.s32 %0, %1, %2, %3;" : "=l"(l) : "l"(a64[i]), "l"(b64[i]), "r"(ci[i]));
    out64[i * 4 + 0] = l;
    asm("slct.u64.f32 %0, %1, %2, %3;" : "=l"(l) : "l"(a64[i]), "l"(b64[i]), "f"(cf[i]));
    out64[i * 4 + 1] = l;
    asm("slct.f64.s32 %0, %1, %2, %3;" : "=d"(x) : "d"(__longlong_as_double(a64[i])), "d"(__longlong_as_double(b64[i])), "r"(ci[i]));
    out64[i * 4 + 2] = __double_as_longlong(x);
    asm("slct.ftz.f64.f32 %0, %1, %2, %3;" : "=d"(x) : "d"(__longlong_as_double(a64[i])), "d"(__longlong_as_double(b64[i])), "f"(cf[i]));
    out64[i * 4 + 3] = __double_as_longlong(x);
}

#define TESTP(op, type, constraint, value, bit)                                                  \
    asm("{\n.reg .pred p;\ntestp." op "." type " p, %1;\nselp.u32 %0, 1, 0, p;\n}" : "=r"(d) : constraint(value)); \
    bits |= d << (bit);

// testp: the six properties of an f32 and of an f64, as bits 0-5 and 8-13 of out[i].
extern "C" __global__ void testp_forms(const float *f, const double *x, unsigned int *out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }

    unsigned int d, bits = 0;
    TESTP("finite", "f32", "f", f[i], 0)
    TESTP("infinite", "f32", "f", f[i], 1)
    TESTP("number", "f32", "f", f[i], 2)
    TESTP("notanumber", "f32", "f", f[i], 3)
    TESTP("normal", "f32", "f", f[i], 4)
    TESTP("subnormal", "f32", "f", f[i], 5)
    TESTP("finite", "f64", "d", x[i], 8)
    TESTP("infinite", "f64", "d", x[i], 9)
    TESTP("number", "f64", "d", x[i], 10)
    TESTP("notanumber", "f64", "d", x[i], 11)
    TESTP("normal", "f64", "d", x[i], 12)
    TESTP("subnormal", "f64", "d", x[i], 13)
    out[i] = bits;
}

// copysign.f32 and .f64 d, a, b: b's magnitude with a's sign.
extern "C" __global__ void copysign_forms(const float *a, const float *b, const double *x, const double *y, float *outf, double *outd, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }

    float f;
    double d;
    asm("copysign.f32 %0, %1, %2;" : "=f"(f) : "f"(a[i]), "f"(b[i]));
    outf[i] = f;
    asm("copysign.f64 %0, %1, %2;" : "=d"(d) : "d"(x[i]), "d"(y[i]));
    outd[i] = d;
}

// abs.s16 and neg.s16 (two halves of out per element), and mad.hi.sat.s32 of three ints.
extern "C" __global__ void int_forms(const short *s, const int *a, const int *b, const int *c, short *out16, int *out32, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }

    short h;
    int d;
    asm("abs.s16 %0, %1;" : "=h"(h) : "h"(s[i]));
    out16[i * 2 + 0] = h;
    asm("neg.s16 %0, %1;" : "=h"(h) : "h"(s[i]));
    out16[i * 2 + 1] = h;
    asm("mad.hi.sat.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a[i]), "r"(b[i]), "r"(c[i]));
    out32[i] = d;
}
