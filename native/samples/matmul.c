/*
 * matmul: C = A * B computed tile by tile. Each TILE x TILE block of C accumulates TILE-deep slices of A and B
 * with the built-in gemm_f32 kernel, addressing the sub-matrices by pointer offsets and leading dimensions
 * (beta = 0 for the first slice, 1 after). The sizes are not multiples of the tile, so edge tiles are ragged.
 * Then C2 = A * B^T in one launch with trans_b. Both are checked against a host reference; the device time of
 * the tiled product is measured with events. The module is loaded with cuModuleLoadDataEx and JIT log buffers.
 *
 *   matmul [kernels.ptx]
 */
#define SAMPLE_NAME "matmul"
#include "sample_common.h"

enum { M = 150, N = 130, K = 170, TILE = 64 };

static CUfunction gemm;

/* gemm_f32(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), row-major. */
static void launch_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, CUdeviceptr a, int lda,
                        CUdeviceptr b, int ldb, float beta, CUdeviceptr c, int ldc)
{
    void *params[] = { &trans_a, &trans_b, &m, &n, &k, &alpha, &a, &lda, &b, &ldb, &beta, &c, &ldc };
    CHECK(cuLaunchKernel(gemm, (unsigned int)((n + 15) / 16), (unsigned int)((m + 15) / 16), 1, 16, 16, 1, 0, NULL, params, NULL));
}

static size_t compare(const float *got, const double *want, size_t count, const char *what, double *worst)
{
    size_t wrong = 0;
    for (size_t i = 0; i < count; i++) {
        double error = fabs(got[i] - want[i]);
        if (error > *worst) {
            *worst = error;
        }
        if (error > 1e-3 * (1.0 + fabs(want[i]))) {
            if (wrong++ < 5) {
                fprintf(stderr, "%s[%zu] = %.7g, expected %.7g\n", what, i, got[i], want[i]);
            }
        }
    }
    return wrong;
}

int main(int argc, char **argv)
{
    CUcontext context = open_device();

    char *ptx = read_file(kernels_path(argc, argv));
    char info_log[256], error_log[256];
    CUjit_option options[] = { CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES };
    void *values[] = { info_log, (void *)(size_t)sizeof info_log, error_log, (void *)(size_t)sizeof error_log };
    CUmodule module;
    CUresult loaded = cuModuleLoadDataEx(&module, ptx, 4, options, values);
    if (loaded != CUDA_SUCCESS) {
        fprintf(stderr, "cuModuleLoadDataEx: %s: %s\n", result_name(loaded), error_log);
        verdict(0, "the module did not load");
    }
    CHECK(cuModuleGetFunction(&gemm, module, "gemm_f32"));

    float *a = (float *)malloc(sizeof(float) * M * K), *b = (float *)malloc(sizeof(float) * K * N);
    float *bt = (float *)malloc(sizeof(float) * N * K), *c = (float *)malloc(sizeof(float) * M * N);
    double *ref = (double *)calloc((size_t)M * N, sizeof(double));
    for (int i = 0; i < M * K; i++) {
        a[i] = (float)((i * 7) % 23 - 11) / 8.0f;
    }
    for (int i = 0; i < K * N; i++) {
        b[i] = (float)((i * 5) % 19 - 9) / 4.0f;
    }
    for (int r = 0; r < K; r++) {
        for (int col = 0; col < N; col++) {
            bt[col * K + r] = b[r * N + col];
        }
    }
    for (int i = 0; i < M; i++) {
        for (int p = 0; p < K; p++) {
            for (int j = 0; j < N; j++) {
                ref[i * N + j] += (double)a[i * K + p] * b[p * N + j];
            }
        }
    }

    CUdeviceptr da, db, dbt, dc, dc2;
    CHECK(cuMemAlloc(&da, sizeof(float) * M * K));
    CHECK(cuMemAlloc(&db, sizeof(float) * K * N));
    CHECK(cuMemAlloc(&dbt, sizeof(float) * N * K));
    CHECK(cuMemAlloc(&dc, sizeof(float) * M * N));
    CHECK(cuMemAlloc(&dc2, sizeof(float) * M * N));
    CHECK(cuMemcpyHtoD(da, a, sizeof(float) * M * K));
    CHECK(cuMemcpyHtoD(db, b, sizeof(float) * K * N));
    CHECK(cuMemcpyHtoD(dbt, bt, sizeof(float) * N * K));
    CHECK(cuMemsetD8(dc, 0xFF, sizeof(float) * M * N)); /* garbage (NaN) that beta = 0 must ignore */

    CUevent start, stop;
    CHECK(cuEventCreate(&start, CU_EVENT_DEFAULT));
    CHECK(cuEventCreate(&stop, CU_EVENT_DEFAULT));
    CHECK(cuEventRecord(start, NULL));
    int launches = 0;
    for (int i0 = 0; i0 < M; i0 += TILE) {
        for (int j0 = 0; j0 < N; j0 += TILE) {
            int mi = M - i0 < TILE ? M - i0 : TILE;
            int nj = N - j0 < TILE ? N - j0 : TILE;
            for (int k0 = 0; k0 < K; k0 += TILE) {
                int kk = K - k0 < TILE ? K - k0 : TILE;
                launch_gemm(0, 0, mi, nj, kk, 1.0f,
                            da + sizeof(float) * ((size_t)i0 * K + k0), K,
                            db + sizeof(float) * ((size_t)k0 * N + j0), N,
                            k0 == 0 ? 0.0f : 1.0f,
                            dc + sizeof(float) * ((size_t)i0 * N + j0), N);
                launches++;
            }
        }
    }
    CHECK(cuEventRecord(stop, NULL));
    launch_gemm(0, 1, M, N, K, 1.0f, da, K, dbt, K, 0.0f, dc2, N);
    CHECK(cuEventSynchronize(stop));
    float ms = 0;
    CHECK(cuEventElapsedTime(&ms, start, stop));

    double worst = 0;
    CHECK(cuMemcpyDtoH(c, dc, sizeof(float) * M * N));
    size_t wrong = compare(c, ref, (size_t)M * N, "C", &worst);
    CHECK(cuMemcpyDtoH(c, dc2, sizeof(float) * M * N));
    wrong += compare(c, ref, (size_t)M * N, "C2", &worst);

    CHECK(cuEventDestroy(start));
    CHECK(cuEventDestroy(stop));
    CHECK(cuMemFree(da));
    CHECK(cuMemFree(db));
    CHECK(cuMemFree(dbt));
    CHECK(cuMemFree(dc));
    CHECK(cuMemFree(dc2));
    CHECK(cuModuleUnload(module));
    CHECK(cuCtxDestroy(context));
    free(a);
    free(b);
    free(bt);
    free(c);
    free(ref);
    free(ptx);

    char detail[200];
    snprintf(detail, sizeof detail, "%dx%dx%d in %d tile launches (%.2f ms on the device) and one transposed launch; %zu wrong, largest error %.3g",
             M, N, K, launches, ms, wrong, worst);
    verdict(wrong == 0 && ms >= 0, detail);
    return 0;
}
