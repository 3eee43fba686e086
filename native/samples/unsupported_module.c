/*
 * unsupported_module: what the pool cannot run is refused with clear errors, not crashes. An ELF header with no cubin
 * behind it CUDA_ERROR_INVALID_IMAGE; a fat binary with no code in it CUDA_ERROR_NOT_SUPPORTED; bytes that are not a module at all CUDA_ERROR_INVALID_IMAGE; broken PTX
 * CUDA_ERROR_INVALID_PTX; a missing file CUDA_ERROR_FILE_NOT_FOUND. PTX with a kernel that uses an instruction the cpu
 * backend's PTX engine does not run (wgmma, Hopper's warpgroup matrix multiply) is refused at its load with CUDA_ERROR_NOT_SUPPORTED (the broker's
 * sentence, on stderr, names the instruction, the kernel and the line). The built-in module still loads and runs. On a
 * real GPU (cuda backend) the custom module loads and its kernel runs; pass --expect-custom-runs there.
 *
 *   unsupported_module [kernels.ptx] [--expect-custom-runs]
 */
#define SAMPLE_NAME "unsupported_module"
#include "sample_common.h"

static const char custom_ptx[] =
    ".version 7.0\n"
    ".target sm_70\n"
    ".address_size 64\n"
    ".visible .entry my_custom_kernel(\n"
    "\t.param .u64 my_custom_kernel_param_0,\n"
    "\t.param .f32 my_custom_kernel_param_1\n"
    ")\n"
    "{\n"
    "\twgmma.fence.sync.aligned;\n"
    "\tret;\n"
    "}\n";

static const char broken_ptx[] =
    ".version 7.0\n"
    ".target sm_70\n"
    ".visible .entry broken(\n"
    "\t.param .u64 broken_param_0,\n";

int main(int argc, char **argv)
{
    int expect_custom = argc > 2 && strcmp(argv[2], "--expect-custom-runs") == 0;
    CUcontext context = open_device();
    CUmodule module = NULL, custom = NULL;
    int ok = 1;

    static const unsigned char cubin[64] = { 0x7F, 'E', 'L', 'F', 2, 1, 1, 0x33 };
    static const unsigned char fatbin[64] = { 0x50, 0xED, 0x55, 0xBA, 1, 0, 0x10, 0 };
    printf("modules the pool cannot load:\n");
    ok &= expect_result("a cubin (ELF) header with nothing behind it", cuModuleLoadData(&module, cubin), CUDA_ERROR_INVALID_IMAGE);
    ok &= expect_result("a fat binary with no entries (no code at all)", cuModuleLoadData(&module, fatbin), CUDA_ERROR_NOT_SUPPORTED);
    ok &= expect_result("bytes that are not a module", cuModuleLoadData(&module, "just some text, not PTX"), CUDA_ERROR_INVALID_IMAGE);
    ok &= expect_result("PTX cut off in a parameter list", cuModuleLoadData(&module, broken_ptx), CUDA_ERROR_INVALID_PTX);
    ok &= expect_result("a module file that does not exist", cuModuleLoad(&module, "/nonexistent/kernels.ptx"), CUDA_ERROR_FILE_NOT_FOUND);

    /* A kernel of the program's own that the cpu backend's PTX engine does not run: its module is refused at load. */
    printf("a kernel the cpu backend's PTX engine does not run:\n");
    ok &= expect_result("PTX with a kernel that uses wgmma", cuModuleLoadData(&custom, custom_ptx), expect_custom ? CUDA_SUCCESS : CUDA_ERROR_NOT_SUPPORTED);
    if (expect_custom) {
        CUfunction custom_kernel;
        CUdeviceptr scratch;
        CHECK(cuMemAlloc(&scratch, 256));
        ok &= expect_result("looking the kernel up", cuModuleGetFunction(&custom_kernel, custom, "my_custom_kernel"), CUDA_SUCCESS);
        float half = 0.5f;
        void *custom_params[] = { &scratch, &half };
        CHECK(cuLaunchKernel(custom_kernel, 1, 1, 1, 32, 1, 1, 0, NULL, custom_params, NULL));
        ok &= expect_result("its launch, at the next synchronize", cuCtxSynchronize(), CUDA_SUCCESS);
        CHECK(cuModuleUnload(custom));
        CHECK(cuMemFree(scratch));
    }

    /* The built-in library still loads and runs on the same context. */
    CUfunction fill;
    CHECK(cuModuleLoad(&module, kernels_path(argc, argv)));
    ok &= expect_result("a kernel the module does not have", cuModuleGetFunction(&fill, module, "my_custom_kernel"), CUDA_ERROR_NOT_FOUND);
    CHECK(cuModuleGetFunction(&fill, module, "fill_f32"));
    CUdeviceptr y;
    enum { N = 1000 };
    CHECK(cuMemAlloc(&y, N * sizeof(float)));
    unsigned long long n = N;
    float value = 7.5f;
    void *params[] = { &n, &value, &y };
    CHECK(cuLaunchKernel(fill, 4, 1, 1, 256, 1, 1, 0, NULL, params, NULL));
    float result[N];
    CHECK(cuMemcpyDtoH(result, y, sizeof result));
    int wrong = 0;
    for (int i = 0; i < N; i++) {
        wrong += result[i] != value;
    }
    printf("after the refusals: fill_f32 from the built-in module, %d wrong values\n", wrong);

    CHECK(cuMemFree(y));
    CHECK(cuModuleUnload(module));
    CHECK(cuCtxDestroy(context));
    verdict(ok && wrong == 0, ok ? "every unsupported module and kernel was refused with its error and the built-in module still runs" : "a module got the wrong result");
    return 0;
}
