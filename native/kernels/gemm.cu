// C = alpha · op(A) · op(B) + beta · C, row-major, with op(X) = X or Xᵀ per flag: A is stored m×k (k×m when
// trans_a), B k×n (n×k when trans_b), with leading dimensions lda, ldb, ldc in elements.
//
// Blocks stride over 64×64 tiles of C. A tile is computed by 256 logical workers, each holding a 4×4 patch
// of C in registers while 16-deep slices of op(A) and op(B) pass through shared memory. A block of 256
// threads runs one worker per thread; a smaller block runs the workers in turns, a larger one leaves its
// extra threads to help with the staging. Every element of C is one fused multiply-add chain over p = 0..k-1
// in order, so the result does not depend on the launch geometry, bit for bit.
//
// Argument rules, as on the cpu backend: negative m, n, k or a leading dimension shorter than its row
// (lda < max(1, columns of A as stored), likewise ldb, and ldc < max(1, n)) fail the launch there and write
// nothing here. beta = 0 overwrites C without reading it; alpha = 0 or k = 0 only scales C by beta and reads
// neither A nor B, so NaNs in them cannot leak in.
#include "gpupool_device.h"

#define GP_TILE 64u
#define GP_DEPTH 16u
#define GP_PATCH 4
#define GP_WORKERS 256u // (GP_TILE / GP_PATCH)²

GP_DEVICE int gp_max_int(int a, int b) { return a > b ? a : b; }

extern "C" __global__ void gemm_f32(int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                                    const float* b, int ldb, float beta, float* c, int ldc)
{
    if (m < 0 || n < 0 || k < 0)
    {
        return;
    }
    int a_cols = trans_a != 0 ? m : k;
    int b_cols = trans_b != 0 ? k : n;
    if (lda < gp_max_int(1, a_cols) || ldb < gp_max_int(1, b_cols) || ldc < gp_max_int(1, n) || m == 0 || n == 0)
    {
        return;
    }
    const int depth = alpha == 0.0f ? 0 : k;

    // Both slices are stored k-major: a_tile[p][i] = op(A)[i0 + i, p0 + p], b_tile[p][j] = op(B)[p0 + p, j0 + j].
    __shared__ float a_tile[GP_DEPTH][GP_TILE];
    __shared__ float b_tile[GP_DEPTH][GP_TILE];

    const unsigned threads = gp_block_size(), me = gp_local_rank();
    const unsigned turns = (GP_WORKERS + threads - 1) / threads;
    const u64 tiles_n = (n + GP_TILE - 1) / GP_TILE;
    const u64 tiles = (m + GP_TILE - 1) / GP_TILE * tiles_n;
    for (u64 tile = gp_block_rank(); tile < tiles; tile += gp_block_count())
    {
        const long long i0 = (long long)(tile / tiles_n) * GP_TILE, j0 = (long long)(tile % tiles_n) * GP_TILE;
        for (unsigned turn = 0; turn < turns; ++turn)
        {
            const unsigned worker = turn * threads + me;
            const bool working = worker < GP_WORKERS;
            const unsigned wi = worker / (GP_TILE / GP_PATCH) * GP_PATCH, wj = worker % (GP_TILE / GP_PATCH) * GP_PATCH;
            float acc[GP_PATCH][GP_PATCH];
#pragma unroll
            for (int r = 0; r < GP_PATCH; ++r)
            {
#pragma unroll
                for (int s = 0; s < GP_PATCH; ++s)
                {
                    acc[r][s] = 0.0f;
                }
            }

            for (long long p0 = 0; p0 < depth; p0 += GP_DEPTH)
            {
                // Stage the slices; elements past m, n or k are zeros. Consecutive threads take consecutive
                // addresses of whichever operand layout is in memory.
                for (unsigned e = me; e < GP_TILE * GP_DEPTH; e += threads)
                {
                    unsigned i, p;
                    if (trans_a != 0)
                    {
                        p = e / GP_TILE;
                        i = e % GP_TILE;
                    }
                    else
                    {
                        i = e / GP_DEPTH;
                        p = e % GP_DEPTH;
                    }
                    long long gi = i0 + i, gp = p0 + p;
                    a_tile[p][i] = gi < m && gp < k ? (trans_a != 0 ? a[gp * lda + gi] : a[gi * lda + gp]) : 0.0f;

                    unsigned j, q;
                    if (trans_b != 0)
                    {
                        j = e / GP_DEPTH;
                        q = e % GP_DEPTH;
                    }
                    else
                    {
                        q = e / GP_TILE;
                        j = e % GP_TILE;
                    }
                    long long gj = j0 + j, gq = p0 + q;
                    b_tile[q][j] = gj < n && gq < k ? (trans_b != 0 ? b[gj * ldb + gq] : b[gq * ldb + gj]) : 0.0f;
                }
                __syncthreads();
                if (working)
                {
#pragma unroll
                    for (unsigned p = 0; p < GP_DEPTH; ++p)
                    {
                        float av[GP_PATCH], bv[GP_PATCH];
#pragma unroll
                        for (int r = 0; r < GP_PATCH; ++r)
                        {
                            av[r] = a_tile[p][wi + r];
                            bv[r] = b_tile[p][wj + r];
                        }
#pragma unroll
                        for (int r = 0; r < GP_PATCH; ++r)
                        {
#pragma unroll
                            for (int s = 0; s < GP_PATCH; ++s)
                            {
                                acc[r][s] = gp_fma(av[r], bv[s], acc[r][s]);
                            }
                        }
                    }
                }
                __syncthreads();
            }

            if (working)
            {
#pragma unroll
                for (int r = 0; r < GP_PATCH; ++r)
                {
#pragma unroll
                    for (int s = 0; s < GP_PATCH; ++s)
                    {
                        long long gi = i0 + wi + r, gj = j0 + wj + s;
                        if (gi < m && gj < n)
                        {
                            float* at = c + gi * ldc + gj;
                            float prior = beta == 0.0f ? 0.0f : beta == 1.0f ? *at : beta * *at;
                            *at = depth == 0 ? prior : gp_fma(alpha, acc[r][s], prior);
                        }
                    }
                }
            }
        }
    }
}
