// The few CUDA spellings the kernels use, for the two compilers that build them:
// nvcc (which brings the CUDA headers) and clang's CUDA device compilation without the CUDA SDK
// (-nocudainc -nocudalib). Everything beyond the language keywords goes through a gp_* wrapper, so the
// kernels never call a libdevice function: the module must load with nothing to link.
#ifndef GPUPOOL_CUDA_H
#define GPUPOOL_CUDA_H

#if defined(__NVCC__)

#define GP_DEVICE __device__ __forceinline__

GP_DEVICE int gp_syncthreads_or(int predicate) { return __syncthreads_or(predicate); }
GP_DEVICE float gp_fma(float a, float b, float c) { return __fmaf_rn(a, b, c); }
GP_DEVICE float gp_sqrt(float x) { return __fsqrt_rn(x); }
GP_DEVICE float gp_rint(float x) { return rintf(x); }
GP_DEVICE unsigned gp_float_bits(float x) { return __float_as_uint(x); }
GP_DEVICE float gp_bits_float(unsigned u) { return __uint_as_float(u); }

#elif defined(__clang__) && defined(__CUDA__)

#if !defined(__CUDA_ARCH__)
#error "the kernels are device code: compile with --cuda-device-only"
#endif

#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define __forceinline__ __inline__ __attribute__((always_inline))
#include <__clang_cuda_builtin_vars.h>

#define GP_DEVICE __device__ __forceinline__

// __syncthreads() itself is a clang builtin; its OR-reducing form is bar.red.or.
GP_DEVICE int gp_syncthreads_or(int predicate) { return __nvvm_bar0_or(predicate); }
GP_DEVICE float gp_fma(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
GP_DEVICE float gp_sqrt(float x) { return __nvvm_sqrt_rn_f(x); }
GP_DEVICE float gp_rint(float x) { return __builtin_rintf(x); }
GP_DEVICE unsigned gp_float_bits(float x) { return __builtin_bit_cast(unsigned, x); }
GP_DEVICE float gp_bits_float(unsigned u) { return __builtin_bit_cast(float, u); }

#else
#error "compile the kernels with nvcc or with clang -x cuda --cuda-device-only (see build-ptx.sh)"
#endif

#endif
