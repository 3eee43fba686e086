/*
 * share_load: keeps its device busy for a while, as a training job does: batches of eight matrix products
 * (gemm_f32 of the built-in kernels on SIDE x SIDE matrices), each batch followed by an event, over and over,
 * for SECONDS seconds. Prints "running" once the first batch is done and "kernels N" at the end, for the tests of
 * compute shares through `gpupool run` (which read the lease's device time from the broker).
 *
 *   share_load kernels.ptx SIDE SECONDS
 */
#define _POSIX_C_SOURCE 200809L
#define SAMPLE_NAME "share_load"
#include "sample_common.h"

#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: share_load kernels.ptx SIDE SECONDS\n");
        return 2;
    }

    int side = atoi(argv[2]);
    double seconds = atof(argv[3]);
    if (side < 1 || side > 4096 || seconds <= 0) {
        fprintf(stderr, "share_load: SIDE must be 1..4096 and SECONDS positive\n");
        return 2;
    }

    CUcontext context = open_device();
    CUmodule module;
    CUfunction gemm;
    CHECK(cuModuleLoad(&module, kernels_path(argc, argv)));
    CHECK(cuModuleGetFunction(&gemm, module, "gemm_f32"));

    size_t bytes = (size_t)side * (size_t)side * sizeof(float);
    float *host = malloc(bytes);
    for (size_t i = 0; i < (size_t)side * (size_t)side; i++) {
        host[i] = (float)(i % 5);
    }

    CUdeviceptr a, c;
    CHECK(cuMemAlloc(&a, bytes));
    CHECK(cuMemAlloc(&c, bytes));
    CHECK(cuMemcpyHtoD(a, host, bytes));

    int no = 0, m = side, n = side, k = side, lda = side, ldb = side, ldc = side;
    float alpha = 1.0f, beta = 0.0f;
    void *params[] = { &no, &no, &m, &n, &k, &alpha, &a, &lda, &a, &ldb, &beta, &c, &ldc };
    /* Each batch is followed by an event, and the program waits for the batch AHEAD back: that many batches are
     * queued while it waits, so the lease stays busy even when the program is slow to be scheduled. */
    enum { AHEAD = 4 };
    CUevent done[AHEAD + 1];
    for (int i = 0; i <= AHEAD; i++) {
        CHECK(cuEventCreate(&done[i], CU_EVENT_DEFAULT));
    }
    long kernels = 0;
    double start = now();
    for (long batch = 0; now() - start < seconds; batch++) {
        for (int i = 0; i < 8; i++) {
            CHECK(cuLaunchKernel(gemm, 1, 1, 1, 1, 1, 1, 0, NULL, params, NULL));
        }

        CHECK(cuEventRecord(done[batch % (AHEAD + 1)], NULL));
        if (batch >= AHEAD) {
            CHECK(cuEventSynchronize(done[(batch - AHEAD) % (AHEAD + 1)]));
            kernels += 8;
            if (kernels == 8) {
                printf("running\n");
                fflush(stdout);
            }
        }
    }

    CHECK(cuCtxSynchronize());
    printf("kernels %ld\n", kernels);
    free(host);
    (void)context;
    return 0;
}
