/*
 * bad_input: the shim's answers to bad input, one case per line, for tests/GpuPool.IntegrationTests/Shim.
 * Each line reads "case NAME: RESULT ok" or "case NAME: RESULT MISMATCH (expected WANT)"; the last line counts
 * them. Exits 0 only when every case got its expected result. Built with gcc against native/include and linked
 * with -lcuda (the shim), like the samples.
 *
 *   bad_input kernels.ptx
 */
#define _GNU_SOURCE
#define SAMPLE_NAME "bad_input"
#include "sample_common.h"

#include <pthread.h>
#include <semaphore.h>

#undef cuGetProcAddress
CUresult CUDAAPI cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags);

#include "case_common.h"

/* A thread that makes a context current, waits while the main thread destroys it, then uses it. */
static CUcontext shared_context;
static sem_t context_current, context_destroyed;
static CUresult after_destroy;

static void *use_destroyed_context(void *unused)
{
    (void)unused;
    cuCtxSetCurrent(shared_context);
    sem_post(&context_current);
    sem_wait(&context_destroyed);
    CUdeviceptr p;
    after_destroy = cuMemAlloc(&p, 64);
    return NULL;
}

static void CUDA_CB ignore_callback(CUstream stream, CUresult status, void *user)
{
    (void)stream;
    (void)status;
    (void)user;
}

static void CUDA_CB ignore_host_function(void *user)
{
    (void)user;
}

struct axpy_params {
    unsigned long long n;
    float alpha;
    CUdeviceptr x;
    CUdeviceptr y;
};

