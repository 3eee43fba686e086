// Kernels whose PTX exercises the syntax reader: shared memory, atomics, warp shuffles, printf, a recursive
// __device__ function called through the ABI, a constant table, templates, half precision and loops.
#include <cstdio>
#include <cuda_fp16.h>

#define TILE 16

__constant__ float coefficients[8] = {1.0f, 0.5f, 0.25f, 0.125f, -1.0f, 3.5f, 1e-3f, 2.0f};
__device__ int hits[4] = {0, 0, 0, 0};
__device__ unsigned long long total;

extern "C" __global__ void sgemm_tiled(const float* a, const float* b, float* c, int n)
{
    __shared__ float as[TILE][TILE];
    __shared__ float bs[TILE][TILE];
    int row = blockIdx.y * TILE + threadIdx.y;
    int col = blockIdx.x * TILE + threadIdx.x;
    float sum = 0.0f;
    for (int t = 0; t < (n + TILE - 1) / TILE; ++t)
    {
        int ac = t * TILE + threadIdx.x;
        int br = t * TILE + threadIdx.y;
        as[threadIdx.y][threadIdx.x] = (row < n && ac < n) ? a[row * n + ac] : 0.0f;
        bs[threadIdx.y][threadIdx.x] = (br < n && col < n) ? b[br * n + col] : 0.0f;
        __syncthreads();
#pragma unroll
        for (int k = 0; k < TILE; ++k)
        {
            sum += as[threadIdx.y][k] * bs[k][threadIdx.x];
        }
        __syncthreads();
    }
    if (row < n && col < n)
    {
        c[row * n + col] = sum;
    }
}

extern "C" __global__ void reduce_sum(const float* in, float* out, int n)
{
    extern __shared__ float partial[];
    unsigned tid = threadIdx.x;
    float v = 0.0f;
    for (int i = blockIdx.x * blockDim.x + tid; i < n; i += blockDim.x * gridDim.x)
    {
        v += in[i];
    }
    for (int offset = 16; offset > 0; offset /= 2)
    {
        v += __shfl_down_sync(0xffffffffu, v, offset);
    }
    if ((tid & 31) == 0)
    {
        partial[tid / 32] = v;
    }
    __syncthreads();
    if (tid < 32)
    {
        v = tid < blockDim.x / 32 ? partial[tid] : 0.0f;
        for (int offset = 16; offset > 0; offset /= 2)
        {
            v += __shfl_xor_sync(0xffffffffu, v, offset);
        }
        if (tid == 0)
        {
            atomicAdd(out, v);
        }
    }
}

extern "C" __global__ void histogram(const unsigned char* data, int n, unsigned* bins)
{
    __shared__ unsigned local[256];
    for (int i = threadIdx.x; i < 256; i += blockDim.x)
    {
        local[i] = 0;
    }
    __syncthreads();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
    {
        atomicAdd(&local[data[i]], 1u);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 256; i += blockDim.x)
    {
        atomicAdd(&bins[i], local[i]);
    }
    if (threadIdx.x == 0)
    {
        atomicAdd(&total, (unsigned long long)n);
        atomicCAS(&hits[blockIdx.x & 3], 0, 1);
        atomicMax(&hits[1], (int)blockIdx.x);
    }
}

__device__ __noinline__ unsigned fibonacci(unsigned k)
{
    return k < 2 ? k : fibonacci(k - 1) + fibonacci(k - 2);
}

extern "C" __global__ void recursive(unsigned* out)
{
    out[threadIdx.x] = fibonacci(threadIdx.x % 12);
}

extern "C" __global__ void say_hello(int value, double x)
{
    if (threadIdx.x == 0)
    {
        printf("block %d: value %d, x %f\n", blockIdx.x, value, x);
    }
}

template <typename T>
__global__ void scale(T* data, T factor, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
    {
        data[i] = data[i] * factor + (T)coefficients[i & 7];
    }
}

template __global__ void scale<float>(float*, float, int);
template __global__ void scale<double>(double*, double, int);
template __global__ void scale<int>(int*, int, int);

extern "C" __global__ void halves(__half* data, float f, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
    {
        __half h = data[i];
#if __CUDA_ARCH__ >= 530
        __half2 pair = __halves2half2(h, __float2half(f));
        pair = __hmul2(pair, pair);
        data[i] = __hadd(__low2half(pair), __high2half(pair));
#else
        data[i] = __float2half(__half2float(h) * f);
#endif
    }
}

extern "C" __global__ void __launch_bounds__(256, 2) bounded(float* out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float acc = 0.0f;
#pragma unroll 1
    for (int k = 0; k < n; ++k)
    {
        acc = fmaf(acc, 1.0001f, sinf((float)k));
    }
    if (i < n)
    {
        out[i] = acc + (float)__ballot_sync(0xffffffffu, acc > 0.0f) + (float)__popc(i);
    }
}

__device__ float apply(float (*f)(float), float x) { return f(x); }
__device__ __noinline__ float twice(float x) { return 2.0f * x; }
__device__ __noinline__ float square(float x) { return x * x; }

extern "C" __global__ void indirect(float* data, int which)
{
    float (*f)(float) = which ? twice : square;
    data[threadIdx.x] = apply(f, data[threadIdx.x]);
}
