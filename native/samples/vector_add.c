/*
 * vector_add: c = a + b on the device with the built-in add_f32 kernel, launched with a kernelParams array;
 * the result is checked element by element against the same sum computed on the host.
 *
 *   vector_add [kernels.ptx]
 */
#define SAMPLE_NAME "vector_add"
#include "sample_common.h"

int main(int argc, char **argv)
{
    const size_t n = 1000003; /* not a multiple of the block size */
    const size_t bytes = n * sizeof(float);
    CUcontext context = open_device();

    CUmodule module;
    CUfunction add;
    CHECK(cuModuleLoad(&module, kernels_path(argc, argv)));
    CHECK(cuModuleGetFunction(&add, module, "add_f32"));

    float *a = (float *)malloc(bytes), *b = (float *)malloc(bytes), *c = (float *)malloc(bytes);
    for (size_t i = 0; i < n; i++) {
        a[i] = (float)i * 0.5f;
        b[i] = 1000.0f - (float)(i % 977);
        c[i] = -1.0f;
    }

    CUdeviceptr da, db, dc;
    CHECK(cuMemAlloc(&da, bytes));
    CHECK(cuMemAlloc(&db, bytes));
    CHECK(cuMemAlloc(&dc, bytes));
    CHECK(cuMemcpyHtoD(da, a, bytes));
    CHECK(cuMemcpyHtoD(db, b, bytes));

    unsigned long long count = n;
    void *params[] = { &count, &da, &db, &dc };
    CHECK(cuLaunchKernel(add, blocks_for(n, 256), 1, 1, 256, 1, 1, 0, NULL, params, NULL));
    CHECK(cuMemcpyDtoH(c, dc, bytes));

    size_t wrong = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i] != a[i] + b[i]) {
            if (wrong++ < 5) {
                fprintf(stderr, "c[%zu] = %g, expected %g\n", i, c[i], a[i] + b[i]);
            }
        }
    }

    CHECK(cuMemFree(da));
    CHECK(cuMemFree(db));
    CHECK(cuMemFree(dc));
    CHECK(cuModuleUnload(module));
    CHECK(cuCtxDestroy(context));
    free(a);
    free(b);
    free(c);

    char detail[128];
    snprintf(detail, sizeof detail, "%zu of %zu sums match the host", n - wrong, n);
    verdict(wrong == 0, detail);
    return 0;
}