int main(int argc, char **argv)
{
    const char *ptx_path = kernels_path(argc, argv);
    int count = 0;
    check("call_before_init", cuDeviceGetCount(&count), CUDA_ERROR_NOT_INITIALIZED);
    check("init_with_flags", cuInit(1), CUDA_ERROR_INVALID_VALUE);
    CHECK(cuInit(0));

    CUdevice device;
    CUcontext ctx;
    int value = 0;
    const char *text = NULL;
    check("device_ordinal_1", cuDeviceGet(&device, 1), CUDA_ERROR_INVALID_DEVICE);
    CHECK(cuDeviceGet(&device, 0));
    check("device_attribute_unknown", cuDeviceGetAttribute(&value, (CUdevice_attribute)9999, device), CUDA_ERROR_INVALID_VALUE);
    CHECK(cuDeviceGetAttribute(&value, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, device));
    check_that("device_attribute_max_threads", value == 1024, "1024 threads per block");
    check("error_name_unknown", cuGetErrorName((CUresult)12345, &text), CUDA_ERROR_INVALID_VALUE);
    CHECK(cuCtxCreate(&ctx, 0, device));

    size_t total = 0;
    CHECK(cuDeviceTotalMem(&total, device));
    CUmodule module;
    CUfunction fill, axpy;
    CHECK(cuModuleLoad(&module, ptx_path));
    CHECK(cuModuleGetFunction(&fill, module, "fill_f32"));
    CHECK(cuModuleGetFunction(&axpy, module, "axpy_f32"));

    /* ---- Memory: null, dangling and out-of-range pointers ---- */
    CUdeviceptr p, q;
    char host[64] = { 0 };
    check("alloc_null_output", cuMemAlloc(NULL, 16), CUDA_ERROR_INVALID_VALUE);
    check("alloc_zero_bytes", cuMemAlloc(&p, 0), CUDA_ERROR_INVALID_VALUE);
    check("alloc_past_lease_limit", cuMemAlloc(&p, total + 1), CUDA_ERROR_OUT_OF_MEMORY);
    CHECK(cuMemAlloc(&p, 16));
    CHECK(cuMemAlloc(&q, 16));
    check("copy_from_null_host_pointer", cuMemcpyHtoD(p, NULL, 16), CUDA_ERROR_INVALID_VALUE);
    check("copy_to_null_host_pointer", cuMemcpyDtoH(NULL, p, 16), CUDA_ERROR_INVALID_VALUE);
    check("copy_to_null_device_pointer", cuMemcpyHtoD(0, host, 16), CUDA_ERROR_INVALID_VALUE);
    check("copy_past_the_end", cuMemcpyHtoD(p, host, 17), CUDA_ERROR_INVALID_VALUE);
    CHECK(cuMemFree(q));
    check("copy_to_freed_pointer", cuMemcpyHtoD(q, host, 16), CUDA_ERROR_INVALID_VALUE);
    check("copy_from_freed_pointer", cuMemcpyDtoH(host, q, 16), CUDA_ERROR_INVALID_VALUE);
    check("free_twice", cuMemFree(q), CUDA_ERROR_INVALID_VALUE);
    check("free_null", cuMemFree(0), CUDA_SUCCESS); /* free(NULL) semantics, as the driver's */
    check("free_inside_an_allocation", cuMemFree(p + 4), CUDA_ERROR_INVALID_VALUE);
    check("memset_misaligned", cuMemsetD32(p + 2, 0, 1), CUDA_ERROR_INVALID_VALUE);
    check("memset_past_the_end", cuMemsetD8(p + 8, 0, 9), CUDA_ERROR_INVALID_VALUE);
    check("free_host_not_allocated", cuMemFreeHost(host), CUDA_ERROR_INVALID_VALUE);
    check("copy_zero_bytes", cuMemcpyHtoD(p, NULL, 0), CUDA_SUCCESS);

    /* ---- Launch geometry and parameters ---- */
    CUdeviceptr y;
    CHECK(cuMemAlloc(&y, 1024 * sizeof(float)));
    unsigned long long n = 1024;
    float one = 1.0f;
    void *params[] = { &n, &one, &y };
    check("launch_zero_grid", cuLaunchKernel(fill, 0, 1, 1, 128, 1, 1, 0, NULL, params, NULL), CUDA_ERROR_INVALID_VALUE);
    check("launch_zero_block", cuLaunchKernel(fill, 1, 1, 1, 128, 0, 1, 0, NULL, params, NULL), CUDA_ERROR_INVALID_VALUE);
    check("launch_grid_x_too_large", cuLaunchKernel(fill, 2147483648u, 1, 1, 128, 1, 1, 0, NULL, params, NULL), CUDA_ERROR_INVALID_VALUE);
    check("launch_grid_y_too_large", cuLaunchKernel(fill, 1, 65536, 1, 128, 1, 1, 0, NULL, params, NULL), CUDA_ERROR_INVALID_VALUE);
    check("launch_block_too_large", cuLaunchKernel(fill, 1, 1, 1, 1025, 1, 1, 0, NULL, params, NULL), CUDA_ERROR_INVALID_VALUE);
    check("launch_block_too_many_threads", cuLaunchKernel(fill, 1, 1, 1, 32, 32, 2, 0, NULL, params, NULL), CUDA_ERROR_INVALID_VALUE);
    check("launch_too_much_shared_memory", cuLaunchKernel(fill, 1, 1, 1, 128, 1, 1, 1u << 20, NULL, params, NULL), CUDA_ERROR_INVALID_VALUE);
    check("launch_unknown_function", cuLaunchKernel((CUfunction)0x1234, 1, 1, 1, 128, 1, 1, 0, NULL, params, NULL), CUDA_ERROR_INVALID_HANDLE);
    check("launch_without_parameters", cuLaunchKernel(fill, 1, 1, 1, 128, 1, 1, 0, NULL, NULL, NULL), CUDA_ERROR_INVALID_VALUE);
    void *null_entry[] = { &n, NULL, &y };
    check("launch_null_parameter_pointer", cuLaunchKernel(fill, 1, 1, 1, 128, 1, 1, 0, NULL, null_entry, NULL), CUDA_ERROR_INVALID_VALUE);

    struct axpy_params ap = { 1024, 2.0f, y, y };
    size_t wrong_size = 20, right_size = sizeof ap;
    void *extra_wrong[] = { CU_LAUNCH_PARAM_BUFFER_POINTER, &ap, CU_LAUNCH_PARAM_BUFFER_SIZE, &wrong_size, CU_LAUNCH_PARAM_END };
    void *extra_no_size[] = { CU_LAUNCH_PARAM_BUFFER_POINTER, &ap, CU_LAUNCH_PARAM_END };
    void *extra_no_pointer[] = { CU_LAUNCH_PARAM_BUFFER_SIZE, &right_size, CU_LAUNCH_PARAM_END };
    void *extra_right[] = { CU_LAUNCH_PARAM_BUFFER_POINTER, &ap, CU_LAUNCH_PARAM_BUFFER_SIZE, &right_size, CU_LAUNCH_PARAM_END };
    check("launch_extra_buffer_of_wrong_size", cuLaunchKernel(axpy, 1, 1, 1, 128, 1, 1, 0, NULL, NULL, extra_wrong), CUDA_ERROR_INVALID_VALUE);
    check("launch_extra_without_size", cuLaunchKernel(axpy, 1, 1, 1, 128, 1, 1, 0, NULL, NULL, extra_no_size), CUDA_ERROR_INVALID_VALUE);
    check("launch_extra_without_pointer", cuLaunchKernel(axpy, 1, 1, 1, 128, 1, 1, 0, NULL, NULL, extra_no_pointer), CUDA_ERROR_INVALID_VALUE);
    check("launch_params_and_extra", cuLaunchKernel(axpy, 1, 1, 1, 128, 1, 1, 0, NULL, params, extra_right), CUDA_ERROR_INVALID_VALUE);
    check("launch_extra_buffer_of_right_size", cuLaunchKernel(axpy, 1, 1, 1, 128, 1, 1, 0, NULL, NULL, extra_right), CUDA_SUCCESS);
    check("synchronize_after_good_launches", cuCtxSynchronize(), CUDA_SUCCESS);

    /* A kernel that runs past its buffer: launched, then reported at the next synchronize, once. */
    unsigned long long too_many = 100000;
    void *oob[] = { &too_many, &one, &y };
    check("launch_past_the_buffer", cuLaunchKernel(fill, 1, 1, 1, 128, 1, 1, 0, NULL, oob, NULL), CUDA_SUCCESS);
    check("synchronize_reports_the_bad_launch", cuCtxSynchronize(), CUDA_ERROR_ILLEGAL_ADDRESS);
    check("synchronize_after_the_report", cuCtxSynchronize(), CUDA_SUCCESS);

    /* ---- Modules ---- */
    CUmodule other;
    CUfunction orphan;
    CUdeviceptr global;
    size_t global_size;
    check("module_not_ptx_or_cubin", cuModuleLoadData(&other, "\x01\x02garbage"), CUDA_ERROR_INVALID_IMAGE);
    check("module_null_image", cuModuleLoadData(&other, NULL), CUDA_ERROR_INVALID_VALUE);
    check("function_not_in_module", cuModuleGetFunction(&orphan, module, "no_such_kernel"), CUDA_ERROR_NOT_FOUND);
    check("global_not_in_module", cuModuleGetGlobal(&global, &global_size, module, "no_such_variable"), CUDA_ERROR_NOT_FOUND);
    CHECK(cuModuleLoad(&other, ptx_path));
    CHECK(cuModuleGetFunction(&orphan, other, "fill_f32"));
    CHECK(cuModuleUnload(other));
    check("launch_function_of_unloaded_module", cuLaunchKernel(orphan, 1, 1, 1, 128, 1, 1, 0, NULL, params, NULL), CUDA_ERROR_INVALID_HANDLE);
    check("unload_twice", cuModuleUnload(other), CUDA_ERROR_INVALID_HANDLE);

    /* ---- Streams and events ---- */
    CUstream stream;
    CUevent event, other_event;
    check("stream_bad_flags", cuStreamCreate(&stream, 4), CUDA_ERROR_INVALID_VALUE);
    CHECK(cuStreamCreate(&stream, 0));
    check("query_idle_stream", cuStreamQuery(stream), CUDA_SUCCESS);
    CHECK(cuStreamDestroy(stream));
    check("synchronize_destroyed_stream", cuStreamSynchronize(stream), CUDA_ERROR_INVALID_HANDLE);
    check("launch_on_destroyed_stream", cuLaunchKernel(fill, 1, 1, 1, 128, 1, 1, 0, stream, params, NULL), CUDA_ERROR_INVALID_HANDLE);
    check("copy_on_destroyed_stream", cuMemcpyHtoDAsync(p, host, 16, stream), CUDA_ERROR_INVALID_HANDLE);
    check("destroy_stream_twice", cuStreamDestroy(stream), CUDA_ERROR_INVALID_HANDLE);
    CHECK(cuEventCreate(&event, 0));
    CHECK(cuEventCreate(&other_event, 0));
    float ms;
    check("elapsed_time_of_unrecorded_events", cuEventElapsedTime(&ms, event, other_event), CUDA_ERROR_INVALID_HANDLE);
    CHECK(cuEventDestroy(event));
    check("record_destroyed_event", cuEventRecord(event, NULL), CUDA_ERROR_INVALID_HANDLE);
    check("synchronize_destroyed_event", cuEventSynchronize(event), CUDA_ERROR_INVALID_HANDLE);
    check("event_interprocess", cuEventCreate(&event, CU_EVENT_INTERPROCESS | CU_EVENT_DISABLE_TIMING), CUDA_ERROR_NOT_SUPPORTED);

    /* ---- Contexts ---- */
    CUcontext ctx2, popped;
    CUdeviceptr owned;
    CHECK(cuCtxCreate(&ctx2, 0, device));
    CHECK(cuMemAlloc(&owned, 64));
    CHECK(cuCtxDestroy(ctx2));
    CHECK(cuCtxGetCurrent(&popped));
    check_that("destroy_pops_the_current_context", popped == ctx, "the previous context is current again");
    check("push_destroyed_context", cuCtxPushCurrent(ctx2), CUDA_ERROR_INVALID_CONTEXT);
    check("set_destroyed_context", cuCtxSetCurrent(ctx2), CUDA_ERROR_INVALID_CONTEXT);
    check("destroy_context_twice", cuCtxDestroy(ctx2), CUDA_ERROR_INVALID_CONTEXT);
    check("copy_to_memory_of_destroyed_context", cuMemcpyHtoD(owned, host, 16), CUDA_ERROR_INVALID_VALUE);

    CHECK(cuCtxCreate(&shared_context, 0, device));
    CHECK(cuCtxPopCurrent(&popped));
    sem_init(&context_current, 0, 0);
    sem_init(&context_destroyed, 0, 0);
    pthread_t thread;
    pthread_create(&thread, NULL, use_destroyed_context, NULL);
    sem_wait(&context_current);
    CHECK(cuCtxDestroy(shared_context));
    sem_post(&context_destroyed);
    pthread_join(thread, NULL);
    check("use_context_destroyed_by_another_thread", after_destroy, CUDA_ERROR_CONTEXT_IS_DESTROYED);

    CHECK(cuCtxPopCurrent(&popped));
    check("alloc_without_current_context", cuMemAlloc(&q, 16), CUDA_ERROR_INVALID_CONTEXT);
    check("pop_empty_stack", cuCtxPopCurrent(&popped), CUDA_ERROR_INVALID_CONTEXT);

    CUcontext primary;
    CHECK(cuDevicePrimaryCtxRetain(&primary, device));
    CHECK(cuCtxSetCurrent(primary));
    check("alloc_on_primary_context", cuMemAlloc(&q, 16), CUDA_SUCCESS);
    CHECK(cuDevicePrimaryCtxRelease(device));
    check("alloc_on_released_primary_context", cuMemAlloc(&q, 16), CUDA_ERROR_INVALID_CONTEXT);
    check("release_primary_context_twice", cuDevicePrimaryCtxRelease(device), CUDA_ERROR_INVALID_CONTEXT);
    CHECK(cuCtxSetCurrent(ctx));

    /* ---- Entry points ---- */
    void *fn = NULL;
    CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SUCCESS;
    CUresult found = cuGetProcAddress_v2("cuMemAlloc", &fn, 12000, 0, &status);
    check_that("proc_address_of_cuMemAlloc", found == CUDA_SUCCESS && status == CU_GET_PROC_ADDRESS_SUCCESS && fn != NULL, "a function pointer");
    if (fn != NULL) {
        CUdeviceptr via_pointer;
        check("call_through_proc_address", ((CUresult(*)(CUdeviceptr *, size_t))fn)(&via_pointer, 32), CUDA_SUCCESS);
    }
    found = cuGetProcAddress_v2("cuNotAFunction", &fn, 12000, 0, &status);
    check_that("proc_address_of_unknown_name", found == CUDA_SUCCESS && status == CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND && fn == NULL, "no pointer, SYMBOL_NOT_FOUND");
    found = cuGetProcAddress_v2("cuMemAlloc", &fn, 2000, 0, &status);
    check_that("proc_address_for_old_version", found == CUDA_SUCCESS && status == CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT && fn == NULL, "no pointer, VERSION_NOT_SUFFICIENT");
    check("proc_address_for_future_version", cuGetProcAddress_v2("cuMemAlloc", &fn, 99000, 0, &status), CUDA_ERROR_INVALID_VALUE);
    check("proc_address_v1_unknown_name", cuGetProcAddress("cuNotAFunction", &fn, 11030, 0), CUDA_ERROR_NOT_FOUND);
    const void *table = NULL;
    CUuuid id = { { 0 } };
    check("export_table", cuGetExportTable(&table, &id), CUDA_ERROR_INVALID_VALUE); /* a table nobody has described */

    /* ---- Occupancy and function attributes ---- */
    int min_grid = 0, block = 0, blocks = 0;
    CHECK(cuOccupancyMaxPotentialBlockSize(&min_grid, &block, fill, NULL, 0, 0));
    check_that("occupancy_block_size", block > 0 && block <= 1024 && min_grid > 0, "a block size and grid");
    check("occupancy_zero_block", cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, fill, 0, 0), CUDA_ERROR_INVALID_VALUE);
    check("function_attribute_unknown", cuFuncGetAttribute(&value, (CUfunction_attribute)99, fill), CUDA_ERROR_INVALID_VALUE);

    /* ---- Pitched copies and memsets: every row inside the allocation (p holds 16 bytes) ---- */
    char rows[64] = { 0 };
    CUDA_MEMCPY2D c2;
    memset(&c2, 0, sizeof c2);
    c2.srcMemoryType = CU_MEMORYTYPE_HOST;
    c2.srcHost = rows;
    c2.srcPitch = 8;
    c2.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    c2.dstDevice = p;
    c2.dstPitch = 8;
    c2.WidthInBytes = 8;
    c2.Height = 3;
    check("copy2d_past_the_allocation", cuMemcpy2D(&c2), CUDA_ERROR_INVALID_VALUE);
    c2.Height = 2;
    c2.dstPitch = 4;
    check("copy2d_pitch_smaller_than_width", cuMemcpy2D(&c2), CUDA_ERROR_INVALID_VALUE);
    c2.dstPitch = 8;
    c2.dstXInBytes = 4;
    check("copy2d_offset_row_past_the_pitch", cuMemcpy2D(&c2), CUDA_ERROR_INVALID_VALUE);
    c2.dstXInBytes = 0;
    /* Freed just now, so that no allocation in between can have been given the same address (the cpu backend's
       addresses are the host allocator's, which reuses them). */
    CUdeviceptr freed;
    CHECK(cuMemAlloc(&freed, 16));
    CHECK(cuMemFree(freed));
    c2.dstDevice = freed;
    check("copy2d_to_freed_pointer", cuMemcpy2D(&c2), CUDA_ERROR_INVALID_VALUE);
    c2.dstDevice = p;
    c2.dstMemoryType = CU_MEMORYTYPE_ARRAY;
    check("copy2d_to_an_array", cuMemcpy2D(&c2), CUDA_ERROR_NOT_SUPPORTED);
    c2.dstMemoryType = (CUmemorytype)9;
    check("copy2d_unknown_memory_type", cuMemcpy2D(&c2), CUDA_ERROR_INVALID_VALUE);
    c2.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    c2.srcHost = NULL;
    check("copy2d_from_null_host_pointer", cuMemcpy2D(&c2), CUDA_ERROR_INVALID_VALUE);
    check("copy2d_null_parameters", cuMemcpy2D(NULL), CUDA_ERROR_INVALID_VALUE);
    CUDA_MEMCPY3D c3;
    memset(&c3, 0, sizeof c3);
    c3.srcMemoryType = CU_MEMORYTYPE_HOST;
    c3.srcHost = rows;
    c3.srcPitch = 4;
    c3.srcHeight = 2;
    c3.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    c3.dstDevice = p;
    c3.dstPitch = 4;
    c3.dstHeight = 2;
    c3.WidthInBytes = 4;
    c3.Height = 2;
    c3.Depth = 3;
    check("copy3d_past_the_allocation", cuMemcpy3D(&c3), CUDA_ERROR_INVALID_VALUE);
    c3.Depth = 2;
    c3.reserved0 = rows;
    check("copy3d_reserved_not_null", cuMemcpy3D(&c3), CUDA_ERROR_INVALID_VALUE);
    c3.reserved0 = NULL;
    c3.dstHeight = 1;
    check("copy3d_height_smaller_than_a_slice", cuMemcpy3D(&c3), CUDA_ERROR_INVALID_VALUE);
    check("memset2d_past_the_allocation", cuMemsetD2D8(p, 8, 0, 8, 3), CUDA_ERROR_INVALID_VALUE);
    check("memset2d_pitch_smaller_than_width", cuMemsetD2D32(p, 4, 0, 2, 2), CUDA_ERROR_INVALID_VALUE);
    check("memset2d_misaligned", cuMemsetD2D32(p + 2, 4, 0, 1, 1), CUDA_ERROR_INVALID_VALUE);
    size_t pitch = 0;
    check("alloc_pitch_bad_element_size", cuMemAllocPitch(&q, &pitch, 16, 2, 3), CUDA_ERROR_INVALID_VALUE);
    check("alloc_pitch_zero_height", cuMemAllocPitch(&q, &pitch, 16, 0, 4), CUDA_ERROR_INVALID_VALUE);

    /* ---- Host functions, stream callbacks, stream-ordered memory ---- */
    check("host_func_null", cuLaunchHostFunc(NULL, NULL, NULL), CUDA_ERROR_INVALID_VALUE);
    check("stream_callback_null", cuStreamAddCallback(NULL, NULL, NULL, 0), CUDA_ERROR_INVALID_VALUE);
    check("stream_callback_flags", cuStreamAddCallback(NULL, ignore_callback, NULL, 1), CUDA_ERROR_INVALID_VALUE);
    check("host_func_on_destroyed_stream", cuLaunchHostFunc(stream, ignore_host_function, NULL), CUDA_ERROR_INVALID_HANDLE);
    CUmemoryPool pool;
    cuuint64_t pool_value = 0;
    CHECK(cuDeviceGetDefaultMemPool(&pool, device));
    check("mem_pool_unknown", cuDeviceSetMemPool(device, (CUmemoryPool)0x1234), CUDA_ERROR_INVALID_VALUE);
    check("mem_pool_attribute_of_unknown_pool", cuMemPoolGetAttribute((CUmemoryPool)0x1234, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &pool_value), CUDA_ERROR_INVALID_VALUE);
    check("mem_pool_alloc_from_unknown_pool", cuMemAllocFromPoolAsync(&q, 16, (CUmemoryPool)0x1234, NULL), CUDA_ERROR_INVALID_VALUE);
    check("mem_pool_set_current_usage", cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &pool_value), CUDA_ERROR_INVALID_VALUE);
    check("mem_pool_unknown_attribute", cuMemPoolGetAttribute(pool, (CUmemPool_attribute)99, &pool_value), CUDA_ERROR_INVALID_VALUE);
    check("alloc_async_zero_bytes", cuMemAllocAsync(&q, 0, NULL), CUDA_ERROR_INVALID_VALUE);
    CHECK(cuMemAlloc(&freed, 16));
    CHECK(cuMemFree(freed));
    check("free_async_not_allocated", cuMemFreeAsync(freed, NULL), CUDA_ERROR_INVALID_VALUE);
    check("free_async_inside_an_allocation", cuMemFreeAsync(p + 4, NULL), CUDA_ERROR_INVALID_VALUE);

    /* ---- Host registration, pointers, limits, launches, devices ---- */
    check("host_register_null", cuMemHostRegister(NULL, 64, 0), CUDA_ERROR_INVALID_VALUE);
    check("host_register_bad_flags", cuMemHostRegister(rows, 64, 0x80), CUDA_ERROR_INVALID_VALUE);
    check("host_unregister_not_registered", cuMemHostUnregister(rows), CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED);
    unsigned int host_flags = 0;
    check("host_get_flags_unknown", cuMemHostGetFlags(&host_flags, rows), CUDA_ERROR_INVALID_VALUE);
    check("pointer_attribute_unknown_attribute", cuPointerGetAttribute(&value, (CUpointer_attribute)99, p), CUDA_ERROR_INVALID_VALUE);
    check("pointer_attribute_null_data", cuPointerGetAttribute(NULL, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, p), CUDA_ERROR_INVALID_VALUE);
    check("limit_unknown", cuCtxSetLimit((CUlimit)99, 0), CUDA_ERROR_INVALID_VALUE);
    check("cache_config_unknown", cuCtxSetCacheConfig((CUfunc_cache)7), CUDA_ERROR_INVALID_VALUE);
    check("launch_ex_null_config", cuLaunchKernelEx(NULL, fill, params, NULL), CUDA_ERROR_INVALID_VALUE);
    CUlaunchAttribute attribute;
    memset(&attribute, 0, sizeof attribute);
    attribute.id = (CUlaunchAttributeID)99;
    CUlaunchConfig config;
    memset(&config, 0, sizeof config);
    config.gridDimX = config.gridDimY = config.gridDimZ = 1;
    config.blockDimX = 128;
    config.blockDimY = config.blockDimZ = 1;
    config.attrs = &attribute;
    config.numAttrs = 1;
    check("launch_ex_unknown_attribute", cuLaunchKernelEx(&config, fill, params, NULL), CUDA_ERROR_INVALID_VALUE);
    config.numAttrs = 0;
    config.blockDimX = 0;
    check("launch_ex_zero_block", cuLaunchKernelEx(&config, fill, params, NULL), CUDA_ERROR_INVALID_VALUE);
    CUdevice by_bus;
    check("pci_bus_id_garbage", cuDeviceGetByPCIBusId(&by_bus, "not a bus id"), CUDA_ERROR_INVALID_VALUE);
    check("p2p_attribute_device_1", cuDeviceGetP2PAttribute(&value, CU_DEVICE_P2P_ATTRIBUTE_ACCESS_SUPPORTED, device, 1), CUDA_ERROR_INVALID_DEVICE);
    check("can_access_peer_device_1", cuDeviceCanAccessPeer(&value, device, 1), CUDA_ERROR_INVALID_DEVICE);

    CHECK(cuCtxSynchronize());
    CHECK(cuMemFree(p));
    CHECK(cuMemFree(y));
    CHECK(cuModuleUnload(module));
    CHECK(cuCtxDestroy(ctx));
    printf("bad_input: %d cases, %d mismatches\n", cases, mismatches);
    return mismatches == 0 ? 0 : 1;
}
