// Kernels that call functions (.func with PTX's parameter ABI, recursion, local arrays in a callee's frame, pointer
// arguments) and print (vprintf): the engine's calls and device printf, checked by CallsAndPrintfTests.
#include <cstdio>
#include "printf_format.h"

extern "C" {

__device__ unsigned int fib(unsigned int n)
{
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

// A frame of its own: a local array the callee indexes by a runtime value.
__device__ __noinline__ float weigh(float x, int k)
{
    float w[8];
    for (int i = 0; i < 8; i++)
    {
        w[i] = x * (float)(i + 1);
    }

    return w[k & 7] - w[(k + 3) & 7];
}

__device__ __noinline__ void store_pair(int* p, int v)
{
    p[0] = v;
    p[1] = -2 * v;
}

// Recursion that needs a frame per level: nothing the compiler can turn into a loop.
__device__ unsigned int nest(unsigned int depth, volatile unsigned int* sink)
{
    volatile unsigned int frame[16];
    frame[depth & 15] = depth;
    if (depth == 0)
    {
        return frame[0];
    }

    unsigned int below = nest(depth - 1, sink);
    *sink = below;
    return below + frame[depth & 15];
}

__global__ void fib_kernel(const unsigned int* n, unsigned int* out, int count)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count)
    {
        out[i] = fib(n[i]);
    }
}

__global__ void calls_kernel(const float* x, float* y, int* pairs, int count)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count)
    {
        y[i] = weigh(x[i], i);
        store_pair(pairs + 2 * i, i + 1);
    }
}

__global__ void nest_kernel(unsigned int depth, unsigned int* out)
{
    out[threadIdx.x] = nest(depth + threadIdx.x, out + 64);
}

__global__ void hello(int n)
{
    int printed = printf(HELLO_FORMAT, HELLO_ARGS(blockIdx.x, threadIdx.x, n));
    if (printed < 0)
    {
        printf("printf failed\n");
    }
}

}
