using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Shim;

/// <summary>A pool on which the bad-input driver (Shim/native/bad_input.c) has run once through `gpupool run`.</summary>
public sealed class BadInputRun() : CaseProgramRun("bad_input");

/// <summary>
/// The bad input, each case a call a C program makes through the shim, with the CUresult the driver
/// API gives: null and dangling pointers, impossible launch geometry, a parameter buffer of the wrong size,
/// modules that are not PTX, destroyed contexts, streams and events, entry-point look-ups; pitched copies and
/// memsets past their allocation or their pitch, null host functions and callbacks, unknown memory pools, host
/// ranges registered twice or never, unknown limits and launch attributes, bus ids that are not one.
/// </summary>
public sealed class BadInputTests(BadInputRun bad) : IClassFixture<BadInputRun>
{
    public static TheoryData<string> CaseNames() =>
    [
        "call_before_init", "init_with_flags", "device_ordinal_1", "device_attribute_unknown", "device_attribute_max_threads",
        "error_name_unknown", "alloc_null_output", "alloc_zero_bytes", "alloc_past_lease_limit", "copy_from_null_host_pointer",
        "copy_to_null_host_pointer", "copy_to_null_device_pointer", "copy_past_the_end", "copy_to_freed_pointer",
        "copy_from_freed_pointer", "free_twice", "free_null", "free_inside_an_allocation", "memset_misaligned",
        "memset_past_the_end", "free_host_not_allocated", "copy_zero_bytes", "launch_zero_grid", "launch_zero_block",
        "launch_grid_x_too_large", "launch_grid_y_too_large", "launch_block_too_large", "launch_block_too_many_threads",
        "launch_too_much_shared_memory", "launch_unknown_function", "launch_without_parameters", "launch_null_parameter_pointer",
        "launch_extra_buffer_of_wrong_size", "launch_extra_without_size", "launch_extra_without_pointer", "launch_params_and_extra",
        "launch_extra_buffer_of_right_size", "synchronize_after_good_launches", "launch_past_the_buffer",
        "synchronize_reports_the_bad_launch", "synchronize_after_the_report", "module_not_ptx_or_cubin", "module_null_image",
        "function_not_in_module", "global_not_in_module", "launch_function_of_unloaded_module", "unload_twice", "stream_bad_flags",
        "query_idle_stream", "synchronize_destroyed_stream", "launch_on_destroyed_stream", "copy_on_destroyed_stream",
        "destroy_stream_twice", "elapsed_time_of_unrecorded_events", "record_destroyed_event", "synchronize_destroyed_event",
        "event_interprocess", "destroy_pops_the_current_context", "push_destroyed_context", "set_destroyed_context",
        "destroy_context_twice", "copy_to_memory_of_destroyed_context", "use_context_destroyed_by_another_thread",
        "alloc_without_current_context", "pop_empty_stack", "alloc_on_primary_context", "alloc_on_released_primary_context",
        "release_primary_context_twice", "proc_address_of_cuMemAlloc", "call_through_proc_address", "proc_address_of_unknown_name",
        "proc_address_for_old_version", "proc_address_for_future_version", "proc_address_v1_unknown_name", "export_table",
        "occupancy_block_size", "occupancy_zero_block", "function_attribute_unknown",
        "copy2d_past_the_allocation", "copy2d_pitch_smaller_than_width", "copy2d_offset_row_past_the_pitch", "copy2d_to_freed_pointer",
        "copy2d_to_an_array", "copy2d_unknown_memory_type", "copy2d_from_null_host_pointer", "copy2d_null_parameters",
        "copy3d_past_the_allocation", "copy3d_reserved_not_null", "copy3d_height_smaller_than_a_slice", "memset2d_past_the_allocation",
        "memset2d_pitch_smaller_than_width", "memset2d_misaligned", "alloc_pitch_bad_element_size", "alloc_pitch_zero_height",
        "host_func_null", "stream_callback_null", "stream_callback_flags", "host_func_on_destroyed_stream", "mem_pool_unknown",
        "mem_pool_attribute_of_unknown_pool", "mem_pool_alloc_from_unknown_pool", "mem_pool_set_current_usage",
        "mem_pool_unknown_attribute", "alloc_async_zero_bytes", "free_async_not_allocated", "free_async_inside_an_allocation",
        "host_register_null", "host_register_bad_flags", "host_unregister_not_registered", "host_get_flags_unknown",
        "pointer_attribute_unknown_attribute", "pointer_attribute_null_data", "limit_unknown", "cache_config_unknown",
        "launch_ex_null_config", "launch_ex_unknown_attribute", "launch_ex_zero_block", "pci_bus_id_garbage", "p2p_attribute_device_1",
        "can_access_peer_device_1",
    ];

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Bad_input_gets_the_drivers_result(string name)
    {
        Assert.True(bad.Cases.TryGetValue(name, out var line), $"case {name} did not run:\n{GpuPoolRun.Describe(bad.Run)}");
        Assert.EndsWith(" ok", line, StringComparison.Ordinal);
    }

    [Fact]
    public void The_driver_ran_every_case_and_exited_cleanly()
    {
        Assert.True(bad.Run.ExitCode == 0, GpuPoolRun.Describe(bad.Run));
        Assert.Equal(CaseNames().Count, bad.Cases.Count);
        Assert.Contains($"bad_input: {bad.Cases.Count} cases, 0 mismatches", bad.Run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_broker_keeps_serving_after_the_bad_input()
        => await bad.AssertServesAnotherLeaseAsync();
}
