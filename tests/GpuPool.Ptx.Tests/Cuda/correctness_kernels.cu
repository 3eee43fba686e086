// The PTX engine's correctness suite: nvcc and clang compile these to PTX during the test run, the tests compare
// each kernel's output with the same computation done on the host.

extern "C" __global__ void ew_f32(const float *a, const float *x, const float *y, float *out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float av = a[i], xv = x[i], yv = y[i];
        out[i * 6 + 0] = av * xv + yv;
        out[i * 6 + 1] = fminf(xv, yv) + fmaxf(av, yv);
        out[i * 6 + 2] = fabsf(xv);
        out[i * 6 + 3] = rsqrtf(fabsf(av) + 1.0f);
        out[i * 6 + 4] = expf(xv * 0.25f);
        out[i * 6 + 5] = __fdividef(xv, fabsf(yv) + 1.0f);
    }
}

extern "C" __global__ void ew_f64(const double *a, const double *b, const double *c, double *out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i * 3 + 0] = fma(a[i], b[i], c[i]);
        out[i * 3 + 1] = sqrt(fabs(a[i]));
        out[i * 3 + 2] = a[i] / b[i];
    }
}

extern "C" __global__ void ew_int32(const int *a, const int *b, int *out, unsigned int *uout, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        int x = a[i], y = b[i];
        unsigned int ux = (unsigned int)x, uy = (unsigned int)y;
        out[i * 6 + 0] = x / y;
        out[i * 6 + 1] = x % y;
        out[i * 6 + 2] = x >> (y & 31);
        out[i * 6 + 3] = min(x, y) * 3 + max(x, y);
        out[i * 6 + 4] = __popc(ux) + 100 * __clz(x);
        out[i * 6 + 5] = (int)__brev(ux);
        uout[i * 5 + 0] = ux / uy;
        uout[i * 5 + 1] = ux % uy;
        uout[i * 5 + 2] = (ux >> (uy & 31)) ^ (ux << (uy & 7));
        uout[i * 5 + 3] = min(ux, uy);
        uout[i * 5 + 4] = max(ux, uy);
    }
}

extern "C" __global__ void ew_int64(const long long *a, const long long *b, long long *out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i * 4 + 0] = a[i] * b[i];
        out[i * 4 + 1] = a[i] / b[i];
        out[i * 4 + 2] = a[i] % b[i];
        out[i * 4 + 3] = (long long)((unsigned long long)a[i] / (unsigned long long)b[i]);
    }
}

extern "C" __global__ void ew_small(const signed char *c, const short *s, const unsigned char *uc, float *out, signed char *c2, short *s2, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i * 3 + 0] = (float)c[i];
        out[i * 3 + 1] = (float)s[i] * 0.5f;
        out[i * 3 + 2] = (float)uc[i];
        c2[i] = (signed char)(c[i] * 3 + 1);
        s2[i] = (short)(s[i] + c[i] * 1000);
    }
}

extern "C" __global__ void ew_convert(const float *f, int *out, unsigned int *uout, float *back, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = f[i];
        out[i * 4 + 0] = __float2int_rn(v);
        out[i * 4 + 1] = (int)v;
        out[i * 4 + 2] = __float2int_rd(v);
        out[i * 4 + 3] = __float2int_ru(v);
        uout[i * 2 + 0] = (unsigned int)v;
        uout[i * 2 + 1] = __float2uint_rn(v);
        back[i] = (float)out[i * 4 + 1] + (float)(unsigned int)i;
    }
}

#define TILE 16
extern "C" __global__ void matmul_tiled(const float *a, const float *b, float *c, int m, int k, int n)
{
    __shared__ float ta[TILE][TILE];
    __shared__ float tb[TILE][TILE];
    int row = blockIdx.y * TILE + threadIdx.y;
    int col = blockIdx.x * TILE + threadIdx.x;
    float sum = 0.0f;
    for (int t = 0; t < k; t += TILE) {
        ta[threadIdx.y][threadIdx.x] = row < m && t + threadIdx.x < k ? a[row * k + t + threadIdx.x] : 0.0f;
        tb[threadIdx.y][threadIdx.x] = col < n && t + threadIdx.y < k ? b[(t + threadIdx.y) * n + col] : 0.0f;
        __syncthreads();
        for (int j = 0; j < TILE; ++j) {
            sum += ta[threadIdx.y][j] * tb[j][threadIdx.x];
        }
        __syncthreads();
    }
    if (row < m && col < n) {
        c[row * n + col] = sum;
    }
}

