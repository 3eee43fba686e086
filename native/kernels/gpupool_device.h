// Device-side helpers shared by the built-in kernels: launch-shape-free indexing, the fixed-lane block
// reductions that make results independent of the launch geometry, and the float math the kernels need
// (written here because the module links no libdevice).
#ifndef GPUPOOL_DEVICE_H
#define GPUPOOL_DEVICE_H

#include "gpupool_cuda.h"

typedef unsigned long long u64;

// ------------------------------------------------------------------ launch geometry, flattened
//
// Every kernel sees the launch as one line of blocks of one line of threads (x fastest, then y, then z),
// so a grid-stride loop visits each index exactly once whatever the grid and block shapes are.

GP_DEVICE u64 gp_block_rank() { return blockIdx.x + (u64)gridDim.x * (blockIdx.y + (u64)gridDim.y * blockIdx.z); }
GP_DEVICE u64 gp_block_count() { return (u64)gridDim.x * gridDim.y * gridDim.z; }
GP_DEVICE unsigned gp_local_rank() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
GP_DEVICE unsigned gp_block_size() { return blockDim.x * blockDim.y * blockDim.z; }
GP_DEVICE u64 gp_thread_rank() { return gp_block_rank() * gp_block_size() + gp_local_rank(); }
GP_DEVICE u64 gp_thread_count() { return gp_block_count() * gp_block_size(); }

// for (i = this thread's first index; i < n; i += all threads of the launch)
#define GP_GRID_STRIDE(i, n) for (u64 i = gp_thread_rank(), i##_step = gp_thread_count(); i < (u64)(n); i += i##_step)

// A grid-stride walk over the cells of a rows × cols row-major matrix that keeps (row, col) up to date by
// addition, so the loop pays two 64-bit divisions per thread rather than per element.
struct gp_cells
{
    u64 index, end, step, row, col, cols, row_step, col_step;

    GP_DEVICE gp_cells(u64 rows, u64 columns)
        : index(gp_thread_rank()), end(rows * columns), step(gp_thread_count()), row(0), col(0), cols(columns), row_step(0), col_step(0)
    {
        if (index < end)
        {
            row = index / cols;
            col = index % cols;
            row_step = step / cols;
            col_step = step % cols;
        }
    }

    GP_DEVICE bool more() const { return index < end; }

    GP_DEVICE void next()
    {
        index += step;
        row += row_step;
        col += col_step;
        if (col >= cols)
        {
            col -= cols;
            ++row;
        }
    }
};

// ------------------------------------------------------------------ fixed-lane block reductions
//
// A reduction is split into a fixed number of lanes: lane l combines elements l, l + LANES, l + 2·LANES, …
// in index order, then the lanes are folded pairwise in a fixed tree. Threads merely take turns at lanes, so
// the order of every floating-point operation, and therefore every bit of the result, is the same for any
// block size. Work that combines across a whole array is done by one block for the same reason.

#define GP_ARRAY_LANES 1024u // whole-array reductions (sum_f32, max_f32, count_equal_i32)
#define GP_ROW_LANES 256u    // per-row reductions (softmax, cross-entropy, argmax)

#define GP_FOR_LANES(l, lanes) for (unsigned l = gp_local_rank(); l < (lanes); l += gp_block_size())

// Folds lanes[0..count) into lanes[0]; count is a power of two. Starts and ends with a barrier, so the
// caller's lane writes are visible before and lanes[0] is readable by every thread after.
template <typename T, typename Combine>
GP_DEVICE void gp_fold_lanes(T* lanes, unsigned count, Combine combine)
{
    for (unsigned half = count / 2; half > 0; half /= 2)
    {
        __syncthreads();
        GP_FOR_LANES(l, half)
        {
            lanes[l] = combine(lanes[l], lanes[l + half]);
        }
    }
    __syncthreads();
}

struct gp_add_op
{
    template <typename T>
    GP_DEVICE T operator()(T a, T b) const { return a + b; }
};

// The maximum as the cpu backend takes it (MathF.Max): a NaN wins, and +0 is larger than -0.
GP_DEVICE float gp_max(float a, float b)
{
    if (a != a)
    {
        return a;
    }
    if (b != b)
    {
        return b;
    }
    if (a == b)
    {
        return (gp_float_bits(a) & 0x80000000u) != 0 ? b : a;
    }
    return a > b ? a : b;
}

struct gp_max_op
{
    GP_DEVICE float operator()(float a, float b) const { return gp_max(a, b); }
};

