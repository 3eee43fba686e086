using GpuPool.Devices.Cuda;
using GpuPool.Devices.Tests.Contexts;
using static GpuPool.Devices.CudaMockTests.Ops;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace GpuPool.Devices.CudaMockTests;

/// <summary>
/// The cuda backend's own logic on a mock driver that is strict about current contexts, stream ownership and
/// allocation ranges: inventory and telemetry, contexts, copies through the staging pool, launches through the
/// void** array, bounds and sticky errors, faults, events and clean-up.
/// </summary>
public sealed class CudaBackendOnMockTests
{
    [Fact]
    public void The_backend_reports_the_drivers_devices_with_a_reserve_kept_back_and_NVML_telemetry()
    {
        var device = MockDriver.Device;

        Assert.Equal("cuda", MockDriver.Backend.Name);
        Assert.Equal("12.4", MockDriver.Backend.DriverVersion);
        Assert.Equal(12040, device.DriverVersion);
        Assert.Equal("", MockDriver.Backend.TelemetryNote);
        Assert.Equal("GpuPool Mock GPU", device.Name);
        Assert.Equal("GPU-8b1a3c4d-5e6f-7081-92a3-b4c5d6e7f809", device.Uuid);
        Assert.Equal(8UL << 30, device.PhysicalMemory);
        Assert.Equal(6UL << 30, device.MemoryTotal);
        Assert.Equal(4, device.MultiprocessorCount);
        Assert.Equal(9, device.Attributes[75]);
        Assert.DoesNotContain(11, device.Attributes.Keys);
        var telemetry = device.ReadTelemetry();
        Assert.NotNull(telemetry);
        Assert.Equal(42u, telemetry.UtilizationPercent);
        Assert.Equal(55, telemetry.TemperatureC);
        Assert.Equal(8UL << 30, telemetry.MemoryTotal);
        Assert.True(telemetry.MemoryUsed > 0, "the backend's own context uses memory");
    }

    [Fact]
    public async Task New_memory_is_zeroed_and_copies_of_many_staging_chunks_come_back_whole_or_in_order()
    {
        await using var context = Context(8 * MiB);
        var size = (5 * MockDriver.StagingBufferBytes) + 13;
        var pointer = context.Allocate((ulong)size);
        Assert.All(await DownloadAsync(context, pointer, size), b => Assert.Equal(0, b));

        var data = new byte[size];
        new Random(3).NextBytes(data);
        context.EnqueueCopyToDevice(0, pointer, data, Tag("memcpy_htod"));
        var sink = new Sink(size, chunks: true);
        context.EnqueueCopyToHost(0, pointer, (ulong)size, sink, Tag("memcpy_dtoh"));
        var (inChunks, _) = await sink.Result.WaitAsync(TimeSpan.FromSeconds(10));
        var whole = await DownloadAsync(context, pointer, size, chunks: false);

        Assert.Equal(data, inChunks);
        Assert.Equal(6, sink.Chunks);
        Assert.Equal(data, whole);
        Assert.Null(context.TakeError());
        Assert.InRange(MockDriver.Stat("pinned"), 1, MockDriver.StagingBuffers);
    }

    [Fact]
    public async Task Built_in_kernels_get_their_parameters_through_the_void_pointer_array()
    {
        await using var context = Context();
        var x = Upload(context, [.. Enumerable.Range(0, 1000).Select(i => (float)i)]);
        var y = context.Allocate(4000);

        Fill(context, 0, y, 1000, 0.5f);
        context.EnqueueLaunch(0, Function(context, "axpy_f32"), Dims, AxpyParams(1000, 2f, x, y), Tag("launch"));
        var result = await FloatsAsync(context, y, 1000);

        Assert.Equal(Enumerable.Range(0, 1000).Select(i => 0.5f + (2f * i)), result);
    }

