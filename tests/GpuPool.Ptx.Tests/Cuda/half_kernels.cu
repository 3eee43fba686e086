// Half-precision arithmetic through cuda_fp16.h and cuda_bf16.h: what nvcc writes as add/sub/mul/fma/neg/abs/min/max
// and setp on .f16, .f16x2, .bf16 and .bf16x2, checked by HalfPrecisionTests against exact host arithmetic.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

extern "C" __global__ void half_ops(const __half* a, const __half* b, const __half* c, __half* out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
    {
        __half x = a[i], y = b[i], z = c[i];
        __half* o = out + i * 8;
        o[0] = __hadd(x, y);
        o[1] = __hsub(x, y);
        o[2] = __hmul(x, y);
        o[3] = __hfma(x, y, z);
        o[4] = __hneg(x);
        o[5] = __habs(y);
        o[6] = __hlt(x, y) ? x : z;
        o[7] = __hge(x, z) ? y : z;
    }
}

extern "C" __global__ void half2_ops(const __half2* a, const __half2* b, const __half2* c, __half2* out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
    {
        __half2 x = a[i], y = b[i], z = c[i];
        __half2* o = out + i * 4;
        o[0] = __hadd2(x, y);
        o[1] = __hmul2(x, y);
        o[2] = __hfma2(x, y, z);
        o[3] = __hlt2(x, y);
    }
}

// bf16 arithmetic is native from sm_80 on (before, cuda_bf16.h goes through float).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
extern "C" __global__ void bf16_ops(const __nv_bfloat16* a, const __nv_bfloat16* b, const __nv_bfloat16* c, __nv_bfloat16* out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
    {
        __nv_bfloat16 x = a[i], y = b[i], z = c[i];
        __nv_bfloat16* o = out + i * 4;
        o[0] = __hadd(x, y);
        o[1] = __hmul(x, y);
        o[2] = __hfma(x, y, z);
        o[3] = __hmin(x, y);
    }
}
#endif
