/*
 * oob_copy: deliberate out-of-bounds accesses, each refused with the driver's error, and then proof that the
 * context still works. Copies and memsets past the end of an allocation fail at once with
 * CUDA_ERROR_INVALID_VALUE; a kernel told to run past its buffers is launched (launches are asynchronous) and
 * its failure, CUDA_ERROR_ILLEGAL_ADDRESS, is reported by the next synchronize. Afterwards a vector add on the
 * same context must give the right numbers.
 *
 *   oob_copy [kernels.ptx]
 */
#define SAMPLE_NAME "oob_copy"
#include "sample_common.h"

int main(int argc, char **argv)
{
    CUcontext context = open_device();
    CUmodule module;
    CUfunction add;
    CHECK(cuModuleLoad(&module, kernels_path(argc, argv)));
    CHECK(cuModuleGetFunction(&add, module, "add_f32"));

    enum { N = 256 };
    float host[2 * N];
    for (int i = 0; i < 2 * N; i++) {
        host[i] = (float)i;
    }
    CUdeviceptr a, b, c;
    CHECK(cuMemAlloc(&a, N * sizeof(float)));
    CHECK(cuMemAlloc(&b, N * sizeof(float)));
    CHECK(cuMemAlloc(&c, N * sizeof(float)));

    int ok = 1;
    printf("out-of-bounds accesses:\n");
    ok &= expect_result("copy of 2048 bytes into a 1024-byte allocation", cuMemcpyHtoD(a, host, 2 * N * sizeof(float)), CUDA_ERROR_INVALID_VALUE);
    ok &= expect_result("copy of 1024 bytes from 512 bytes before the end", cuMemcpyDtoH(host, a + 512, N * sizeof(float)), CUDA_ERROR_INVALID_VALUE);
    ok &= expect_result("device-to-device copy past the end of the source", cuMemcpyDtoD(b, a + 4, N * sizeof(float)), CUDA_ERROR_INVALID_VALUE);
    ok &= expect_result("memset of 10 words from 24 bytes before the end", cuMemsetD32(a + 1000, 0, 10), CUDA_ERROR_INVALID_VALUE);

    unsigned long long too_many = 2 * N;
    void *params[] = { &too_many, &a, &b, &c };
    ok &= expect_result("launch of add_f32 over 512 elements of 256 (asynchronous)", cuLaunchKernel(add, 2, 1, 1, 256, 1, 1, 0, NULL, params, NULL), CUDA_SUCCESS);
    ok &= expect_result("the next synchronize reports the launch", cuCtxSynchronize(), CUDA_ERROR_ILLEGAL_ADDRESS);

    /* The context still works. */
    CHECK(cuMemcpyHtoD(a, host, N * sizeof(float)));
    CHECK(cuMemcpyHtoD(b, host + N, N * sizeof(float)));
    unsigned long long count = N;
    void *good[] = { &count, &a, &b, &c };
    CHECK(cuLaunchKernel(add, 1, 1, 1, 256, 1, 1, 0, NULL, good, NULL));
    float result[N];
    CHECK(cuMemcpyDtoH(result, c, sizeof result));
    int wrong = 0;
    for (int i = 0; i < N; i++) {
        wrong += result[i] != host[i] + host[N + i];
    }
    printf("after the errors: vector add on the same context, %d wrong values\n", wrong);

    CHECK(cuMemFree(a));
    CHECK(cuMemFree(b));
    CHECK(cuMemFree(c));
    CHECK(cuModuleUnload(module));
    CHECK(cuCtxDestroy(context));
    verdict(ok && wrong == 0, ok ? "every out-of-bounds access was refused and the context still works" : "an out-of-bounds access got the wrong result");
    return 0;
}
