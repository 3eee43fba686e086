/*
 * device_printf: a kernel that prints (vprintf, as nvcc writes printf) through the shim, for
 * tests/GpuPool.IntegrationTests/Shim. The program prints a line, launches the kernel (2 blocks of 3 threads, each
 * printing "device BLOCK THREAD"), prints another line before synchronizing, synchronizes and prints a last one: as on
 * CUDA, the device's lines come out at the synchronize, through the program's own stdout, between the second and the
 * last of the program's lines. stdout is left buffered (a pipe, in the tests), so the order is stdio's.
 *
 *   device_printf
 */
#define SAMPLE_NAME "device_printf"
#include "sample_common.h"

static const char hello_ptx[] =
    ".version 7.0\n"
    ".target sm_70\n"
    ".address_size 64\n"
    ".extern .func (.param .b32 func_retval0) vprintf(.param .b64 vprintf_param_0, .param .b64 vprintf_param_1);\n"
    ".global .align 1 .b8 $str[14] = {100, 101, 118, 105, 99, 101, 32, 37, 100, 32, 37, 100, 10, 0};\n"
    ".visible .entry hello(.param .u64 unused)\n"
    "{\n"
    "\t.local .align 8 .b8 __local_depot0[8];\n"
    "\t.reg .b64 %SP;\n"
    "\t.reg .b64 %SPL;\n"
    "\t.reg .b32 %r<4>;\n"
    "\t.reg .b64 %rd<6>;\n"
    "\tmov.u64 %SPL, __local_depot0;\n"
    "\tcvta.local.u64 %SP, %SPL;\n"
    "\tmov.u32 %r1, %ctaid.x;\n"
    "\tmov.u32 %r2, %tid.x;\n"
    "\tadd.u64 %rd1, %SP, 0;\n"
    "\tadd.u64 %rd2, %SPL, 0;\n"
    "\tst.local.u32 [%rd2], %r1;\n"
    "\tst.local.u32 [%rd2+4], %r2;\n"
    "\tmov.u64 %rd3, $str;\n"
    "\tcvta.global.u64 %rd4, %rd3;\n"
    "\t{\n"
    "\t.param .b64 param0;\n"
    "\tst.param.b64 [param0+0], %rd4;\n"
    "\t.param .b64 param1;\n"
    "\tst.param.b64 [param1+0], %rd1;\n"
    "\t.param .b32 retval0;\n"
    "\tcall.uni (retval0), vprintf, (param0, param1);\n"
    "\tld.param.b32 %r3, [retval0+0];\n"
    "\t}\n"
    "\tret;\n"
    "}\n";

int main(void)
{
    CUcontext context = open_device();
    CUmodule module;
    CUfunction hello;
    unsigned long long unused = 0;
    void *params[] = { &unused };

    CHECK(cuModuleLoadData(&module, hello_ptx));
    CHECK(cuModuleGetFunction(&hello, module, "hello"));
    printf("host: before the launch\n");
    CHECK(cuLaunchKernel(hello, 2, 1, 1, 3, 1, 1, 0, NULL, params, NULL));
    printf("host: launched, not yet synchronized\n");
    CHECK(cuCtxSynchronize());
    printf("host: synchronized\n");
    CHECK(cuModuleUnload(module));
    CHECK(cuCtxDestroy(context));
    printf("PASS device_printf\n");
    return 0;
}
