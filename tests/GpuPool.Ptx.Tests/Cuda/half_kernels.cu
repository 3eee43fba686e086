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

// Pair conversions: two floats into an f16x2 (sm_80 writes cvt.rn.f16x2.f32), and into e4m3x2 / e5m2x2 and back to
// f16x2 (sm_89 and later: cvt.rn.satfinite.e4m3x2.f32, cvt.rn.f16x2.e4m3x2).
#include <cuda_fp8.h>
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 890
extern "C" __global__ void pair_cvt(const float* a, const float* b, unsigned int* halves, unsigned short* e4m3, unsigned short* e5m2,
                                    unsigned int* back, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
    {
        __half2 h = __floats2half2_rn(a[i], b[i]);
        halves[i] = *reinterpret_cast<unsigned int*>(&h);
        float2 f = make_float2(b[i], a[i]);
        e4m3[i] = __nv_cvt_float2_to_fp8x2(f, __NV_SATFINITE, __NV_E4M3);
        e5m2[i] = __nv_cvt_float2_to_fp8x2(f, __NV_NOSAT, __NV_E5M2);
        __half2_raw r = __nv_cvt_fp8x2_to_halfraw2(e4m3[i], __NV_E4M3);
        back[i] = (unsigned int)r.x | ((unsigned int)r.y << 16);
    }
}
#endif
