/*
 * module_globals: a module's __device__ and __constant__ variables through the shim (cuModuleGetGlobal), for
 * tests/GpuPool.IntegrationTests/Shim. One line per case, "case NAME: RESULT ok" or "... MISMATCH"; the last line
 * counts them and the program exits 0 only when every case got what the driver gives. The modules' kernels are the
 * program's own, which the cpu backend's PTX engine runs: one fills the module's variable, one counts its threads in
 * its module's variable.
 *
 *   module_globals
 */
#define SAMPLE_NAME "module_globals"
#include "sample_common.h"

/*
 * counts[16] zeroed, scale = 2.5f in constant memory, and a fill_f32 of the program's own to write counts with: named
 * and laid out like the built-in kernel, but the PTX engine runs its body (only the built-in library's exact image runs
 * as the built-in C#), which writes value to y[i] for each thread's i < n.
 */
static const char globals_ptx[] =
    ".version 7.0\n"
    ".target sm_70\n"
    ".address_size 64\n"
    ".visible .global .align 4 .b8 counts[64];\n"
    ".visible .const .align 4 .f32 scale = 0f40200000;\n"
    ".visible .entry fill_f32(\n"
    "\t.param .u64 fill_f32_param_0,\n"
    "\t.param .f32 fill_f32_param_1,\n"
    "\t.param .u64 fill_f32_param_2\n"
    ")\n"
    "{\n"
    "\t.reg .pred %p<2>;\n"
    "\t.reg .b32 %r<4>;\n"
    "\t.reg .f32 %f<2>;\n"
    "\t.reg .b64 %rd<7>;\n"
    "\tld.param.u64 %rd1, [fill_f32_param_0];\n"
    "\tld.param.f32 %f1, [fill_f32_param_1];\n"
    "\tld.param.u64 %rd2, [fill_f32_param_2];\n"
    "\tmov.u32 %r1, %ctaid.x;\n"
    "\tmov.u32 %r2, %ntid.x;\n"
    "\tmov.u32 %r3, %tid.x;\n"
    "\tmad.lo.s32 %r1, %r1, %r2, %r3;\n"
    "\tcvt.u64.u32 %rd3, %r1;\n"
    "\tsetp.ge.u64 %p1, %rd3, %rd1;\n"
    "\t@%p1 bra.uni $L__done;\n"
    "\tcvta.to.global.u64 %rd4, %rd2;\n"
    "\tshl.b64 %rd5, %rd3, 2;\n"
    "\tadd.s64 %rd6, %rd4, %rd5;\n"
    "\tst.global.f32 [%rd6], %f1;\n"
    "$L__done:\n"
    "\tret;\n"
    "}\n";

static const char custom_ptx[] =
    ".version 7.0\n"
    ".target sm_70\n"
    ".address_size 64\n"
    ".visible .global .align 4 .u32 hits;\n"
    ".visible .entry my_custom_kernel(\n"
    "\t.param .u64 my_custom_kernel_param_0\n"
    ")\n"
    "{\n"
    "\t.reg .b32 %r<2>;\n"
    "\t.reg .b64 %rd<2>;\n"
    "\tmov.u64 %rd1, hits;\n"
    "\tatom.global.add.u32 %r1, [%rd1], 1;\n"
    "\tret;\n"
    "}\n";

#include "case_common.h"

