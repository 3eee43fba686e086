// A whole program: nvcc links it against the static CUDA runtime, embedding its fat binary in .nv_fatbin and the
// wrapper the runtime registers in .nvFatBinSegment.

#include <cstdio>

extern "C" __global__ void scale(float* data, float by) { data[threadIdx.x] *= by; }

int main()
{
    float* data = nullptr;
    if (cudaMalloc(&data, 32 * sizeof(float)) != cudaSuccess) {
        std::puts("no device");
        return 0;
    }

    scale<<<1, 32>>>(data, 2.0f);
    cudaFree(data);
    return 0;
}
