using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Shim;

/// <summary>A pool on which the driver-API program Shim/native/driver_extras.c has run once through `gpupool run`.</summary>
public sealed class DriverExtrasRun() : CaseProgramRun("driver_extras");

/// <summary>
/// The rest of the driver API that nvcc-built programs reach for, each case a call a C program makes through the
/// shim with the result and effect the driver gives: context limits and configuration, function attributes,
/// pitched memory with 2D and 3D copies and memsets, host registration, pointer attributes, host functions and
/// stream callbacks in stream order, stream-ordered allocation, PCI bus ids, peers, events with flags,
/// cuLaunchKernelEx, and CUDA_ERROR_NOT_SUPPORTED for what has no meaning across the network.
/// </summary>
public sealed class DriverExtrasTests(DriverExtrasRun extras) : IClassFixture<DriverExtrasRun>
{
    public static TheoryData<string> CaseNames() =>
    [
        "limit_stack_size_default", "limit_printf_fifo_default", "limit_malloc_heap_default", "limit_set", "limit_remembered",
        "limit_of_cig_contexts", "limit_per_context", "cache_config_set", "cache_config_remembered", "shared_mem_config_set",
        "shared_mem_config_four_byte_banks", "context_id", "reset_persisting_l2", "func_cache_config", "func_shared_mem_config",
        "func_dynamic_shared_above_optin", "func_dynamic_shared_zero", "launch_beyond_the_function_limit",
        "func_dynamic_shared_4k", "launch_within_the_function_limit", "func_carveout", "func_carveout_out_of_range",
        "func_attribute_read_only", "alloc_pitch", "alloc_pitch_rounds_up", "copy2d_host_to_pitched",
        "copy2d_rows_land_and_device_padding_untouched", "copy2d_pitched_to_host", "copy2d_round_trip_and_host_padding_untouched",
        "copy2d_sub_rectangle", "copy2d_sub_rectangle_bytes", "copy2d_device_to_device", "copy2d_async_into_pinned_memory",
        "copy2d_device_to_device_bytes", "copy2d_contiguous_ptds", "copy2d_contiguous_bytes", "copy3d_host_to_device",
        "copy3d_slices_land_and_padding_untouched", "copy3d_async_device_to_host", "copy3d_round_trip", "memset2d_d8",
        "memset2d_d8_only_the_rectangle", "memset2d_d32_async", "memset2d_d16", "memset2d_d32_and_d16_values", "host_register",
        "host_get_flags", "host_get_flags_value", "host_register_overlap", "copy_async_into_registered_memory",
        "registered_memory_received_the_copy", "copy_from_registered_memory", "host_register_devicemap",
        "host_get_device_pointer", "pointer_device_memory_type", "pointer_device_is_device", "pointer_device_attributes",
        "pointer_buffer_ids", "pointer_device_has_no_host_pointer", "pointer_host_attributes", "pointer_registered_is_host",
        "pointer_host_has_no_device_pointer", "pointer_unknown_memory_type", "pointer_unknown_mapped",
        "pointer_unknown_not_mapped", "pointer_attributes_of_unknown", "pointer_attributes_of_unknown_are_zero",
        "pointer_attributes_of_device", "pointer_attributes_of_device_values", "host_unregister", "host_unregister_twice",
        "pointer_unregistered_memory", "launch_host_func", "query_while_host_func_pending", "copy_after_host_func",
        "copy_after_host_func_waited_for_it", "stream_callback", "synchronize_after_callbacks",
        "host_func_saw_the_copy_before_it", "copy_after_host_func_sent_what_it_wrote", "stream_callback_ran",
        "query_after_callbacks", "host_funcs_in_order", "host_func_ptsz", "host_func_ptsz_ran", "callback_calling_cuda",
        "synchronize_after_callback_calling_cuda", "callback_synchronize_not_permitted", "callback_memset_not_permitted",
        "callback_alloc_not_permitted", "callback_after_failure", "host_func_after_failure", "synchronize_reports_the_failure",
        "callback_got_the_failure", "host_func_skipped_after_failure", "synchronize_after_the_report", "default_mem_pool",
        "current_pool_is_default", "set_default_mem_pool", "pool_release_threshold", "pool_release_threshold_remembered",
        "alloc_async", "pool_counts_the_allocation", "pointer_mempool_handle", "free_async", "synchronize_after_free_async",
        "work_before_free_async_saw_the_memory", "pointer_after_free_async", "alloc_from_pool_async", "free_from_pool_async",
        "pool_trim", "synchronize_after_pool_work", "pool_empty_after_frees", "pci_bus_id", "pci_bus_id_format",
        "device_by_pci_bus_id", "device_by_pci_bus_id_is_device_0", "device_by_short_pci_bus_id", "device_by_other_pci_bus_id",
        "can_access_peer", "no_peer_access", "p2p_attribute_same_device", "enable_peer_access", "disable_peer_access",
        "device_luid", "event_record_with_flags", "event_blocking_sync", "elapsed_time_of_untimed_event", "launch_ex",
        "launch_ex_ran", "launch_ex_cooperative", "launch_ex_cluster", "launch_cooperative_kernel",
        "proc_address_of_cuMemAllocAsync", "proc_address_of_cuLaunchKernelEx_before_11_6", "unsupported_cuMemAllocManaged",
        "unsupported_cuMemAllocManaged_again", "unsupported_cuMemAdvise", "unsupported_cuMemAdvise_v2",
        "unsupported_cuMemPrefetchAsync", "unsupported_cuMemPrefetchAsync_v2", "unsupported_cuMemRangeGetAttribute",
        "unsupported_cuMemRangeGetAttributes", "unsupported_cuIpcGetMemHandle", "unsupported_cuIpcOpenMemHandle",
        "unsupported_cuIpcCloseMemHandle", "unsupported_cuIpcGetEventHandle", "unsupported_cuIpcOpenEventHandle",
        "unsupported_cuGraphicsUnregisterResource", "unsupported_cuGraphicsMapResources", "unsupported_cuGraphicsUnmapResources",
        "unsupported_cuGraphicsResourceGetMappedPointer", "unsupported_cuGraphicsSubResourceGetMappedArray",
        "unsupported_cuGraphicsResourceSetMapFlags", "context_still_works",
    ];

