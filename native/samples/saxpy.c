/*
 * saxpy: y = alpha * x + y with the built-in axpy_f32 kernel, its parameters passed as one packed buffer
 * through cuLaunchKernel's `extra` array (CU_LAUNCH_PARAM_BUFFER_POINTER / _SIZE). y starts from cuMemsetD32;
 * a second launch (scale_f32, kernelParams) halves it. Checked against the host within float rounding.
 *
 *   saxpy [kernels.ptx]
 */
#define SAMPLE_NAME "saxpy"
#include "sample_common.h"

/* axpy_f32(n:u64, alpha:f32, x:ptr, y:ptr) laid out as cuLaunchKernel packs it: each at its own alignment. */
struct axpy_params {
    unsigned long long n;
    float alpha;
    CUdeviceptr x;
    CUdeviceptr y;
};

int main(int argc, char **argv)
{
    const size_t n = 300000;
    const size_t bytes = n * sizeof(float);
    const float alpha = 1.5f, start = 2.0f, half = 0.5f;
    CUcontext context = open_device();

    char *ptx = read_file(kernels_path(argc, argv));
    CUmodule module;
    CUfunction axpy, scale;
    CHECK(cuModuleLoadData(&module, ptx));
    CHECK(cuModuleGetFunction(&axpy, module, "axpy_f32"));
    CHECK(cuModuleGetFunction(&scale, module, "scale_f32"));

    float *x = (float *)malloc(bytes), *y = (float *)malloc(bytes);
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)((long)(i % 1013) - 500) * 0.25f;
    }

    CUdeviceptr dx, dy;
    CHECK(cuMemAlloc(&dx, bytes));
    CHECK(cuMemAlloc(&dy, bytes));
    CHECK(cuMemcpyHtoD(dx, x, bytes));
    unsigned int start_bits;
    memcpy(&start_bits, &start, sizeof start_bits);
    CHECK(cuMemsetD32(dy, start_bits, n));

    struct axpy_params p = { n, alpha, dx, dy };
    size_t size = sizeof p;
    void *extra[] = { CU_LAUNCH_PARAM_BUFFER_POINTER, &p, CU_LAUNCH_PARAM_BUFFER_SIZE, &size, CU_LAUNCH_PARAM_END };
    CHECK(cuLaunchKernel(axpy, blocks_for(n, 128), 1, 1, 128, 1, 1, 0, NULL, NULL, extra));

    unsigned long long count = n;
    void *scale_params[] = { &count, (void *)&half, &dy };
    CHECK(cuLaunchKernel(scale, 64, 1, 1, 256, 1, 1, 0, NULL, scale_params, NULL));
    CHECK(cuCtxSynchronize());
    CHECK(cuMemcpyDtoH(y, dy, bytes));

    size_t wrong = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double expected = ((double)alpha * x[i] + start) * half;
        double error = fabs(y[i] - expected);
        if (error > worst) {
            worst = error;
        }
        if (error > 1e-5 * (1.0 + fabs(expected))) {
            if (wrong++ < 5) {
                fprintf(stderr, "y[%zu] = %.9g, expected %.9g\n", i, y[i], expected);
            }
        }
    }

    CHECK(cuMemFree(dx));
    CHECK(cuMemFree(dy));
    CHECK(cuModuleUnload(module));
    CHECK(cuCtxDestroy(context));
    free(x);
    free(y);
    free(ptx);

    char detail[128];
    snprintf(detail, sizeof detail, "%zu of %zu values match the host (largest error %.3g)", n - wrong, n, worst);
    verdict(wrong == 0, detail);
    return 0;
}