int main(void)
{
    CUdevice device;
    CUcontext context;
    CUmodule module, custom;
    CUfunction fill, kernel;
    CUdeviceptr counts, scale, hits;
    size_t counts_size = 0, scale_size = 0, free_before, free_loaded, free_after, total;

    CHECK(cuInit(0));
    CHECK(cuDeviceGet(&device, 0));
    CHECK(cuCtxCreate(&context, 0, device));
    CHECK(cuMemGetInfo(&free_before, &total));

    CHECK(cuModuleLoadData(&module, globals_ptx));
    CHECK(cuMemGetInfo(&free_loaded, &total));
    check_that("variables_are_charged_to_the_lease", free_before - free_loaded == 68, "68 bytes");
    check("get_global", cuModuleGetGlobal(&counts, &counts_size, module, "counts"), CUDA_SUCCESS);
    check("get_constant", cuModuleGetGlobal(&scale, &scale_size, module, "scale"), CUDA_SUCCESS);
    check_that("sizes", counts_size == 64 && scale_size == 4, "64 and 4 bytes");
    CUdeviceptr again = 0;
    check("get_global_again_without_size", cuModuleGetGlobal(&again, NULL, module, "counts"), CUDA_SUCCESS);
    check_that("same_address_again", again == counts, "same address");
    check("get_global_without_outputs", cuModuleGetGlobal(NULL, NULL, module, "scale"), CUDA_SUCCESS);
    check("get_global_unknown_name", cuModuleGetGlobal(&again, NULL, module, "no_such_variable"), CUDA_ERROR_NOT_FOUND);
    check("get_global_null_name", cuModuleGetGlobal(&again, NULL, module, NULL), CUDA_ERROR_INVALID_VALUE);
    check("get_global_bad_module", cuModuleGetGlobal(&again, NULL, (CUmodule)0x1234, "counts"), CUDA_ERROR_INVALID_HANDLE);

    float value = 0;
    check("read_initialized_constant", cuMemcpyDtoH(&value, scale, sizeof value), CUDA_SUCCESS);
    check_that("constant_holds_its_initializer", value == 2.5f, "2.5");

    int host[16], back[16];
    for (int i = 0; i < 16; i++) {
        host[i] = i * i;
    }
    check("copy_to_variable", cuMemcpyHtoD(counts, host, sizeof host), CUDA_SUCCESS);
    check("copy_from_variable", cuMemcpyDtoH(back, counts, sizeof back), CUDA_SUCCESS);
    check_that("variable_round_trips", memcmp(host, back, sizeof host) == 0, "16 ints");
    check("copy_past_the_variable", cuMemcpyHtoD(counts + 32, host, 40), CUDA_ERROR_INVALID_VALUE);
    check("copy_from_past_the_variable", cuMemcpyDtoH(back, counts + 4, 64), CUDA_ERROR_INVALID_VALUE);
    check("memset_inside_the_variable", cuMemsetD32(counts + 60, 7, 1), CUDA_SUCCESS);

    CUdeviceptr base = 0;
    size_t range = 0;
    check("address_range_of_a_variable", cuMemGetAddressRange_v2(&base, &range, counts + 8), CUDA_SUCCESS);
    check_that("address_range_is_the_variable", base == counts && range == 64, "its base and size");
    check("free_a_variable", cuMemFree(counts), CUDA_ERROR_INVALID_VALUE);

    /* The module's kernel writes the variable through its address (16 of the 32 threads; the rest are past n). */
    CHECK(cuModuleGetFunction(&fill, module, "fill_f32"));
    unsigned long long n = 16;
    float three = 3.0f;
    void *params[] = { &n, &three, &counts };
    check("launch_into_the_variable", cuLaunchKernel(fill, 1, 1, 1, 32, 1, 1, 0, NULL, params, NULL), CUDA_SUCCESS);
    check("synchronize_after_the_launch", cuCtxSynchronize(), CUDA_SUCCESS);
    float filled[16];
    CHECK(cuMemcpyDtoH(filled, counts, sizeof filled));
    int wrong = 0;
    for (int i = 0; i < 16; i++) {
        wrong += filled[i] != 3.0f;
    }
    check_that("kernel_wrote_the_variable", wrong == 0, "16 floats of 3.0");

    CHECK(cuModuleUnload(module));
    CHECK(cuMemGetInfo(&free_after, &total));
    check_that("unload_gives_the_memory_back", free_after == free_before, "all of it");
    check("copy_to_a_variable_of_an_unloaded_module", cuMemcpyHtoD(counts, host, 4), CUDA_ERROR_INVALID_VALUE);

    /* A kernel of the program's own that counts its threads in its module's variable (the PTX engine runs it). */
    check("load_module_with_a_custom_kernel", cuModuleLoadData(&custom, custom_ptx), CUDA_SUCCESS);
    check("get_its_variable", cuModuleGetGlobal(&hits, NULL, custom, "hits"), CUDA_SUCCESS);
    check("get_its_kernel", cuModuleGetFunction(&kernel, custom, "my_custom_kernel"), CUDA_SUCCESS);
    void *custom_params[] = { &hits };
    check("launch_the_custom_kernel", cuLaunchKernel(kernel, 1, 1, 1, 32, 1, 1, 0, NULL, custom_params, NULL), CUDA_SUCCESS);
    check("synchronize_after_the_custom_kernel", cuCtxSynchronize(), CUDA_SUCCESS);
    unsigned int hit_count = 0;
    check("read_the_variable_it_counted_in", cuMemcpyDtoH(&hit_count, hits, 4), CUDA_SUCCESS);
    check_that("every_thread_counted", hit_count == 32, "32 threads");
    CHECK(cuModuleUnload(custom));

    CHECK(cuCtxDestroy(context));
    printf("module_globals: %d cases, %d mismatches\n", cases, mismatches);
    verdict(mismatches == 0, mismatches == 0 ? "every case got the driver's result" : "some cases got another result");
    return 0;
}
