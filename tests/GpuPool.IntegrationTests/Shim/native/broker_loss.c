/*
 * broker_loss: works in a loop (copy, launch, synchronize) until a call fails, for the test that stops the
 * broker mid-run. Prints "running" once the first round has succeeded, then, when a call fails, the failing
 * call and its result, and what a later call returns. Exits 3 when the failure is of the launch-failed class
 * (CUDA_ERROR_LAUNCH_FAILED, or CUDA_ERROR_LAUNCH_TIMEOUT for a broker that stopped answering) and a later call
 * gets CUDA_ERROR_LAUNCH_FAILED, 4 for any other error, 5 if nothing failed within 120 s.
 *
 *   broker_loss kernels.ptx
 */
#define _POSIX_C_SOURCE 200809L
#define SAMPLE_NAME "broker_loss"
#include "sample_common.h"

#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

#define TRY(call)                                                                     \
    do {                                                                              \
        CUresult r_ = (call);                                                         \
        if (r_ != CUDA_SUCCESS) {                                                     \
            failed = #call;                                                           \
            result = r_;                                                              \
            goto lost;                                                                \
        }                                                                             \
    } while (0)

int main(int argc, char **argv)
{
    CUcontext context = open_device();
    CUmodule module;
    CUfunction scale;
    CHECK(cuModuleLoad(&module, kernels_path(argc, argv)));
    CHECK(cuModuleGetFunction(&scale, module, "scale_f32"));

    enum { N = 4096 };
    static float host[N];
    CUdeviceptr x;
    CHECK(cuMemAlloc(&x, sizeof host));
    unsigned long long n = N;
    float factor = 1.0f;
    void *params[] = { &n, &factor, &x };
    const char *failed = NULL;
    CUresult result = CUDA_SUCCESS;
    double start = now();
    for (long round = 0; now() - start < 120; round++) {
        TRY(cuMemcpyHtoD(x, host, sizeof host));
        TRY(cuLaunchKernel(scale, 16, 1, 1, 256, 1, 1, 0, NULL, params, NULL));
        TRY(cuCtxSynchronize());
        TRY(cuMemcpyDtoH(host, x, sizeof host));
        if (round == 0) {
            printf("running\n");
            fflush(stdout);
        }
    }
    printf("nothing failed within 120 s\n");
    return 5;

lost:
    printf("lost: %s returned %s\n", failed, result_name(result));
    CUdeviceptr more;
    CUresult later = cuMemAlloc(&more, 64);
    printf("later: cuMemAlloc returned %s\n", result_name(later));
    fflush(stdout);
    (void)context;
    int launch_failed_class = result == CUDA_ERROR_LAUNCH_FAILED || result == CUDA_ERROR_LAUNCH_TIMEOUT;
    return launch_failed_class && later == CUDA_ERROR_LAUNCH_FAILED ? 3 : 4;
}
