// Relocatable device code (nvcc -rdc): a device function gets a FUNC symbol and a .text section of its own, and
// variables are typed STT_CUDA_OBJECT; an extern variable is only declared.

__device__ __noinline__ float twice(float v) { return v * 2; }

extern __device__ int declared;
__device__ int defined = 3;

extern "C" __global__ void kernel(float* p, int n) { p[n] = twice(p[0]) + declared + defined; }
