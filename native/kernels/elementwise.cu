// Elementwise kernels: one grid-stride pass over n elements, each element read and written by one thread.
// Outputs may be the inputs themselves (y == x, c == a, …), as on the cpu backend.
#include "gpupool_device.h"

// Does nothing: the cost of a launch itself.
extern "C" __global__ void noop()
{
}

extern "C" __global__ void fill_f32(u64 n, float value, float* y)
{
    GP_GRID_STRIDE(i, n)
    {
        y[i] = value;
    }
}

extern "C" __global__ void copy_f32(u64 n, const float* x, float* y)
{
    GP_GRID_STRIDE(i, n)
    {
        y[i] = x[i];
    }
}

// y += alpha·x
extern "C" __global__ void axpy_f32(u64 n, float alpha, const float* x, float* y)
{
    GP_GRID_STRIDE(i, n)
    {
        y[i] = y[i] + alpha * x[i];
    }
}

// x *= alpha
extern "C" __global__ void scale_f32(u64 n, float alpha, float* x)
{
    GP_GRID_STRIDE(i, n)
    {
        x[i] = alpha * x[i];
    }
}

extern "C" __global__ void add_f32(u64 n, const float* a, const float* b, float* c)
{
    GP_GRID_STRIDE(i, n)
    {
        c[i] = a[i] + b[i];
    }
}

extern "C" __global__ void sub_f32(u64 n, const float* a, const float* b, float* c)
{
    GP_GRID_STRIDE(i, n)
    {
        c[i] = a[i] - b[i];
    }
}

extern "C" __global__ void mul_f32(u64 n, const float* a, const float* b, float* c)
{
    GP_GRID_STRIDE(i, n)
    {
        c[i] = a[i] * b[i];
    }
}

// y = x > 0 ? x : 0, so NaN gives 0. The compiler lowers this to max.f32, which may keep the sign of -0.
extern "C" __global__ void relu_f32(u64 n, const float* x, float* y)
{
    GP_GRID_STRIDE(i, n)
    {
        float v = x[i];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

// dx = x > 0 ? dy : 0
extern "C" __global__ void relu_backward_f32(u64 n, const float* x, const float* dy, float* dx)
{
    GP_GRID_STRIDE(i, n)
    {
        dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
    }
}
