#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#include <__clang_cuda_builtin_vars.h>
struct P { double a; int b; };
__device__ float helper(float x) { return x * 2.0f; }
__device__ int table[4] = {1, 2, 3, 4};
extern "C" __global__ void axpy_f32(unsigned long long n, float alpha, const float* x, float* y) {
  for (unsigned long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) y[i] = helper(alpha) * x[i] + y[i] + table[i & 3];
}
extern "C" __global__ void gemm_f32(int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  __shared__ float tile[16][16];
  tile[threadIdx.y][threadIdx.x] = a[0] * alpha + beta; c[0] = tile[0][0] + ta + tb + m + n + k + lda + ldb + ldc + b[0];
}
extern "C" __global__ void bystruct(P p, char flag, float* out) { out[0] = p.a + p.b + flag; }
extern "C" __global__ void noop() {}
