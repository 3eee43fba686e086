// Whole-array reductions. Block 0 does all the work in GP_ARRAY_LANES fixed lanes (see gpupool_device.h), so
// the result has the same bits for every launch geometry; the other blocks return at once. A launch of one
// block of 256 to 1024 threads is the efficient shape.
#include "gpupool_device.h"

// out[0] = Σ x[i]; 0 for n = 0.
extern "C" __global__ void sum_f32(u64 n, const float* x, float* out)
{
    if (gp_block_rank() != 0)
    {
        return;
    }
    __shared__ float lanes[GP_ARRAY_LANES];
    GP_FOR_LANES(l, GP_ARRAY_LANES)
    {
        float s = 0.0f;
        for (u64 i = l; i < n; i += GP_ARRAY_LANES)
        {
            s += x[i];
        }
        lanes[l] = s;
    }
    gp_fold_lanes(lanes, GP_ARRAY_LANES, gp_add_op());
    if (gp_local_rank() == 0)
    {
        out[0] = lanes[0];
    }
}

// out[0] = max x[i], a NaN counting as the maximum. n = 0 has no maximum: the cpu backend fails the launch
// with InvalidArgument, and this kernel, which cannot raise, writes nothing.
extern "C" __global__ void max_f32(u64 n, const float* x, float* out)
{
    if (n == 0 || gp_block_rank() != 0)
    {
        return;
    }
    __shared__ float lanes[GP_ARRAY_LANES];
    GP_FOR_LANES(l, GP_ARRAY_LANES)
    {
        float m = -GP_INF;
        for (u64 i = l; i < n; i += GP_ARRAY_LANES)
        {
            m = gp_max(m, x[i]);
        }
        lanes[l] = m;
    }
    gp_fold_lanes(lanes, GP_ARRAY_LANES, gp_max_op());
    if (gp_local_rank() == 0)
    {
        out[0] = lanes[0];
    }
}

// out[0] = the number of positions where a and b hold the same value.
extern "C" __global__ void count_equal_i32(u64 n, const int* a, const int* b, int* out)
{
    if (gp_block_rank() != 0)
    {
        return;
    }
    __shared__ u64 lanes[GP_ARRAY_LANES];
    GP_FOR_LANES(l, GP_ARRAY_LANES)
    {
        u64 count = 0;
        for (u64 i = l; i < n; i += GP_ARRAY_LANES)
        {
            count += a[i] == b[i];
        }
        lanes[l] = count;
    }
    gp_fold_lanes(lanes, GP_ARRAY_LANES, gp_add_op());
    if (gp_local_rank() == 0)
    {
        out[0] = (int)lanes[0];
    }
}