extern "C" __global__ void block_scan(const int *in, int *out)
{
    __shared__ int buf[2][256];
    int t = threadIdx.x;
    int base = blockIdx.x * blockDim.x;
    int cur = 0;
    buf[0][t] = in[base + t];
    __syncthreads();
    for (int d = 1; d < blockDim.x; d <<= 1) {
        int v = buf[cur][t];
        if (t >= d) {
            v += buf[cur][t - d];
        }
        buf[1 - cur][t] = v;
        cur = 1 - cur;
        __syncthreads();
    }
    out[base + t] = buf[cur][t];
}

extern "C" __global__ void warp_scan(const int *in, int *out)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int lane = threadIdx.x & 31;
    int v = in[i];
    for (int d = 1; d < 32; d <<= 1) {
        int u = __shfl_up_sync(0xffffffff, v, d);
        if (lane >= d) {
            v += u;
        }
    }
    out[i] = v;
}

extern "C" __global__ void warp_vote(const int *in, int *out)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int v = in[i];
    int s = v;
    for (int d = 16; d > 0; d >>= 1) {
        s += __shfl_xor_sync(0xffffffff, s, d);
    }
    unsigned int ballot = __ballot_sync(0xffffffff, v > 0);
    out[i * 5 + 0] = s;
    out[i * 5 + 1] = (int)ballot;
    out[i * 5 + 2] = __popc(ballot);
    out[i * 5 + 3] = __any_sync(0xffffffff, v > 90);
    out[i * 5 + 4] = __all_sync(0xffffffff, v > -100);
}

extern "C" __global__ void bitonic_sort(int *data)
{
    __shared__ int s[1024];
    int t = threadIdx.x;
    s[t] = data[t];
    s[t + 512] = data[t + 512];
    __syncthreads();
    for (int size = 2; size <= 1024; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            int pos = 2 * t - (t & (stride - 1));
            int other = pos + stride;
            bool up = ((pos & size) == 0);
            int x = s[pos], y = s[other];
            if ((x > y) == up) {
                s[pos] = y;
                s[other] = x;
            }
            __syncthreads();
        }
    }
    data[t] = s[t];
    data[t + 512] = s[t + 512];
}

extern "C" __global__ void collatz(const unsigned int *start, int *steps, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    unsigned long long x = start[i];
    int count = 0;
    int odd = 0;
    while (true) {
        if (x == 1) {
            break;
        }
        ++count;
        if ((x & 1) == 0) {
            x >>= 1;
            continue;
        }
        ++odd;
        x = 3 * x + 1;
    }
    steps[i * 2] = count;
    steps[i * 2 + 1] = odd;
}

extern "C" __global__ void linear_id(unsigned int *out)
{
    unsigned int block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    unsigned int thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned int threads = blockDim.x * blockDim.y * blockDim.z;
    unsigned int id = block * threads + thread;
    out[id * 2] = id;
    out[id * 2 + 1] = (threadIdx.z << 24) | (threadIdx.y << 16) | (blockIdx.z << 8) | (blockIdx.y << 4) | blockIdx.x;
}

__device__ float atomic_max_float(float *address, float value)
{
    int *p = (int *)address;
    int old = *p, assumed;
    do {
        assumed = old;
        if (__int_as_float(assumed) >= value) {
            break;
        }
        old = atomicCAS(p, assumed, __float_as_int(value));
    } while (old != assumed);
    return __int_as_float(old);
}

extern "C" __global__ void atomics(const float *f, const int *v, int n, float *fmax, int *exch, int *imin, int *imax,
                                   unsigned int *inc, unsigned int *dec, unsigned long long *sum64)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        atomic_max_float(fmax, f[i]);
        atomicExch(exch, 7);
        atomicMin(imin, v[i]);
        atomicMax(imax, v[i]);
        atomicInc(inc, 9u);
        atomicDec(dec, 6u);
        atomicAdd(sum64, (unsigned long long)(unsigned int)v[i] << 20);
    }
}

