/*
 * Helpers shared by the samples: error checks that print the driver's error name, the path of the built-in
 * kernels' PTX module, and reading a file. Only the CUDA driver API (gpupool_cuda.h) and the C library.
 */
#ifndef GPUPOOL_SAMPLE_COMMON_H
#define GPUPOOL_SAMPLE_COMMON_H

#include "gpupool_cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SAMPLE_NAME
#error "define SAMPLE_NAME before including sample_common.h"
#endif

static inline const char *result_name(CUresult r)
{
    const char *name = NULL;
    if (cuGetErrorName(r, &name) != CUDA_SUCCESS || name == NULL) {
        return "(unknown CUresult)";
    }
    return name;
}

/* Prints the verdict line every sample ends with and exits: 0 only on success. */
static inline void verdict(int ok, const char *detail)
{
    printf("%s %s: %s\n", ok ? "PASS" : "FAIL", SAMPLE_NAME, detail);
    fflush(stdout);
    exit(ok ? 0 : 1);
}

#define CHECK(call)                                                                         \
    do {                                                                                    \
        CUresult check_result_ = (call);                                                    \
        if (check_result_ != CUDA_SUCCESS) {                                                \
            const char *text_ = NULL;                                                       \
            cuGetErrorString(check_result_, &text_);                                        \
            fprintf(stderr, "%s:%d: %s returned %s (%s)\n", __FILE__, __LINE__, #call,      \
                    result_name(check_result_), text_ ? text_ : "?");                       \
            verdict(0, "a driver call failed");                                             \
        }                                                                                   \
    } while (0)

/* Expects a call to fail with one particular result; says so either way. Returns 1 when it did. */
static inline int expect_result(const char *what, CUresult got, CUresult want)
{
    printf("  %-58s %s%s\n", what, result_name(got), got == want ? "" : "  <-- expected a different result");
    if (got != want) {
        fprintf(stderr, "%s: got %s, expected %s\n", what, result_name(got), result_name(want));
    }
    return got == want;
}

/* The built-in kernels' PTX: argv[1], else $GPUPOOL_KERNELS_PTX, else the module checked into the repository. */
static inline const char *kernels_path(int argc, char **argv)
{
    if (argc > 1 && argv[1][0] != '\0') {
        return argv[1];
    }
    const char *env = getenv("GPUPOOL_KERNELS_PTX");
    if (env != NULL && env[0] != '\0') {
        return env;
    }
    return "native/kernels/ptx/gpupool_kernels.ptx";
}

/* Reads a whole file and NUL-terminates it (PTX is text); exits with a FAIL verdict if it cannot. */
static inline char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s (set GPUPOOL_KERNELS_PTX or pass the PTX path as the first argument)\n", path);
        verdict(0, "no PTX module");
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = (char *)malloc((size_t)size + 1);
    if (data == NULL || fread(data, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        verdict(0, "cannot read the PTX module");
    }
    fclose(f);
    data[size] = '\0';
    return data;
}

/* cuInit, device 0, a new context made current. Prints what the device is. */
static inline CUcontext open_device(void)
{
    CUdevice device;
    CUcontext context;
    char name[128];
    size_t total = 0;
    int major = 0, minor = 0, count = 0;
    CHECK(cuInit(0));
    CHECK(cuDeviceGetCount(&count));
    CHECK(cuDeviceGet(&device, 0));
    CHECK(cuDeviceGetName(name, (int)sizeof name, device));
    CHECK(cuDeviceTotalMem(&total, device));
    CHECK(cuDeviceComputeCapability(&major, &minor, device));
    CHECK(cuCtxCreate(&context, 0, device));
    printf("%s: %d device(s); device 0 is %s, %zu MiB, compute capability %d.%d\n",
           SAMPLE_NAME, count, name, total >> 20, major, minor);
    return context;
}

static inline unsigned int blocks_for(size_t n, unsigned int threads)
{
    size_t blocks = (n + threads - 1) / threads;
    return (unsigned int)(blocks > 65535 ? 65535 : (blocks == 0 ? 1 : blocks));
}

#endif
