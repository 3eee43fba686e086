/*
 * driver_extras: the driver API beyond the basics, as nvcc-built programs reach for it, through the shim, for
 * tests/GpuPool.IntegrationTests/Shim (EntryPointTests). Context limits and cache configuration, function
 * attributes and the launch check of dynamic shared memory, pitched allocations with 2D and 3D copies (padding
 * checked on both sides), 2D memsets, host memory registration, pointer attributes, host functions and stream
 * callbacks in stream order, stream-ordered allocation, PCI bus ids, peers, events with flags, cuLaunchKernelEx,
 * the per-thread default stream names, and every call without a meaning across the network returning
 * CUDA_ERROR_NOT_SUPPORTED. One line per case ("case NAME: RESULT ok" or "... MISMATCH"), then the verdict; exits 0
 * only when every case got its expected result.
 *
 *   driver_extras kernels.ptx
 */
#define _GNU_SOURCE
#define SAMPLE_NAME "driver_extras"
#include "sample_common.h"

#include <time.h>

/* Linked as a program built with nvcc --default-stream per-thread would be. */
CUresult CUDAAPI cuMemcpy2D_v2_ptds(const CUDA_MEMCPY2D *pCopy);
CUresult CUDAAPI cuLaunchHostFunc_ptsz(CUstream hStream, CUhostFn fn, void *userData);
CUresult CUDAAPI cuStreamSynchronize_ptsz(CUstream hStream);

#include "case_common.h"

static void sleep_ms(long ms)
{
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&t, NULL);
}

static unsigned int float_bits(float f)
{
    unsigned int u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static int all_equal(const float *v, size_t n, float want)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] != want) {
            return 0;
        }
    }
    return 1;
}

/* ---- Host functions and stream callbacks ---- */

struct ordering {
    float *host;         /* pinned memory a copy before the function fills */
    size_t n;
    volatile int saw_copy;
    volatile int done;
};

/* Runs after the copy into host, before the copy out of it: checks the first, then writes what the second sends. */
static void CUDA_CB first_host_function(void *user)
{
    struct ordering *o = (struct ordering *)user;
    o->saw_copy = all_equal(o->host, o->n, 7.0f);
    sleep_ms(200); /* the copy queued after this function must still wait */
    for (size_t i = 0; i < o->n; i++) {
        o->host[i] = 42.0f;
    }
    o->done = 1;
}

struct callback_seen {
    volatile int ran;
    CUresult status;
    CUstream stream;
};

static void CUDA_CB record_callback(CUstream stream, CUresult status, void *user)
{
    struct callback_seen *seen = (struct callback_seen *)user;
    seen->status = status;
    seen->stream = stream;
    seen->ran = 1;
}

static int order_log[8];
static volatile int order_count;

static void CUDA_CB append_order(void *user)
{
    order_log[order_count++] = (int)(size_t)user;
}

static volatile int flag_host_function;

static void CUDA_CB set_flag(void *user)
{
    (void)user;
    flag_host_function = 1;
}

/* A callback that breaks the rule and calls CUDA: each call must fail with CUDA_ERROR_NOT_PERMITTED, not deadlock. */
static CUresult inside_synchronize = CUDA_SUCCESS, inside_memset = CUDA_SUCCESS, inside_alloc = CUDA_SUCCESS;
static CUdeviceptr inside_target;

static void CUDA_CB callback_calling_cuda(CUstream stream, CUresult status, void *user)
{
    (void)status;
    (void)user;
    CUdeviceptr scratch;
    inside_synchronize = cuStreamSynchronize(stream);
    inside_memset = cuMemsetD8Async(inside_target, 0, 16, stream);
    inside_alloc = cuMemAlloc(&scratch, 16);
}