extern "C" __global__ void atomic_add_f64(const double *v, double *sum, int n)
{
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 600
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        atomicAdd(sum, v[i]);
    }
#endif
}

__constant__ float weights[8] = {0.5f, -1.0f, 2.0f, 0.25f, 3.0f, -0.75f, 1.5f, 4.0f};

extern "C" __global__ void dynamic_shared(const float *in, float *out)
{
    extern __shared__ float s[];
    int t = threadIdx.x;
    int base = blockIdx.x * blockDim.x;
    s[t] = in[base + t] * weights[t & 7];
    __syncthreads();
    out[base + t] = s[blockDim.x - 1 - t] + weights[(t + 3) & 7];
}

extern "C" __global__ void ew_float_edges(const float *x, const float *y, float *out, int *flags, long long *wide, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float a = x[i], b = y[i];
        out[i * 7 + 0] = fminf(a, b);
        out[i * 7 + 1] = fmaxf(a, b);
        out[i * 7 + 2] = copysignf(a, b);
        out[i * 7 + 3] = truncf(a) + floorf(b);
        out[i * 7 + 4] = ceilf(a) - rintf(b);
        out[i * 7 + 5] = roundf(a);
        out[i * 7 + 6] = a * b + 1.0f;
        flags[i] = (a < b) | (!(a < b) << 1) | ((a != b) << 2) | ((a == b) << 3) | ((a >= b) << 4) | (isnan(a) << 5) | (isinf(b) << 6);
        wide[i * 3 + 0] = (long long)a;
        wide[i * 3 + 1] = (long long)(unsigned long long)b;
        wide[i * 3 + 2] = (long long)(double)a;
    }
}

