// C = A * B for square row-major n x n matrices, n a multiple of TILE: the textbook shared-memory tiled SGEMM
// (one 16 x 16 block per 16 x 16 tile of C, two barriers per step along k).
#define TILE 16

extern "C" __global__ void sgemm_tiled(int n, const float* a, const float* b, float* c)
{
    __shared__ float as[TILE][TILE];
    __shared__ float bs[TILE][TILE];
    int tx = threadIdx.x, ty = threadIdx.y;
    int row = blockIdx.y * TILE + ty;
    int col = blockIdx.x * TILE + tx;
    float sum = 0.0f;
    for (int t = 0; t < n; t += TILE)
    {
        as[ty][tx] = a[row * n + t + tx];
        bs[ty][tx] = b[(t + ty) * n + col];
        __syncthreads();
        for (int k = 0; k < TILE; ++k)
        {
            sum += as[ty][k] * bs[k][tx];
        }
        __syncthreads();
    }
    c[row * n + col] = sum;
}