int main(int argc, char **argv)
{
    const char *ptx_path = kernels_path(argc, argv);
    CUcontext ctx = open_device();
    CUdevice device;
    CHECK(cuCtxGetDevice(&device));
    CUmodule module;
    CUfunction fill;
    CHECK(cuModuleLoad(&module, ptx_path));
    CHECK(cuModuleGetFunction(&fill, module, "fill_f32"));
    CUstream s;
    CHECK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));

    /* ---- Context limits and configuration ---- */
    size_t limit = 0;
    CHECK(cuCtxGetLimit(&limit, CU_LIMIT_STACK_SIZE));
    check_that("limit_stack_size_default", limit == 1024, "1024 bytes of stack per thread");
    CHECK(cuCtxGetLimit(&limit, CU_LIMIT_PRINTF_FIFO_SIZE));
    check_that("limit_printf_fifo_default", limit == (1u << 20), "1 MiB printf FIFO");
    CHECK(cuCtxGetLimit(&limit, CU_LIMIT_MALLOC_HEAP_SIZE));
    check_that("limit_malloc_heap_default", limit == (8u << 20), "8 MiB malloc heap");
    check("limit_set", cuCtxSetLimit(CU_LIMIT_STACK_SIZE, 4096), CUDA_SUCCESS);
    CHECK(cuCtxGetLimit(&limit, CU_LIMIT_STACK_SIZE));
    check_that("limit_remembered", limit == 4096, "4096 read back");
    check("limit_of_cig_contexts", cuCtxGetLimit(&limit, CU_LIMIT_SHMEM_SIZE), CUDA_ERROR_UNSUPPORTED_LIMIT);
    CUcontext other_ctx, popped;
    CHECK(cuCtxCreate(&other_ctx, 0, device));
    CHECK(cuCtxGetLimit(&limit, CU_LIMIT_STACK_SIZE));
    check_that("limit_per_context", limit == 1024, "a new context has the default");
    CHECK(cuCtxDestroy(other_ctx));
    CHECK(cuCtxGetCurrent(&popped));
    if (popped != ctx) {
        CHECK(cuCtxSetCurrent(ctx));
    }
    CUfunc_cache cache = CU_FUNC_CACHE_PREFER_NONE;
    check("cache_config_set", cuCtxSetCacheConfig(CU_FUNC_CACHE_PREFER_SHARED), CUDA_SUCCESS);
    CHECK(cuCtxGetCacheConfig(&cache));
    check_that("cache_config_remembered", cache == CU_FUNC_CACHE_PREFER_SHARED, "PREFER_SHARED read back");
    CUsharedconfig banks = CU_SHARED_MEM_CONFIG_DEFAULT_BANK_SIZE;
    check("shared_mem_config_set", cuCtxSetSharedMemConfig(CU_SHARED_MEM_CONFIG_EIGHT_BYTE_BANK_SIZE), CUDA_SUCCESS);
    CHECK(cuCtxGetSharedMemConfig(&banks));
    check_that("shared_mem_config_four_byte_banks", banks == CU_SHARED_MEM_CONFIG_FOUR_BYTE_BANK_SIZE, "four-byte banks");
    unsigned long long id = 0, id_again = 0;
    CHECK(cuCtxGetId(NULL, &id));
    CHECK(cuCtxGetId(ctx, &id_again));
    check_that("context_id", id != 0 && id == id_again, "a stable id");
    check("reset_persisting_l2", cuCtxResetPersistingL2Cache(), CUDA_SUCCESS);

    /* ---- Function attributes: the dynamic shared memory limit is what the launch check uses ---- */
    enum { N = 4096 };
    unsigned long long n = N;
    float five = 5.0f;
    CUdeviceptr filled;
    CHECK(cuMemAlloc(&filled, N * sizeof(float)));
    void *fill_params[] = { &n, &five, &filled };
    int optin = 0;
    CHECK(cuDeviceGetAttribute(&optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device));
    check("func_cache_config", cuFuncSetCacheConfig(fill, CU_FUNC_CACHE_PREFER_L1), CUDA_SUCCESS);
    check("func_shared_mem_config", cuFuncSetSharedMemConfig(fill, CU_SHARED_MEM_CONFIG_FOUR_BYTE_BANK_SIZE), CUDA_SUCCESS);
    check("func_dynamic_shared_above_optin", cuFuncSetAttribute(fill, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, optin + 1), CUDA_ERROR_INVALID_VALUE);
    check("func_dynamic_shared_zero", cuFuncSetAttribute(fill, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 0), CUDA_SUCCESS);
    check("launch_beyond_the_function_limit", cuLaunchKernel(fill, 1, 1, 1, 128, 1, 1, 1024, NULL, fill_params, NULL), CUDA_ERROR_INVALID_VALUE);
    check("func_dynamic_shared_4k", cuFuncSetAttribute(fill, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 4096), CUDA_SUCCESS);
    check("launch_within_the_function_limit", cuLaunchKernel(fill, blocks_for(N, 128), 1, 1, 128, 1, 1, 1024, NULL, fill_params, NULL), CUDA_SUCCESS);
    check("func_carveout", cuFuncSetAttribute(fill, CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT, 50), CUDA_SUCCESS);
    check("func_carveout_out_of_range", cuFuncSetAttribute(fill, CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT, 101), CUDA_ERROR_INVALID_VALUE);
    check("func_attribute_read_only", cuFuncSetAttribute(fill, CU_FUNC_ATTRIBUTE_NUM_REGS, 16), CUDA_ERROR_INVALID_VALUE);
    CHECK(cuCtxSynchronize());

    /* ---- Pitched allocation and 2D copies ---- */
    const size_t W = 100, H = 37;
    CUdeviceptr pitched;
    size_t pitch = 0;
    check("alloc_pitch", cuMemAllocPitch(&pitched, &pitch, W, H, 4), CUDA_SUCCESS);
    printf("pitch for %zu-byte rows: %zu\n", W, pitch);
    check_that("alloc_pitch_rounds_up", pitch >= W && pitch % 32 == 0, "a pitch that holds a row, a multiple of 32");
    CHECK(cuMemsetD8(pitched, 0xAB, pitch * H));
    unsigned char *src = (unsigned char *)malloc(W * H);
    for (size_t i = 0; i < W * H; i++) {
        src[i] = (unsigned char)(i * 7 + 3);
    }
    CUDA_MEMCPY2D up;
    memset(&up, 0, sizeof up);
    up.srcMemoryType = CU_MEMORYTYPE_HOST;
    up.srcHost = src;
    up.srcPitch = W;
    up.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    up.dstDevice = pitched;
    up.dstPitch = pitch;
    up.WidthInBytes = W;
    up.Height = H;
    check("copy2d_host_to_pitched", cuMemcpy2D(&up), CUDA_SUCCESS);
    unsigned char *linear = (unsigned char *)malloc(pitch * H);
    CHECK(cuMemcpyDtoH(linear, pitched, pitch * H));
    int rows_ok = 1;
    for (size_t y = 0; y < H; y++) {
        for (size_t x = 0; x < pitch; x++) {
            unsigned char want = x < W ? src[y * W + x] : 0xAB;
            rows_ok &= linear[y * pitch + x] == want;
        }
    }
    check_that("copy2d_rows_land_and_device_padding_untouched", rows_ok, "rows at the pitch, padding still 0xAB");

    const size_t HP = 128;
    unsigned char *back = (unsigned char *)malloc(HP * H);
    memset(back, 0xCD, HP * H);
    CUDA_MEMCPY2D down;
    memset(&down, 0, sizeof down);
    down.srcMemoryType = CU_MEMORYTYPE_DEVICE;
    down.srcDevice = pitched;
    down.srcPitch = pitch;
    down.dstMemoryType = CU_MEMORYTYPE_HOST;
    down.dstHost = back;
    down.dstPitch = HP;
    down.WidthInBytes = W;
    down.Height = H;
    check("copy2d_pitched_to_host", cuMemcpy2D(&down), CUDA_SUCCESS);
    int back_ok = 1;
    for (size_t y = 0; y < H; y++) {
        for (size_t x = 0; x < HP; x++) {
            back_ok &= back[y * HP + x] == (x < W ? src[y * W + x] : 0xCD);
        }
    }
    check_that("copy2d_round_trip_and_host_padding_untouched", back_ok, "rows back at a 128-byte pitch, host padding still 0xCD");

    /* A sub-rectangle: 20 bytes from x = 10 of rows 5..11, into a tight buffer. */
    unsigned char sub[20 * 7];
    CUDA_MEMCPY2D part = down;
    part.srcXInBytes = 10;
    part.srcY = 5;
    part.dstHost = sub;
    part.dstPitch = 20;
    part.WidthInBytes = 20;
    part.Height = 7;
    check("copy2d_sub_rectangle", cuMemcpy2DUnaligned(&part), CUDA_SUCCESS);
    int sub_ok = 1;
    for (size_t y = 0; y < 7; y++) {
        for (size_t x = 0; x < 20; x++) {
            sub_ok &= sub[y * 20 + x] == src[(y + 5) * W + x + 10];
        }
    }
    check_that("copy2d_sub_rectangle_bytes", sub_ok, "the rectangle's bytes");

    CUdeviceptr pitched2;
    size_t pitch2 = 0;
    CHECK(cuMemAllocPitch(&pitched2, &pitch2, W, H, 4));
    CUDA_MEMCPY2D d2d;
    memset(&d2d, 0, sizeof d2d);
    d2d.srcMemoryType = CU_MEMORYTYPE_DEVICE;
    d2d.srcDevice = pitched;
    d2d.srcPitch = pitch;
    d2d.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    d2d.dstDevice = pitched2;
    d2d.dstPitch = pitch2;
    d2d.WidthInBytes = W;
    d2d.Height = H;
    check("copy2d_device_to_device", cuMemcpy2D(&d2d), CUDA_SUCCESS);
    /* A device-to-device copy returns once queued on the NULL stream, and the shim does not give the legacy NULL
     * stream its implicit ordering with other streams (docs/shim.md, Limits): order the read on s explicitly. */
    CHECK(cuCtxSynchronize());
    unsigned char *pinned_rows;
    CHECK(cuMemAllocHost((void **)&pinned_rows, W * H));
    memset(pinned_rows, 0, W * H);
    CUDA_MEMCPY2D down_async = down;
    down_async.srcDevice = pitched2;
    down_async.srcPitch = pitch2;
    down_async.dstHost = pinned_rows;
    down_async.dstPitch = W;
    check("copy2d_async_into_pinned_memory", cuMemcpy2DAsync(&down_async, s), CUDA_SUCCESS);
    CHECK(cuStreamSynchronize(s));
    check_that("copy2d_device_to_device_bytes", memcmp(pinned_rows, src, W * H) == 0, "the rows, through a second pitched allocation");

    /* Rows contiguous on both sides: one copy, through the per-thread default stream name. */
    CUdeviceptr tight;
    CHECK(cuMemAlloc(&tight, W * H));
    CUDA_MEMCPY2D contiguous = up;
    contiguous.dstDevice = tight;
    contiguous.dstPitch = W;
    check("copy2d_contiguous_ptds", cuMemcpy2D_v2_ptds(&contiguous), CUDA_SUCCESS);
    memset(linear, 0, W * H);
    CHECK(cuMemcpyDtoH(linear, tight, W * H));
    check_that("copy2d_contiguous_bytes", memcmp(linear, src, W * H) == 0, "one contiguous copy");

    /* ---- 3D copies: slices with padded rows and padded heights ---- */
    const size_t W3 = 24, H3 = 5, D3 = 4, P3 = 32, HH3 = 7;
    CUdeviceptr volume;
    CHECK(cuMemAlloc(&volume, P3 * HH3 * D3));
    CHECK(cuMemsetD8(volume, 0xEE, P3 * HH3 * D3));
    unsigned char *src3 = (unsigned char *)malloc(W3 * H3 * D3);
    for (size_t i = 0; i < W3 * H3 * D3; i++) {
        src3[i] = (unsigned char)(i * 13 + 1);
    }
    CUDA_MEMCPY3D c3;
    memset(&c3, 0, sizeof c3);
    c3.srcMemoryType = CU_MEMORYTYPE_HOST;
    c3.srcHost = src3;
    c3.srcPitch = W3;
    c3.srcHeight = H3;
    c3.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    c3.dstDevice = volume;
    c3.dstPitch = P3;
    c3.dstHeight = HH3;
    c3.WidthInBytes = W3;
    c3.Height = H3;
    c3.Depth = D3;
    check("copy3d_host_to_device", cuMemcpy3D(&c3), CUDA_SUCCESS);
    unsigned char *vol = (unsigned char *)malloc(P3 * HH3 * D3);
    CHECK(cuMemcpyDtoH(vol, volume, P3 * HH3 * D3));
    int vol_ok = 1;
    for (size_t z = 0; z < D3; z++) {
        for (size_t y = 0; y < HH3; y++) {
            for (size_t x = 0; x < P3; x++) {
                unsigned char want = (x < W3 && y < H3) ? src3[(z * H3 + y) * W3 + x] : 0xEE;
                vol_ok &= vol[(z * HH3 + y) * P3 + x] == want;
            }
        }
    }
    check_that("copy3d_slices_land_and_padding_untouched", vol_ok, "rows and slices at their pitches, padding still 0xEE");
    unsigned char *pinned3;
    CHECK(cuMemAllocHost((void **)&pinned3, W3 * H3 * D3));
    memset(pinned3, 0, W3 * H3 * D3);
    CUDA_MEMCPY3D b3;
    memset(&b3, 0, sizeof b3);
    b3.srcMemoryType = CU_MEMORYTYPE_DEVICE;
    b3.srcDevice = volume;
    b3.srcPitch = P3;
    b3.srcHeight = HH3;
    b3.dstMemoryType = CU_MEMORYTYPE_HOST;
    b3.dstHost = pinned3;
    b3.dstPitch = W3;
    b3.dstHeight = H3;
    b3.WidthInBytes = W3;
    b3.Height = H3;
    b3.Depth = D3;
    check("copy3d_async_device_to_host", cuMemcpy3DAsync(&b3, s), CUDA_SUCCESS);
    CHECK(cuStreamSynchronize(s));
    check_that("copy3d_round_trip", memcmp(pinned3, src3, W3 * H3 * D3) == 0, "the volume back, tight");

    /* ---- 2D memsets ---- */
    check("memset2d_d8", cuMemsetD2D8(pitched + 3, pitch, 0x11, 10, 4), CUDA_SUCCESS);
    CHECK(cuMemcpyDtoH(linear, pitched, pitch * H));
    int rect_ok = 1;
    for (size_t y = 0; y < H; y++) {
        for (size_t x = 0; x < pitch; x++) {
            int inside = y < 4 && x >= 3 && x < 13;
            unsigned char before = x < W ? src[y * W + x] : 0xAB;
            rect_ok &= linear[y * pitch + x] == (inside ? 0x11 : before);
        }
    }
    check_that("memset2d_d8_only_the_rectangle", rect_ok, "a 10 x 4 rectangle set, the rest untouched");
    CUdeviceptr words;
    size_t word_pitch = 0;
    CHECK(cuMemAllocPitch(&words, &word_pitch, 64, 8, 4));
    CHECK(cuMemsetD8(words, 0, word_pitch * 8));
    check("memset2d_d32_async", cuMemsetD2D32Async(words, word_pitch, 0xDEADBEEF, 16, 8, s), CUDA_SUCCESS);
    CHECK(cuStreamSynchronize(s)); /* s does not block on the default stream, where the next memset goes */
    check("memset2d_d16", cuMemsetD2D16(words + word_pitch * 7, word_pitch, 0x1234, 32, 1), CUDA_SUCCESS);
    unsigned int *word_rows = (unsigned int *)malloc(word_pitch * 8);
    CHECK(cuMemcpyDtoH(word_rows, words, word_pitch * 8));
    int words_ok = 1;
    for (size_t y = 0; y < 8; y++) {
        const unsigned int *row = (const unsigned int *)((const unsigned char *)word_rows + y * word_pitch);
        for (size_t x = 0; x < word_pitch / 4; x++) {
            unsigned int want = x >= 16 ? 0u : (y == 7 ? 0x12341234u : 0xDEADBEEFu);
            words_ok &= row[x] == want;
        }
    }
    check_that("memset2d_d32_and_d16_values", words_ok, "16 words a row, the last row in 16-bit halves");

    /* ---- Host memory registration ---- */
    const size_t RB = 64 * 1024;
    unsigned char *reg = (unsigned char *)aligned_alloc(4096, RB);
    unsigned char *unregistered = (unsigned char *)aligned_alloc(4096, 4096);
    CUdeviceptr dreg;
    CHECK(cuMemAlloc(&dreg, RB));
    check("host_register", cuMemHostRegister(reg, RB, CU_MEMHOSTREGISTER_PORTABLE), CUDA_SUCCESS);
    unsigned int host_flags = 99;
    check("host_get_flags", cuMemHostGetFlags(&host_flags, reg + 100), CUDA_SUCCESS);
    check_that("host_get_flags_value", host_flags == CU_MEMHOSTREGISTER_PORTABLE, "the registration's flags");
    check("host_register_overlap", cuMemHostRegister(reg + 4096, 4096, 0), CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
    CHECK(cuMemsetD8(dreg, 0x5A, RB));
    memset(reg, 0, RB);
    check("copy_async_into_registered_memory", cuMemcpyDtoHAsync(reg, dreg, RB, s), CUDA_SUCCESS);
    CHECK(cuStreamSynchronize(s));
    int reg_ok = 1;
    for (size_t i = 0; i < RB; i++) {
        reg_ok &= reg[i] == 0x5A;
    }
    check_that("registered_memory_received_the_copy", reg_ok, "every byte after the synchronize");
    for (size_t i = 0; i < RB; i++) {
        reg[i] = (unsigned char)i;
    }
    CHECK(cuMemcpyHtoDAsync(dreg, reg, RB, s));
    CHECK(cuStreamSynchronize(s));
    unsigned char *reg_back = (unsigned char *)malloc(RB);
    CHECK(cuMemcpyDtoH(reg_back, dreg, RB));
    check_that("copy_from_registered_memory", memcmp(reg_back, reg, RB) == 0, "the bytes on the device");
    check("host_register_devicemap", cuMemHostRegister(unregistered, 4096, CU_MEMHOSTREGISTER_DEVICEMAP), CUDA_ERROR_NOT_SUPPORTED);
    CUdeviceptr mapped = 0;
    check("host_get_device_pointer", cuMemHostGetDevicePointer(&mapped, reg, 0), CUDA_ERROR_NOT_SUPPORTED);

    /* ---- Pointer attributes ---- */
    CUdeviceptr da, db;
    CHECK(cuMemAlloc(&da, 1000));
    CHECK(cuMemAlloc(&db, 16));
    unsigned int memory_type = 0;
    check("pointer_device_memory_type", cuPointerGetAttribute(&memory_type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, da + 16), CUDA_SUCCESS);
    check_that("pointer_device_is_device", memory_type == CU_MEMORYTYPE_DEVICE, "CU_MEMORYTYPE_DEVICE");
    CUdeviceptr device_pointer = 0, range_start = 0;
    size_t range_size = 0;
    CUcontext owner = NULL;
    unsigned long long buffer_a = 0, buffer_b = 0;
    unsigned int managed = 7, is_mapped = 7;
    int ordinal = 7;
    CHECK(cuPointerGetAttribute(&device_pointer, CU_POINTER_ATTRIBUTE_DEVICE_POINTER, da + 16));
    CHECK(cuPointerGetAttribute(&range_start, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, da + 16));
    CHECK(cuPointerGetAttribute(&range_size, CU_POINTER_ATTRIBUTE_RANGE_SIZE, da + 16));
    CHECK(cuPointerGetAttribute(&owner, CU_POINTER_ATTRIBUTE_CONTEXT, da));
    CHECK(cuPointerGetAttribute(&buffer_a, CU_POINTER_ATTRIBUTE_BUFFER_ID, da));
    CHECK(cuPointerGetAttribute(&buffer_b, CU_POINTER_ATTRIBUTE_BUFFER_ID, db));
    CHECK(cuPointerGetAttribute(&managed, CU_POINTER_ATTRIBUTE_IS_MANAGED, da));
    CHECK(cuPointerGetAttribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, da));
    CHECK(cuPointerGetAttribute(&is_mapped, CU_POINTER_ATTRIBUTE_MAPPED, da));
    check_that("pointer_device_attributes",
               device_pointer == da + 16 && range_start == da && range_size == 1000 && owner == ctx && managed == 0 && ordinal == 0 && is_mapped == 1,
               "pointer, range, context, not managed, device 0, mapped");
    check_that("pointer_buffer_ids", buffer_a != 0 && buffer_b != 0 && buffer_a != buffer_b, "one id per allocation");
    void *host_pointer = NULL;
    check("pointer_device_has_no_host_pointer", cuPointerGetAttribute(&host_pointer, CU_POINTER_ATTRIBUTE_HOST_POINTER, da), CUDA_ERROR_INVALID_VALUE);
    memory_type = 0;
    CHECK(cuPointerGetAttribute(&memory_type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, (CUdeviceptr)(size_t)(pinned_rows + 8)));
    CHECK(cuPointerGetAttribute(&host_pointer, CU_POINTER_ATTRIBUTE_HOST_POINTER, (CUdeviceptr)(size_t)(pinned_rows + 8)));
    check_that("pointer_host_attributes", memory_type == CU_MEMORYTYPE_HOST && host_pointer == pinned_rows + 8, "CU_MEMORYTYPE_HOST, its own address");
    CHECK(cuPointerGetAttribute(&memory_type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, (CUdeviceptr)(size_t)reg));
    check_that("pointer_registered_is_host", memory_type == CU_MEMORYTYPE_HOST, "registered memory is host memory");
    check("pointer_host_has_no_device_pointer", cuPointerGetAttribute(&device_pointer, CU_POINTER_ATTRIBUTE_DEVICE_POINTER, (CUdeviceptr)(size_t)pinned_rows), CUDA_ERROR_INVALID_VALUE);
    int on_stack = 0;
    CUdeviceptr unknown = (CUdeviceptr)(size_t)&on_stack;
    check("pointer_unknown_memory_type", cuPointerGetAttribute(&memory_type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, unknown), CUDA_ERROR_INVALID_VALUE);
    is_mapped = 7;
    check("pointer_unknown_mapped", cuPointerGetAttribute(&is_mapped, CU_POINTER_ATTRIBUTE_MAPPED, unknown), CUDA_SUCCESS);
    check_that("pointer_unknown_not_mapped", is_mapped == 0, "not mapped");
    CUpointer_attribute several[] = { CU_POINTER_ATTRIBUTE_MEMORY_TYPE, CU_POINTER_ATTRIBUTE_DEVICE_POINTER, CU_POINTER_ATTRIBUTE_IS_MANAGED, CU_POINTER_ATTRIBUTE_RANGE_SIZE };
    memory_type = 7;
    device_pointer = 7;
    managed = 7;
    range_size = 7;
    void *values[] = { &memory_type, &device_pointer, &managed, &range_size };
    check("pointer_attributes_of_unknown", cuPointerGetAttributes(4, several, values, unknown), CUDA_SUCCESS);
    check_that("pointer_attributes_of_unknown_are_zero", memory_type == 0 && device_pointer == 0 && managed == 0 && range_size == 0, "zeros");
    check("pointer_attributes_of_device", cuPointerGetAttributes(4, several, values, db), CUDA_SUCCESS);
    check_that("pointer_attributes_of_device_values", memory_type == CU_MEMORYTYPE_DEVICE && device_pointer == db && managed == 0 && range_size == 16, "device, itself, not managed, 16 bytes");
    check("host_unregister", cuMemHostUnregister(reg), CUDA_SUCCESS);
    check("host_unregister_twice", cuMemHostUnregister(reg), CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED);
    check("pointer_unregistered_memory", cuPointerGetAttribute(&memory_type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, (CUdeviceptr)(size_t)reg), CUDA_ERROR_INVALID_VALUE);

    /* ---- Host functions and stream callbacks, between asynchronous copies ---- */
    float *pinned;
    CHECK(cuMemAllocHost((void **)&pinned, N * sizeof(float)));
    CUdeviceptr d_in, d_out;
    CHECK(cuMemAlloc(&d_in, N * sizeof(float)));
    CHECK(cuMemAlloc(&d_out, N * sizeof(float)));
    struct ordering o = { pinned, N, 0, 0 };
    struct callback_seen seen = { 0, CUDA_ERROR_UNKNOWN, NULL };
    CHECK(cuMemsetD32Async(d_in, float_bits(7.0f), N, s));
    CHECK(cuMemcpyDtoHAsync(pinned, d_in, N * sizeof(float), s));
    check("launch_host_func", cuLaunchHostFunc(s, first_host_function, &o), CUDA_SUCCESS);
    check("query_while_host_func_pending", cuStreamQuery(s), CUDA_ERROR_NOT_READY);
    check("copy_after_host_func", cuMemcpyHtoDAsync(d_out, pinned, N * sizeof(float), s), CUDA_SUCCESS);
    check_that("copy_after_host_func_waited_for_it", o.done, "queued only once the function had returned");
    check("stream_callback", cuStreamAddCallback(s, record_callback, &seen, 0), CUDA_SUCCESS);
    check("synchronize_after_callbacks", cuStreamSynchronize(s), CUDA_SUCCESS);
    check_that("host_func_saw_the_copy_before_it", o.saw_copy, "the bytes of the copy queued before it");
    float *out = (float *)malloc(N * sizeof(float));
    CHECK(cuMemcpyDtoH(out, d_out, N * sizeof(float)));
    check_that("copy_after_host_func_sent_what_it_wrote", all_equal(out, N, 42.0f), "42s, written by the function");
    check_that("stream_callback_ran", seen.ran && seen.status == CUDA_SUCCESS && seen.stream == s, "CUDA_SUCCESS, its stream");
    check("query_after_callbacks", cuStreamQuery(s), CUDA_SUCCESS);

    for (int i = 1; i <= 3; i++) {
        CHECK(cuLaunchHostFunc(s, append_order, (void *)(size_t)i));
    }
    CHECK(cuLaunchHostFunc(NULL, append_order, (void *)(size_t)4));
    CHECK(cuCtxSynchronize());
    check_that("host_funcs_in_order", order_count == 4 && order_log[0] == 1 && order_log[1] == 2 && order_log[2] == 3 && order_log[3] == 4, "1 2 3 on the stream, then 4 on the default stream");
    check("host_func_ptsz", cuLaunchHostFunc_ptsz(NULL, append_order, (void *)(size_t)5), CUDA_SUCCESS);
    CHECK(cuStreamSynchronize_ptsz(NULL));
    check_that("host_func_ptsz_ran", order_count == 5 && order_log[4] == 5, "through the per-thread name");

    inside_target = d_in;
    check("callback_calling_cuda", cuStreamAddCallback(s, callback_calling_cuda, NULL, 0), CUDA_SUCCESS);
    check("synchronize_after_callback_calling_cuda", cuStreamSynchronize(s), CUDA_SUCCESS);
    check("callback_synchronize_not_permitted", inside_synchronize, CUDA_ERROR_NOT_PERMITTED);
    check("callback_memset_not_permitted", inside_memset, CUDA_ERROR_NOT_PERMITTED);
    check("callback_alloc_not_permitted", inside_alloc, CUDA_ERROR_NOT_PERMITTED);

    /* A failure before a callback: the callback gets it, a host function is skipped, the next synchronize reports it once. */
    unsigned long long too_many = 10 * N;
    void *oob_params[] = { &too_many, &five, &filled };
    struct callback_seen failed = { 0, CUDA_SUCCESS, NULL };
    flag_host_function = 0;
    CHECK(cuLaunchKernel(fill, blocks_for(10 * N, 128), 1, 1, 128, 1, 1, 0, s, oob_params, NULL));
    check("callback_after_failure", cuStreamAddCallback(s, record_callback, &failed, 0), CUDA_SUCCESS);
    check("host_func_after_failure", cuLaunchHostFunc(s, set_flag, NULL), CUDA_SUCCESS);
    check("synchronize_reports_the_failure", cuStreamSynchronize(s), CUDA_ERROR_ILLEGAL_ADDRESS);
    check_that("callback_got_the_failure", failed.ran && failed.status == CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS as its status");
    check_that("host_func_skipped_after_failure", flag_host_function == 0, "not called");
    check("synchronize_after_the_report", cuStreamSynchronize(s), CUDA_SUCCESS);

    /* ---- Stream-ordered allocation ---- */
    CUmemoryPool pool = NULL, current = NULL;
    check("default_mem_pool", cuDeviceGetDefaultMemPool(&pool, device), CUDA_SUCCESS);
    CHECK(cuDeviceGetMemPool(&current, device));
    check_that("current_pool_is_default", pool != NULL && current == pool, "the default pool");
    check("set_default_mem_pool", cuDeviceSetMemPool(device, pool), CUDA_SUCCESS);
    cuuint64_t threshold = 1 << 20, read_threshold = 0, used = 0;
    check("pool_release_threshold", cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold), CUDA_SUCCESS);
    CHECK(cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &read_threshold));
    check_that("pool_release_threshold_remembered", read_threshold == threshold, "1 MiB read back");
    CUdeviceptr stream_mem = 0, from_pool = 0;
    check("alloc_async", cuMemAllocAsync(&stream_mem, N * sizeof(float), s), CUDA_SUCCESS);
    CHECK(cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used));
    check_that("pool_counts_the_allocation", used >= N * sizeof(float), "used memory includes it");
    CUmemoryPool owner_pool = NULL;
    CHECK(cuPointerGetAttribute(&owner_pool, CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE, stream_mem));
    check_that("pointer_mempool_handle", owner_pool == pool, "allocated from the default pool");
    void *fill_stream_mem[] = { &n, &five, &stream_mem };
    CHECK(cuLaunchKernel(fill, blocks_for(N, 128), 1, 1, 128, 1, 1, 0, s, fill_stream_mem, NULL));
    memset(pinned, 0, N * sizeof(float));
    CHECK(cuMemcpyDtoHAsync(pinned, stream_mem, N * sizeof(float), s));
    check("free_async", cuMemFreeAsync(stream_mem, s), CUDA_SUCCESS);
    check("synchronize_after_free_async", cuStreamSynchronize(s), CUDA_SUCCESS);
    check_that("work_before_free_async_saw_the_memory", all_equal(pinned, N, 5.0f), "the kernel and the copy queued before the free ran on it");
    check("pointer_after_free_async", cuPointerGetAttribute(&memory_type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, stream_mem), CUDA_ERROR_INVALID_VALUE);
    check("alloc_from_pool_async", cuMemAllocFromPoolAsync(&from_pool, 4096, pool, s), CUDA_SUCCESS);
    check("free_from_pool_async", cuMemFreeAsync(from_pool, s), CUDA_SUCCESS);
    check("pool_trim", cuMemPoolTrimTo(pool, 0), CUDA_SUCCESS);
    check("synchronize_after_pool_work", cuCtxSynchronize(), CUDA_SUCCESS);
    CHECK(cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used));
    check_that("pool_empty_after_frees", used == 0, "nothing in use");

    /* ---- PCI bus id and peers ---- */
    char bus[32] = { 0 };
    check("pci_bus_id", cuDeviceGetPCIBusId(bus, (int)sizeof bus, device), CUDA_SUCCESS);
    printf("PCI bus id: %s\n", bus);
    check_that("pci_bus_id_format", strlen(bus) == 12 && bus[4] == ':' && bus[7] == ':' && bus[10] == '.' && bus[11] == '0', "domain:bus:device.0");
    CUdevice by_bus = -1;
    check("device_by_pci_bus_id", cuDeviceGetByPCIBusId(&by_bus, bus), CUDA_SUCCESS);
    check_that("device_by_pci_bus_id_is_device_0", by_bus == device, "device 0");
    by_bus = -1;
    check("device_by_short_pci_bus_id", cuDeviceGetByPCIBusId(&by_bus, bus + 5), CUDA_SUCCESS);
    check("device_by_other_pci_bus_id", cuDeviceGetByPCIBusId(&by_bus, strcmp(bus, "0000:ff:1f.0") == 0 ? "0000:fe:1f.0" : "0000:ff:1f.0"), CUDA_ERROR_INVALID_DEVICE);
    int can_access = 7;
    check("can_access_peer", cuDeviceCanAccessPeer(&can_access, device, device), CUDA_SUCCESS);
    check_that("no_peer_access", can_access == 0, "0");
    int p2p = 7;
    check("p2p_attribute_same_device", cuDeviceGetP2PAttribute(&p2p, CU_DEVICE_P2P_ATTRIBUTE_ACCESS_SUPPORTED, device, device), CUDA_ERROR_INVALID_DEVICE);
    check("enable_peer_access", cuCtxEnablePeerAccess(ctx, 0), CUDA_ERROR_PEER_ACCESS_UNSUPPORTED);
    check("disable_peer_access", cuCtxDisablePeerAccess(ctx), CUDA_ERROR_PEER_ACCESS_NOT_ENABLED);
    char luid[8];
    unsigned int node_mask = 0;
    check("device_luid", cuDeviceGetLuid(luid, &node_mask, device), CUDA_ERROR_NOT_SUPPORTED);

    /* ---- Events with flags ---- */
    CUevent timed, untimed, blocking;
    CHECK(cuEventCreate(&timed, CU_EVENT_DEFAULT));
    CHECK(cuEventCreate(&untimed, CU_EVENT_DISABLE_TIMING));
    CHECK(cuEventCreate(&blocking, CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING));
    CHECK(cuEventRecord(timed, s));
    CHECK(cuEventRecord(untimed, s));
    check("event_record_with_flags", cuEventRecordWithFlags(blocking, s, 0), CUDA_SUCCESS);
    check("event_blocking_sync", cuEventSynchronize(blocking), CUDA_SUCCESS);
    float ms = 0;
    check("elapsed_time_of_untimed_event", cuEventElapsedTime(&ms, timed, untimed), CUDA_ERROR_INVALID_HANDLE);

    /* ---- cuLaunchKernelEx ---- */
    CUlaunchAttribute attrs[2];
    memset(attrs, 0, sizeof attrs);
    attrs[0].id = CU_LAUNCH_ATTRIBUTE_PRIORITY;
    attrs[0].value.priority = 1;
    attrs[1].id = CU_LAUNCH_ATTRIBUTE_IGNORE;
    CUlaunchConfig config;
    memset(&config, 0, sizeof config);
    config.gridDimX = blocks_for(N, 128);
    config.gridDimY = 1;
    config.gridDimZ = 1;
    config.blockDimX = 128;
    config.blockDimY = 1;
    config.blockDimZ = 1;
    config.hStream = s;
    config.attrs = attrs;
    config.numAttrs = 2;
    float nine = 9.0f;
    void *nine_params[] = { &n, &nine, &filled };
    check("launch_ex", cuLaunchKernelEx(&config, fill, nine_params, NULL), CUDA_SUCCESS);
    CHECK(cuStreamSynchronize(s));
    CHECK(cuMemcpyDtoH(out, filled, N * sizeof(float)));
    check_that("launch_ex_ran", all_equal(out, N, 9.0f), "the kernel's values");
    attrs[0].id = CU_LAUNCH_ATTRIBUTE_COOPERATIVE;
    attrs[0].value.cooperative = 1;
    check("launch_ex_cooperative", cuLaunchKernelEx(&config, fill, nine_params, NULL), CUDA_ERROR_NOT_SUPPORTED);
    attrs[0].id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    attrs[0].value.clusterDim.x = 2;
    attrs[0].value.clusterDim.y = 1;
    attrs[0].value.clusterDim.z = 1;
    check("launch_ex_cluster", cuLaunchKernelEx(&config, fill, nine_params, NULL), CUDA_ERROR_NOT_SUPPORTED);
    check("launch_cooperative_kernel", cuLaunchCooperativeKernel(fill, 1, 1, 1, 128, 1, 1, 0, s, nine_params), CUDA_ERROR_NOT_SUPPORTED);

    /* ---- Entry points by name ---- */
    void *fn = NULL;
    CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    CUresult found = cuGetProcAddress("cuMemAllocAsync", &fn, 11080, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, &status);
    check_that("proc_address_of_cuMemAllocAsync", found == CUDA_SUCCESS && status == CU_GET_PROC_ADDRESS_SUCCESS && fn != NULL, "a function pointer");
    found = cuGetProcAddress("cuLaunchKernelEx", &fn, 11050, 0, &status);
    check_that("proc_address_of_cuLaunchKernelEx_before_11_6", found == CUDA_SUCCESS && status == CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT && fn == NULL, "VERSION_NOT_SUFFICIENT");

    /* ---- No meaning across the network: CUDA_ERROR_NOT_SUPPORTED ---- */
    CUdeviceptr managed_ptr = 0;
    CUipcMemHandle mem_handle;
    CUipcEventHandle event_handle;
    memset(&mem_handle, 0, sizeof mem_handle);
    memset(&event_handle, 0, sizeof event_handle);
    CUevent opened_event = NULL;
    CUgraphicsResource resource = NULL;
    CUarray array = NULL;
    size_t mapped_size = 0;
    int range_value = 0;
    void *range_data[] = { &range_value };
    size_t range_sizes[] = { sizeof range_value };
    CUmem_range_attribute range_attributes[] = { CU_MEM_RANGE_ATTRIBUTE_READ_MOSTLY };
    CUmemLocation location = { CU_MEM_LOCATION_TYPE_DEVICE, 0 };
    check("unsupported_cuMemAllocManaged", cuMemAllocManaged(&managed_ptr, 64, CU_MEM_ATTACH_GLOBAL), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuMemAllocManaged_again", cuMemAllocManaged(&managed_ptr, 64, CU_MEM_ATTACH_GLOBAL), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuMemAdvise", cuMemAdvise(da, 64, CU_MEM_ADVISE_SET_READ_MOSTLY, device), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuMemAdvise_v2", cuMemAdvise_v2(da, 64, CU_MEM_ADVISE_SET_READ_MOSTLY, location), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuMemPrefetchAsync", cuMemPrefetchAsync(da, 64, device, s), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuMemPrefetchAsync_v2", cuMemPrefetchAsync_v2(da, 64, location, 0, s), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuMemRangeGetAttribute", cuMemRangeGetAttribute(&range_value, sizeof range_value, CU_MEM_RANGE_ATTRIBUTE_READ_MOSTLY, da, 64), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuMemRangeGetAttributes", cuMemRangeGetAttributes(range_data, range_sizes, range_attributes, 1, da, 64), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuIpcGetMemHandle", cuIpcGetMemHandle(&mem_handle, da), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuIpcOpenMemHandle", cuIpcOpenMemHandle(&managed_ptr, mem_handle, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuIpcCloseMemHandle", cuIpcCloseMemHandle(da), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuIpcGetEventHandle", cuIpcGetEventHandle(&event_handle, timed), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuIpcOpenEventHandle", cuIpcOpenEventHandle(&opened_event, event_handle), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuGraphicsUnregisterResource", cuGraphicsUnregisterResource(resource), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuGraphicsMapResources", cuGraphicsMapResources(1, &resource, s), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuGraphicsUnmapResources", cuGraphicsUnmapResources(1, &resource, s), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuGraphicsResourceGetMappedPointer", cuGraphicsResourceGetMappedPointer(&managed_ptr, &mapped_size, resource), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuGraphicsSubResourceGetMappedArray", cuGraphicsSubResourceGetMappedArray(&array, resource, 0, 0), CUDA_ERROR_NOT_SUPPORTED);
    check("unsupported_cuGraphicsResourceSetMapFlags", cuGraphicsResourceSetMapFlags(resource, 0), CUDA_ERROR_NOT_SUPPORTED);

    /* ---- The context still works ---- */
    CHECK(cuMemsetD32(filled, float_bits(3.0f), N));
    CHECK(cuMemcpyDtoH(out, filled, N * sizeof(float)));
    check_that("context_still_works", all_equal(out, N, 3.0f), "a memset and a copy after everything above");

    CHECK(cuEventDestroy(timed));
    CHECK(cuEventDestroy(untimed));
    CHECK(cuEventDestroy(blocking));
    CHECK(cuMemFreeHost(pinned));
    CHECK(cuMemFreeHost(pinned_rows));
    CHECK(cuMemFreeHost(pinned3));
    CHECK(cuStreamDestroy(s));
    CHECK(cuModuleUnload(module));
    CHECK(cuCtxDestroy(ctx));
    free(src);
    free(linear);
    free(back);
    free(src3);
    free(vol);
    free(word_rows);
    free(reg);
    free(reg_back);
    free(unregistered);
    free(out);

    printf("driver_extras: %d cases, %d mismatches\n", cases, mismatches);
    verdict(mismatches == 0, mismatches == 0 ? "every case got the driver's answer" : "some cases got a different answer");
    return 0;
}