    public static TheoryData<string> UnsupportedCalls() =>
    [
        "cuGraphicsMapResources", "cuGraphicsResourceGetMappedPointer", "cuGraphicsResourceSetMapFlags", "cuGraphicsSubResourceGetMappedArray", "cuGraphicsUnmapResources", "cuGraphicsUnregisterResource", "cuIpcCloseMemHandle", "cuIpcGetEventHandle", "cuIpcGetMemHandle", "cuIpcOpenEventHandle", "cuIpcOpenMemHandle", "cuMemAdvise", "cuMemAllocManaged", "cuMemPrefetchAsync", "cuMemRangeGetAttribute", "cuMemRangeGetAttributes",
        "cuLaunchCooperativeKernel", "cuMemHostGetDevicePointer", "cuMemHostRegister",
    ];

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Call_gets_the_drivers_answer(string name)
    {
        Assert.True(extras.Cases.TryGetValue(name, out var line), $"case {name} did not run:\n{GpuPoolRun.Describe(extras.Run)}");
        Assert.EndsWith(" ok", line, StringComparison.Ordinal);
    }

    [Fact]
    public void The_program_ran_every_case_and_passed()
    {
        Assert.True(extras.Run.ExitCode == 0, GpuPoolRun.Describe(extras.Run));
        Assert.Equal(CaseNames().Count, extras.Cases.Count);
        Assert.Contains($"driver_extras: {extras.Cases.Count} cases, 0 mismatches", extras.Run.Stdout, StringComparison.Ordinal);
        Assert.Contains("PASS driver_extras:", extras.Run.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(UnsupportedCalls))]
    public void A_call_without_a_meaning_remotely_says_so_once_on_stderr(string call)
    {
        var lines = extras.Run.Stderr.Split('\n').Where(l => l.StartsWith($"gpupool shim: {call}: not supported by GpuPool (", StringComparison.Ordinal)).ToArray();

        Assert.True(lines.Length == 1, $"{lines.Length} lines for {call}:\n{extras.Run.Stderr}");
        Assert.EndsWith("it returns CUDA_ERROR_NOT_SUPPORTED", lines[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Refused_launch_attributes_are_named_on_stderr()
    {
        Assert.Contains("cuLaunchKernelEx: not supported by GpuPool (CU_LAUNCH_ATTRIBUTE_COOPERATIVE", extras.Run.Stderr, StringComparison.Ordinal);
        Assert.Contains("cuLaunchKernelEx: not supported by GpuPool (CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION", extras.Run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_broker_keeps_serving_after_the_program()
        => await extras.AssertServesAnotherLeaseAsync();
}