    [Fact]
    public async Task Kernels_and_memsets_are_charged_device_time_and_copies_which_take_no_slot_are_not()
    {
        await using var context = Context();
        var x = context.Allocate(1 << 20);
        var data = new byte[1 << 20];
        context.EnqueueCopyToDevice(0, x, data, Tag("memcpy_htod"));
        await DownloadAsync(context, x, 1 << 20);
        Assert.Equal(TimeSpan.Zero, context.Usage.DeviceTime);

        var fill = Function(context, "fill_f32");
        for (var i = 0; i < 20; i++)
        {
            context.EnqueueLaunch(0, fill, Dims, Params(1000, 2f, x), Tag("launch"));
        }

        await context.SynchronizeAsync(CancellationToken.None);
        Assert.Null(context.TakeError());
        var afterKernels = context.Usage;
        context.EnqueueMemset(0, x, 0, 4, 1 << 18, Tag("memset"));
        await context.SynchronizeAsync(CancellationToken.None);

        // Each kernel is timed from its launch to the synchronize after it, on the stream's own thread.
        Assert.True(afterKernels.DeviceTime > TimeSpan.Zero, "the kernels were charged nothing");
        Assert.True(context.Usage.DeviceTime > afterKernels.DeviceTime, "the memset was charged nothing");
        Assert.Equal(1UL << 20, context.Usage.MemoryUsed);
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task A_built_in_kernel_pointer_past_its_allocation_never_reaches_the_driver_and_is_sticky_until_taken()
    {
        await using var context = Context();
        var y = context.Allocate(400);
        var launches = MockDriver.Stat("launches");

        var bad = Tag("launch");
        context.EnqueueLaunch(0, Function(context, "fill_f32"), Dims, Params(101, 1f, y), bad);
        Fill(context, 0, y, 100, 7f);
        await Within(context.SynchronizeAsync());
        var error = context.TakeError();
        Fill(context, 0, y, 100, 9f);
        var after = await FloatsAsync(context, y, 100);

        Assert.NotNull(error);
        Assert.Equal(bad, error.Op);
        Assert.Equal(DeviceErrorCode.InvalidAddress, error.Error.Code);
        Assert.Equal($"kernel fill_f32 parameter y: 0x{y:x} + 404 bytes runs past the end of its allocation (0x{y:x}, 400 bytes) by 4 bytes", error.Error.Message);
        Assert.All(after, v => Assert.Equal(9f, v));
        Assert.Equal(launches + 1, MockDriver.Stat("launches"));
    }

    [Fact]
    public async Task A_client_kernel_that_faults_is_reported_against_its_launch_and_leaves_the_context_unusable()
    {
        await using var context = Context();
        var module = context.LoadModule(".version 8.0\n.target sm_90\n.visible .entry mock_scale(\n.param .u64 n, .param .f32 a, .param .u64 x)\n{ ret; }\n"u8);
        var scale = context.GetFunction(module, "mock_scale");
        var x = Upload(context, [1f, 2f, 3f]);

        context.EnqueueLaunch(0, scale, Dims, new byte[20], Tag("launch"));
        await Within(context.SynchronizeAsync());
        var wrongSize = context.TakeError();
        context.EnqueueLaunch(0, scale, Dims, Params(3, 10f, x), Tag("launch"));
        var scaled = await FloatsAsync(context, x, 3);
        var fault = Tag("launch");
        context.EnqueueLaunch(0, scale, Dims, Params(3, 10f, x + (1 << 20)), fault);
        await Within(context.SynchronizeAsync());
        var faulted = context.TakeError();
        var unusable = Assert.Throws<DeviceException>(() => context.Allocate(64));

        Assert.Equal(DeviceErrorCode.InvalidArgument, wrongSize?.Error.Code);
        Assert.Equal("kernel mock_scale takes 24 bytes of parameters (mock_scale with 3 parameters), but the launch passed 20", wrongSize?.Error.Message);
        Assert.Equal([10f, 20f, 30f], scaled);
        Assert.Equal(fault, faulted?.Op);
        Assert.Equal(DeviceErrorCode.InvalidAddress, faulted?.Error.Code);
        Assert.Equal("cuStreamSynchronize (after kernel mock_scale) failed: CUDA_ERROR_ILLEGAL_ADDRESS (mock driver error)", faulted?.Error.Message);
        Assert.Equal(DeviceErrorCode.LaunchFailed, unusable.Code);
        Assert.StartsWith("the lease's CUDA context cannot run anything more after a fault (cuStreamSynchronize", unusable.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Modules_that_are_not_PTX_or_that_the_JIT_refuses_fail_with_InvalidArgument_and_the_JIT_log()
    {
        await using var context = Context();

        var garbage = Assert.Throws<DeviceException>(() => context.LoadModule("hello"u8));
        var empty = Assert.Throws<DeviceException>(() => context.LoadModule([0, 0]));
        var broken = Assert.Throws<DeviceException>(() => context.LoadModule(".version 8.0\n.entry broken( bogus"u8));
        var missing = Assert.Throws<DeviceException>(() => context.GetFunction(context.LoadBuiltinModule(), "no_such_kernel"));

        Assert.Equal(DeviceErrorCode.InvalidArgument, garbage.Code);
        Assert.Equal("the module image is empty", empty.Message);
        Assert.Equal(DeviceErrorCode.InvalidArgument, broken.Code);
        Assert.Equal("cuModuleLoadDataEx failed: CUDA_ERROR_INVALID_PTX (mock driver error): ptxas fatal   : mock: syntax error near 'bogus'", broken.Message);
        Assert.Equal(DeviceErrorCode.NotFound, missing.Code);
    }

    [Fact]
    public async Task An_event_destroyed_while_its_record_is_queued_is_freed_once_the_record_has_passed()
    {
        var events = MockDriver.Stat("events");
        await using var context = Context();
        var x = context.Allocate(64);
        var evt = context.CreateEvent();
        using (await SlotGate.CloseAsync(MockDriver.Device.Dispatcher))
        {
            Fill(context, 0, x, 16, 1f);
            context.EnqueueEventRecord(0, evt, Tag("event_record"));
            context.DestroyEvent(evt);
            Assert.Equal(events + 1, MockDriver.Stat("events"));
        }

        await Within(context.SynchronizeAsync());

        Assert.Null(context.TakeError());
        Assert.Equal(events, MockDriver.Stat("events"));
    }

    [Fact]
    public async Task Overlapping_device_copies_act_as_memmove_in_both_directions()
    {
        await using var context = Context(8 * MiB);
        var size = (3 * MockDriver.StagingBufferBytes) + 100;
        var data = Enumerable.Range(0, size).Select(i => (byte)(i * 13)).ToArray();
        var pointer = context.Allocate((ulong)size + 2000);
        context.EnqueueCopyToDevice(0, pointer + 1000, data, Tag("memcpy_htod"));

        context.EnqueueCopyDeviceToDevice(0, pointer + 2000, pointer + 1000, (ulong)size, Tag("memcpy_dtod"));
        var forward = await DownloadAsync(context, pointer + 2000, size);
        context.EnqueueCopyDeviceToDevice(0, pointer, pointer + 2000, (ulong)size, Tag("memcpy_dtod"));
        var backward = await DownloadAsync(context, pointer, size);

        Assert.Equal(data, forward);
        Assert.Equal(data, backward);
        Assert.Null(context.TakeError());
    }

    [Theory]
    [InlineData(1, 0xABu, new byte[] { 0xAB, 0xAB, 0xAB, 0xAB })]
    [InlineData(2, 0x1234u, new byte[] { 0x34, 0x12, 0x34, 0x12 })]
    [InlineData(4, 0xDEADBEEFu, new byte[] { 0xEF, 0xBE, 0xAD, 0xDE })]
    public async Task Memset_writes_elements_of_1_2_or_4_bytes(int elementSize, uint value, byte[] pattern)
    {
        await using var context = Context();
        var pointer = context.Allocate(64);

        context.EnqueueMemset(0, pointer, value, elementSize, (ulong)(64 / elementSize), Tag("memset"));
        var bytes = await DownloadAsync(context, pointer, 64);

        Assert.Equal(Enumerable.Repeat(pattern, 16).SelectMany(p => p), bytes);
    }

    [Fact]
    public async Task Copies_outside_the_leases_allocations_fail_with_InvalidAddress()
    {
        await using var a = Context(lease: "lease-a");
        await using var b = Context(lease: "lease-b");
        var theirs = b.Allocate(256);
        var mine = a.Allocate(256);

        a.EnqueueCopyToDevice(0, theirs, new byte[16], Tag("memcpy_htod"));
        await Within(a.SynchronizeAsync());
        var write = a.TakeError();
        var sink = new Sink(300, chunks: true);
        a.EnqueueCopyToHost(0, mine, 300, sink, Tag("memcpy_dtoh"));
        var (_, read) = await sink.Result;

        Assert.Equal(DeviceErrorCode.InvalidAddress, write?.Error.Code);
        Assert.Equal($"copy to device destination: 0x{theirs:x} is not inside any allocation of this lease", write?.Error.Message);
        Assert.Equal(DeviceErrorCode.InvalidAddress, read?.Error.Code);
        Assert.Contains("by 44 bytes", read?.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_lease_limit_and_the_devices_leasable_memory_are_enforced()
    {
        await using var context = Context(1 * MiB);
        context.Allocate(600 * 1024);

        var overLimit = Assert.Throws<DeviceException>(() => context.Allocate(600 * 1024));
        var overDevice = Assert.Throws<DeviceException>(() => MockDriver.Device.CreateContext(new ContextOptions("big", MockDriver.Device.MemoryTotal, 100)));

        Assert.Equal(DeviceErrorCode.OutOfMemory, overLimit.Code);
        Assert.Equal("cannot allocate 614400 bytes: the lease's memory limit is 1048576 bytes and 614400 are in use (434176 free)", overLimit.Message);
        Assert.Equal(DeviceErrorCode.OutOfMemory, overDevice.Code);
        Assert.Contains("already leased", overDevice.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_context_is_refused_when_the_driver_has_too_little_free_memory_for_it_beside_the_other_leases()
    {
        var contexts = MockDriver.Stat("contexts");
        MockDriver.Set("context_overhead", 5L << 30);
        try
        {
            var error = Assert.Throws<DeviceException>(() => MockDriver.Device.CreateContext(new ContextOptions("squeezed", 4UL << 30, 100)));

            Assert.Equal(DeviceErrorCode.OutOfMemory, error.Code);
            Assert.Contains("with the new context made it has", error.Message, StringComparison.Ordinal);
            Assert.Equal(contexts, MockDriver.Stat("contexts"));
            Assert.Equal(0, MockDriver.Device.ContextCount);
        }
        finally
        {
            MockDriver.Set("context_overhead", 64L << 20);
        }
    }

    [Fact]
    public async Task Free_waits_for_queued_work_and_takes_only_the_start_of_an_allocation()
    {
        await using var context = Context();
        var allocations = MockDriver.Stat("allocations");
        var x = context.Allocate(400);
        Task free;
        using (await SlotGate.CloseAsync(MockDriver.Device.Dispatcher))
        {
            Fill(context, 0, x, 100, 1f);
            free = context.FreeAsync(x).AsTask();
            await Task.Delay(100);
            Assert.False(free.IsCompleted);
        }

        await Within(free);
        var inside = await Assert.ThrowsAsync<DeviceException>(async () => await context.FreeAsync(x + 4));

        Assert.Null(context.TakeError());
        Assert.Equal(allocations, MockDriver.Stat("allocations"));
        Assert.Equal(DeviceErrorCode.InvalidAddress, inside.Code);
    }

    [Fact]
    public async Task Closing_a_lease_frees_its_context_memory_streams_and_reservation()
    {
        var (contexts, allocations, streams) = (MockDriver.Stat("contexts"), MockDriver.Stat("allocations"), MockDriver.Stat("streams"));
        var context = Context(4 * MiB);
        context.Allocate(1000);
        context.Allocate(2000);
        var stream = context.CreateStream();
        Fill(context, stream, context.Allocate(400), 100, 2f);
        context.LoadModule(".entry mock_scale(\n"u8);
        Assert.Equal(contexts + 1, MockDriver.Stat("contexts"));
        Assert.Equal(3400UL, MockDriver.Device.MemoryUsed);

        await context.DisposeAsync();

        Assert.Equal(contexts, MockDriver.Stat("contexts"));
        Assert.Equal(allocations, MockDriver.Stat("allocations"));
        Assert.Equal(streams, MockDriver.Stat("streams"));
        Assert.Equal(0UL, MockDriver.Device.MemoryUsed);
        Assert.Equal(0UL, MockDriver.Device.MemoryReserved);
        Assert.Equal(DeviceErrorCode.ContextClosed, Assert.Throws<DeviceException>(() => context.Allocate(16)).Code);
        var sink = new Sink(4, chunks: true);
        context.EnqueueCopyToHost(0, 0, 4, sink, Tag("memcpy_dtoh"));
        Assert.Equal(DeviceErrorCode.ContextClosed, (await sink.Result).Error?.Error.Code);
    }

    [Fact]
    public async Task A_destroyed_stream_runs_its_queued_work_then_frees_its_cuda_stream()
    {
        await using var context = Context();
        var streams = MockDriver.Stat("streams");
        var x = context.Allocate(400);
        var stream = context.CreateStream();
        Assert.Equal(streams + 1, MockDriver.Stat("streams"));

        Fill(context, stream, x, 100, 4f);
        context.DestroyStream(stream);
        await Within(context.SynchronizeAsync());

        Assert.All(await FloatsAsync(context, x, 100), v => Assert.Equal(4f, v));
        Assert.Equal(streams, MockDriver.Stat("streams"));
        Assert.Equal(DeviceErrorCode.NotFound, Assert.Throws<DeviceException>(() => context.DestroyStream(stream)).Code);
    }

    [Fact]
    public async Task Unloading_a_module_frees_it_after_its_queued_launches()
    {
        await using var context = Context();
        var modules = MockDriver.Stat("modules");
        var module = context.LoadModule(".entry mock_scale(\n"u8);
        var x = Upload(context, [1f, 2f]);
        var scale = context.GetFunction(module, "mock_scale");

        context.EnqueueLaunch(0, scale, Dims, Params(2, 3f, x), Tag("launch"));
        context.UnloadModule(module);
        var result = await FloatsAsync(context, x, 2);
        await Poll(() => MockDriver.Stat("modules") == modules);

        Assert.Equal([3f, 6f], result);
        Assert.Equal(DeviceErrorCode.NotFound, Assert.Throws<DeviceException>(() => context.GetFunction(module, "mock_scale")).Code);
    }

    private static async Task Poll(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the condition did not hold within 10 s");
            await Task.Delay(20);
        }
    }
}
