// Module-scope variables of each kind a cubin stores: zeroed (.nv.global), initialized (.nv.global.init) and
// constant (.nv.constant3), with and without an initializer.

__device__ int x[10];
__device__ float y = 2.5f;
__device__ double z = 1.25;
__constant__ float c[4] = {1, 2, 3, 4};
__constant__ int zeros[3];

extern "C" __global__ void touch(float* out, int i) { out[i] = x[i] + y + z + c[i] + zeros[i]; }
