// sm_80 and sm_90 features whose PTX has its own spellings: thread-block clusters (.explicitcluster,
// .reqnctapercluster, barrier.cluster, mapa, %cluster_ctarank) and asynchronous copies (cp.async).
#include <cooperative_groups.h>
#include <cuda_pipeline.h>

namespace cg = cooperative_groups;

#if __CUDA_ARCH__ >= 900
#define CLUSTER_OF_TWO __cluster_dims__(2, 1, 1)
#else
#define CLUSTER_OF_TWO
#endif

extern "C" __global__ void CLUSTER_OF_TWO clustered(int* out)
{
#if __CUDA_ARCH__ >= 900
    __shared__ int value;
    cg::cluster_group cluster = cg::this_cluster();
    value = threadIdx.x;
    cluster.sync();
    int* other = cluster.map_shared_rank(&value, (cluster.block_rank() + 1) % 2);
    out[blockIdx.x] = *other + (int)cluster.block_rank();
    cluster.sync();
#else
    out[blockIdx.x] = 0;
#endif
}

extern "C" __global__ void copy_async(const float4* in, float4* out)
{
    __shared__ float4 staging[64];
    __pipeline_memcpy_async(&staging[threadIdx.x], &in[threadIdx.x], sizeof(float4));
    __pipeline_commit();
    __pipeline_wait_prior(0);
    __syncthreads();
    out[threadIdx.x] = staging[63 - threadIdx.x];
}
