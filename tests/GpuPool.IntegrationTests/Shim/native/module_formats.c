/*
 * module_formats: the built-in kernels as nvcc builds them, loaded every way a program can: a fat binary through
 * cuModuleLoadData, cuModuleLoadFatBinary and the CUDA 12 library API, PTX through a run-time link of one
 * input, and a cubin (which loads everywhere, and runs where the backend runs SASS). Each module runs add_f32 and the sums are
 * checked; then broken images (a fat binary whose header lies, a cubin whose section headers lie past its end)
 * and a second link input are refused with the driver's results. The cpu backend runs a fat binary's PTX.
 *
 *   module_formats kernels.fatbin kernels.cubin kernels.ptx [cubin-result]
 *
 * cubin-result: what running the cubin's add_f32 must give at the next synchronize, as a number (801,
 * CUDA_ERROR_NOT_SUPPORTED, on a backend without SASS; 0 on a GPU).
 */
#define _POSIX_C_SOURCE 200809L
#define SAMPLE_NAME "module_formats"
#include "sample_common.h"

#include <string.h>

enum { N = 4099 };

static size_t file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return 0;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    return size < 0 ? 0 : (size_t)size;
}

/* Runs add_f32 over N elements; returns how many sums are wrong. */
static size_t run_add(CUfunction add)
{
    static float a[N], b[N], c[N];
    for (size_t i = 0; i < N; i++) {
        a[i] = (float)i;
        b[i] = 0.25f * (float)(i % 13);
        c[i] = -1.0f;
    }
    CUdeviceptr da, db, dc;
    CHECK(cuMemAlloc(&da, sizeof a));
    CHECK(cuMemAlloc(&db, sizeof b));
    CHECK(cuMemAlloc(&dc, sizeof c));
    CHECK(cuMemcpyHtoD(da, a, sizeof a));
    CHECK(cuMemcpyHtoD(db, b, sizeof b));
    unsigned long long count = N;
    void *params[] = { &count, &da, &db, &dc };
    CHECK(cuLaunchKernel(add, blocks_for(N, 128), 1, 1, 128, 1, 1, 0, NULL, params, NULL));
    CHECK(cuMemcpyDtoH(c, dc, sizeof c));
    CHECK(cuMemFree(da));
    CHECK(cuMemFree(db));
    CHECK(cuMemFree(dc));
    size_t wrong = 0;
    for (size_t i = 0; i < N; i++) {
        wrong += c[i] != a[i] + b[i];
    }
    return wrong;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: module_formats kernels.fatbin kernels.cubin kernels.ptx [cubin-result]\n");
        return 2;
    }
    CUresult cubin_result = argc > 4 ? (CUresult)atoi(argv[4]) : CUDA_ERROR_NOT_SUPPORTED;
    CUcontext context = open_device();
    char *fatbin = read_file(argv[1]);
    char *cubin = read_file(argv[2]);
    size_t fatbin_size = file_size(argv[1]);
    size_t cubin_size = file_size(argv[2]);
    int ok = 1;
    size_t wrong = 0;
    CUfunction add;

    CUmodule from_data;
    CHECK(cuModuleLoadData(&from_data, fatbin));
    CHECK(cuModuleGetFunction(&add, from_data, "add_f32"));
    wrong += run_add(add);
    int ptx_version = 0, binary_version = 0;
    CHECK(cuFuncGetAttribute(&ptx_version, CU_FUNC_ATTRIBUTE_PTX_VERSION, add));
    CHECK(cuFuncGetAttribute(&binary_version, CU_FUNC_ATTRIBUTE_BINARY_VERSION, add));
    printf("  fat binary by cuModuleLoadData: PTX version %d, binary version %d\n", ptx_version, binary_version);
    CHECK(cuModuleUnload(from_data));

    CUmodule from_fatbin;
    CHECK(cuModuleLoadFatBinary(&from_fatbin, fatbin));
    CHECK(cuModuleGetFunction(&add, from_fatbin, "add_f32"));
    wrong += run_add(add);
    CHECK(cuModuleUnload(from_fatbin));

    CUlibrary library;
    CUkernel kernel;
    const char *name = NULL;
    CUmodule library_module;
    CHECK(cuLibraryLoadData(&library, fatbin, NULL, NULL, 0, NULL, NULL, 0));
    CHECK(cuLibraryGetKernel(&kernel, library, "add_f32"));
    CHECK(cuKernelGetFunction(&add, kernel));
    CHECK(cuKernelGetName(&name, kernel));
    CHECK(cuLibraryGetModule(&library_module, library));
    ok &= strcmp(name, "add_f32") == 0;
    wrong += run_add(add);
    wrong += run_add((CUfunction)kernel);
    CHECK(cuLibraryUnload(library));

    CUlinkState link;
    void *linked = NULL;
    size_t linked_size = 0;
    CUmodule from_link;
    CHECK(cuLinkCreate(0, NULL, NULL, &link));
    CHECK(cuLinkAddFile(link, CU_JIT_INPUT_PTX, argv[3], 0, NULL, NULL));
    ok &= expect_result("a second link input", cuLinkAddData(link, CU_JIT_INPUT_FATBINARY, fatbin, fatbin_size, "second", 0, NULL, NULL), CUDA_ERROR_NOT_SUPPORTED);
    CHECK(cuLinkComplete(link, &linked, &linked_size));
    CHECK(cuModuleLoadData(&from_link, linked));
    CHECK(cuLinkDestroy(link));
    CHECK(cuModuleGetFunction(&add, from_link, "add_f32"));
    wrong += run_add(add);
    CHECK(cuModuleUnload(from_link));

    CUmodule from_cubin;
    CHECK(cuModuleLoadData(&from_cubin, cubin));
    CHECK(cuModuleGetFunction(&add, from_cubin, "add_f32"));
    {
        CUdeviceptr d;
        CHECK(cuMemAlloc(&d, 4 * sizeof(float)));
        unsigned long long count = 4;
        void *params[] = { &count, &d, &d, &d };
        CHECK(cuLaunchKernel(add, 1, 1, 1, 32, 1, 1, 0, NULL, params, NULL));
        ok &= expect_result("the cubin's kernel, at the next synchronize", cuCtxSynchronize(), cubin_result);
        CHECK(cuMemFree(d));
    }
    CHECK(cuModuleUnload(from_cubin));

    char *lying = malloc(fatbin_size);
    memcpy(lying, fatbin, fatbin_size);
    unsigned long long huge = 1ULL << 40;
    memcpy(lying + 8, &huge, sizeof huge);
    CUmodule bad;
    ok &= expect_result("a fat binary whose header claims 1 TiB", cuModuleLoadData(&bad, lying), CUDA_ERROR_INVALID_IMAGE);
    memcpy(lying, fatbin, fatbin_size);
    unsigned long long small = 64;
    memcpy(lying + 8, &small, sizeof small);
    ok &= expect_result("a fat binary cut short inside its first entry", cuModuleLoadData(&bad, lying), CUDA_ERROR_INVALID_IMAGE);
    free(lying);

    lying = malloc(cubin_size);
    memcpy(lying, cubin, cubin_size);
    unsigned long long past = cubin_size * 4;
    memcpy(lying + 0x28, &past, sizeof past);
    ok &= expect_result("a cubin whose section headers lie past its end", cuModuleLoadData(&bad, lying), CUDA_ERROR_INVALID_IMAGE);
    free(lying);
    ok &= expect_result("cuModuleLoadFatBinary of bytes that are no fat binary", cuModuleLoadFatBinary(&bad, "not a fat binary"), CUDA_ERROR_INVALID_IMAGE);

    /* The context goes on after all that. */
    CHECK(cuModuleLoadData(&from_data, fatbin));
    CHECK(cuModuleGetFunction(&add, from_data, "add_f32"));
    wrong += run_add(add);
    CHECK(cuModuleUnload(from_data));
    CHECK(cuCtxDestroy(context));
    free(fatbin);
    free(cubin);

    char detail[160];
    snprintf(detail, sizeof detail, "%zu wrong sums over 6 launches from a fat binary, a library, a link and after refusals", wrong);
    verdict(ok && wrong == 0, detail);
    return 0;
}