extern "C" __global__ void int_edges(const unsigned int *x, const unsigned int *y, unsigned int *out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        unsigned int a = x[i], b = y[i] & 63, r;
        unsigned long long w;
        asm("shl.b32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
        out[i * 10 + 0] = r;
        asm("shr.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
        out[i * 10 + 1] = r;
        asm("shr.s32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
        out[i * 10 + 2] = r;
        asm("mul.hi.s32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(y[i]));
        out[i * 10 + 3] = r;
        asm("mul.hi.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(y[i]));
        out[i * 10 + 4] = r;
        asm("bfind.u32 %0, %1;" : "=r"(r) : "r"(a >> b % 32));
        out[i * 10 + 5] = r;
        asm("mul.wide.s32 %0, %1, %2;" : "=l"(w) : "r"(a), "r"(y[i]));
        out[i * 10 + 6] = (unsigned int)(w >> 32) ^ (unsigned int)w;
        asm("shl.b64 %0, %1, %2;" : "=l"(w) : "l"((unsigned long long)a * 0x100000001ull), "r"(b + 30));
        out[i * 10 + 7] = (unsigned int)(w >> 32) ^ (unsigned int)w;
        asm("sad.u32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(y[i]), "r"(b));
        out[i * 10 + 8] = r;
        asm("min.s32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(y[i]));
        out[i * 10 + 9] = r;
    }
}

extern "C" __global__ void narrow_and_24_bit(const unsigned int *x, const unsigned int *y, unsigned int *out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        unsigned int a = x[i], b = y[i], r;
        unsigned short ha = (unsigned short)a, hb = (unsigned short)b, h;
        asm("min.s16 %0, %1, %2;" : "=h"(h) : "h"(ha), "h"(hb));
        out[i * 10 + 0] = h;
        asm("max.u16 %0, %1, %2;" : "=h"(h) : "h"(ha), "h"(hb));
        out[i * 10 + 1] = h;
        asm("div.s16 %0, %1, %2;" : "=h"(h) : "h"(ha), "h"(hb));
        out[i * 10 + 2] = h;
        asm("rem.u16 %0, %1, %2;" : "=h"(h) : "h"(ha), "h"(hb));
        out[i * 10 + 3] = h;
        asm("mul.hi.s16 %0, %1, %2;" : "=h"(h) : "h"(ha), "h"(hb));
        out[i * 10 + 4] = h;
        asm("mad.hi.u16 %0, %1, %2, %1;" : "=h"(h) : "h"(ha), "h"(hb));
        out[i * 10 + 5] = h;
        asm("mul24.lo.s32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
        out[i * 10 + 6] = r;
        asm("mul24.hi.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
        out[i * 10 + 7] = r;
        asm("mad24.lo.u32 %0, %1, %2, %1;" : "=r"(r) : "r"(a), "r"(b));
        out[i * 10 + 8] = r;
        asm("sad.s32 %0, %1, %2, %1;" : "=r"(r) : "r"(a), "r"(b));
        out[i * 10 + 9] = r;
    }
}

extern "C" __global__ void warp_widths(const int *in, int *out)
{
    int t = threadIdx.x;
    int v = in[blockIdx.x * blockDim.x + t];
    int local[16];
    for (int k = 0; k < 16; ++k) {
        local[k] = v * k;
    }
    int *o = out + (blockIdx.x * blockDim.x + t) * 8;
    o[0] = __shfl_sync(0xffffffff, v, 3, 16);
    o[1] = __shfl_down_sync(0xffffffff, v, 2, 8);
    o[2] = __shfl_up_sync(0xffffffff, v, 1, 4);
    o[3] = __shfl_xor_sync(0xffffffff, v, 5, 16);
    o[4] = __syncthreads_count(v > 0);
    o[5] = __syncthreads_and(v > -90) + 2 * __syncthreads_or(v > 95);
    o[6] = local[(v & 0x7fffffff) % 16];
    o[7] = (int)__match_any_sync(0xffffffff, v & 3);
}

extern "C" __global__ void math_lib(const float *x, const double *d, float *out, double *dout, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = x[i];
        out[i * 6 + 0] = sinf(v);
        out[i * 6 + 1] = cosf(v);
        out[i * 6 + 2] = logf(fabsf(v) + 0.5f);
        out[i * 6 + 3] = powf(fabsf(v) + 0.1f, 1.7f);
        out[i * 6 + 4] = tanhf(v * 0.3f);
        out[i * 6 + 5] = erff(v * 0.2f);
        double w = d[i];
        dout[i * 5 + 0] = tanh(w * 0.05);
        dout[i * 5 + 1] = exp(w * 0.01);
        dout[i * 5 + 2] = log(fabs(w) + 0.25);
        dout[i * 5 + 3] = cbrt(w);
        dout[i * 5 + 4] = (double)__double2float_rn(w) + (double)__double2int_rz(w * 1e7) + (double)(long long)(w * 1e15);
    }
}

// sin of a double: nvcc and clang call libdevice's slow-path reduction, a .func the engine does not run yet.
extern "C" __global__ void sin_f64(const double *d, double *out)
{
    out[threadIdx.x] = sin(d[threadIdx.x]);
}

extern "C" __global__ void carry_chains(const unsigned int *x, unsigned int *out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        unsigned int a0 = x[i * 4], a1 = x[i * 4 + 1], b0 = x[i * 4 + 2], b1 = x[i * 4 + 3];
        unsigned int *o = out + i * 12;
        asm("add.cc.u32 %0, %3, %5;\n\taddc.cc.u32 %1, %4, %6;\n\taddc.u32 %2, 0, 0;" : "=r"(o[0]), "=r"(o[1]), "=r"(o[2]) : "r"(a0), "r"(a1), "r"(b0), "r"(b1));
        asm("sub.cc.u32 %0, %3, %5;\n\tsubc.cc.u32 %1, %4, %6;\n\tsubc.u32 %2, 0, 0;" : "=r"(o[3]), "=r"(o[4]), "=r"(o[5]) : "r"(a0), "r"(a1), "r"(b0), "r"(b1));
        asm("mad.lo.cc.u32 %0, %2, %3, %4;\n\tmadc.hi.u32 %1, %2, %3, %5;" : "=r"(o[6]), "=r"(o[7]) : "r"(a0), "r"(b0), "r"(b1), "r"(a1));
        unsigned long long lo, hi;
        unsigned long long a = ((unsigned long long)a1 << 32) | a0, b = ((unsigned long long)b1 << 32) | b0;
        asm("add.cc.u64 %0, %2, %3;\n\taddc.u64 %1, %3, %2;" : "=l"(lo), "=l"(hi) : "l"(a), "l"(b));
        o[8] = (unsigned int)lo;
        o[9] = (unsigned int)(lo >> 32);
        o[10] = (unsigned int)hi;
        o[11] = (unsigned int)(hi >> 32);
    }
}

struct Box {
    double scale;
    int offset;
    short tag;
    char flag;
};

// Shared-memory atomics (a CAS loop, float add, inc), 64-bit CAS/exchange/min, a struct passed by value, __reduce_add_sync.
extern "C" __global__ void shared_atomics(const int *v, Box box, unsigned long long *cas64, long long *min64, float *fsum, unsigned int *out, int *reduced)
{
    __shared__ int smax;
    __shared__ float ssum;
    __shared__ unsigned int sinc;
    int t = threadIdx.x;
    if (t == 0) {
        smax = -2147483647 - 1;
        ssum = 0.0f;
        sinc = 0;
    }
    __syncthreads();
    int x = v[blockIdx.x * blockDim.x + t];
    int old = smax, assumed;
    do {
        assumed = old;
        old = atomicCAS(&smax, assumed, max(assumed, x));
    } while (old != assumed);
    atomicAdd(&ssum, (float)(x & 255) * 0.5f);
    atomicInc(&sinc, 40u);
    unsigned long long expected = *cas64, seen;
    while ((seen = atomicCAS(cas64, expected, expected + (unsigned long long)box.offset)) != expected) {
        expected = seen;
    }
    atomicMin(min64, (long long)x * (long long)box.scale);
    atomicExch((unsigned long long *)&min64[1], 0x123456789abcdefull);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    int r = __reduce_add_sync(0xffffffff, x);
#else
    int r = x;
    for (int d = 16; d > 0; d >>= 1) {
        r += __shfl_xor_sync(0xffffffff, r, d);
    }
#endif
    reduced[blockIdx.x * blockDim.x + t] = r + box.tag + box.flag;
    __syncthreads();
    if (t == 0) {
        out[blockIdx.x * 3 + 0] = smax;
        out[blockIdx.x * 3 + 1] = sinc;
        atomicAdd(fsum, ssum);
        out[blockIdx.x * 3 + 2] = __float_as_uint(ssum);
    }
}

// Collectives of part of a warp, in divergent code: the mask names exactly the lanes that take the branch.
extern "C" __global__ void partial_masks(const int *in, int *out)
{
    int t = threadIdx.x;
    int lane = t & 31;
    int v = in[blockIdx.x * blockDim.x + t];
    int a = -1, b = -1, c = -1;
    unsigned int lt;
    asm("mov.u32 %0, %%lanemask_lt;" : "=r"(lt));
    if (lane < 16) {
        a = __shfl_sync(0x0000ffff, v, lane ^ 1);
        b = (int)__ballot_sync(0x0000ffff, v > 0);
        __syncwarp(0x0000ffff);
    } else if (v > -1000) {
        c = __shfl_down_sync(0xffff0000, v, 4, 16);
    }
    int *o = out + (blockIdx.x * blockDim.x + t) * 5;
    o[0] = a;
    o[1] = b;
    o[2] = c;
    o[3] = (int)lt;
    o[4] = __popc(__ballot_sync(0xffffffff, v > 0) & lt);
}

// Conversions with directed rounding: integers and doubles to float, doubles to integers.
extern "C" __global__ void directed_conversions(const long long *l, const double *d, float *out, long long *iout, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        long long v = l[i];
        double w = d[i];
        float *o = out + i * 8;
        o[0] = __int2float_rz((int)v);
        o[1] = __uint2float_rd((unsigned int)v);
        o[2] = __ll2float_ru(v);
        o[3] = __ull2float_rn((unsigned long long)v);
        o[4] = __double2float_rd(w);
        o[5] = __double2float_ru(w);
        o[6] = __double2float_rz(w);
        o[7] = (float)w;
        iout[i * 3 + 0] = __double2ll_rn(w * 1e12);
        iout[i * 3 + 1] = (long long)__double2uint_ru(w);
        iout[i * 3 + 2] = __double2ll_rd(w * 1e12);
    }
}