// True when every one of idx[0..count) lies in [0, limit). Every thread of the block takes part and gets the
// same answer, so a kernel can return on it without splitting the block at a later barrier.
GP_DEVICE bool gp_indices_in_range(const int* idx, u64 count, int limit)
{
    int bad = 0;
    for (u64 i = gp_local_rank(); i < count; i += gp_block_size())
    {
        int v = idx[i];
        bad |= v < 0 || v >= limit;
    }
    return gp_syncthreads_or(bad) == 0;
}

// ------------------------------------------------------------------ float math

#define GP_INF (gp_bits_float(0x7f800000u))
#define GP_NAN (gp_bits_float(0x7fc00000u))

// ln 2 split so that e·GP_LN2_HI is exact for |e| < 2^9: the high part has 15 significant bits.
#define GP_LN2_HI 0.693145751953125f
#define GP_LN2_LO 1.42860682030941723212e-6f

// 2^e for e in [-126, 127], built from its bits.
GP_DEVICE float gp_pow2(int e) { return gp_bits_float((unsigned)(e + 127) << 23); }

// e^x within about 2 ulp. x = k·ln2 + r with |r| <= ln2/2 (Cody–Waite reduction with the split ln 2),
// e^r from its degree-7 Taylor polynomial (truncation error below 1e-8 relative on that interval), then
// scaled by 2^k in two exact-or-once-rounded steps so that overflow and subnormal results come out right.
GP_DEVICE float gp_exp(float x)
{
    if (x != x)
    {
        return x;
    }
    if (x > 89.0f)
    {
        return GP_INF;
    }
    if (x < -104.0f)
    {
        return 0.0f;
    }
    float k = gp_rint(x * 1.44269504088896341f);
    float r = gp_fma(-k, GP_LN2_HI, x);
    r = gp_fma(-k, GP_LN2_LO, r);
    float p = 1.0f / 5040.0f;
    p = gp_fma(p, r, 1.0f / 720.0f);
    p = gp_fma(p, r, 1.0f / 120.0f);
    p = gp_fma(p, r, 1.0f / 24.0f);
    p = gp_fma(p, r, 1.0f / 6.0f);
    p = gp_fma(p, r, 0.5f);
    p = gp_fma(p, r, 1.0f);
    p = gp_fma(p, r, 1.0f);
    int ki = (int)k; // in [-150, 128]
    int k1 = ki / 2;
    return (p * gp_pow2(k1)) * gp_pow2(ki - k1);
}

// ln x within about 2 ulp. x = 2^e·m with m in [√½, √2], and ln m = 2·atanh(s) with s = (m-1)/(m+1),
// |s| <= 0.172, from its odd series to s^9 (truncation below 3e-9 relative).
GP_DEVICE float gp_log(float x)
{
    if (x != x)
    {
        return x;
    }
    if (x < 0.0f)
    {
        return GP_NAN;
    }
    if (x == 0.0f)
    {
        return -GP_INF;
    }
    if (x == GP_INF)
    {
        return x;
    }
    int e = 0;
    unsigned u = gp_float_bits(x);
    if (u < 0x00800000u)
    {
        u = gp_float_bits(x * 8388608.0f); // subnormal: scale by 2^23 first
        e = -23;
    }
    e += (int)(u >> 23) - 127;
    float m = gp_bits_float((u & 0x007fffffu) | 0x3f800000u);
    if (m > 1.41421356f)
    {
        m *= 0.5f;
        ++e;
    }
    float f = m - 1.0f; // exact (Sterbenz)
    float s = f / (2.0f + f);
    float s2 = s * s;
    float q = 2.0f / 9.0f;
    q = gp_fma(q, s2, 2.0f / 7.0f);
    q = gp_fma(q, s2, 2.0f / 5.0f);
    q = gp_fma(q, s2, 2.0f / 3.0f);
    float log_m = gp_fma(s * s2, q, 2.0f * s);
    float ef = (float)e;
    return gp_fma(ef, GP_LN2_HI, gp_fma(ef, GP_LN2_LO, log_m));
}

// base^n for n >= 0 by repeated squaring, in double (the Adam bias corrections).
GP_DEVICE double gp_powi(double base, int n)
{
    double result = 1.0;
    while (n > 0)
    {
        if ((n & 1) != 0)
        {
            result *= base;
        }
        base *= base;
        n >>= 1;
    }
    return result;
}

#endif
